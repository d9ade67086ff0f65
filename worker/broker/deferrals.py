"""Deferrals kept in the worker's process: a task's message to itself for a reserved call slot
(worker.ratelimit) is run at its time on a thread of the process that deferred it, instead of
going through the broker and back.

Below a call a second every call of a job is such a deferral, and through the broker each one
is a publish, a delivery Celery holds until its countdown ends, a task run, an acknowledgement
and their round trips: the larger part of what a call costs the worker there
(bench/RESULTS.md, issue 27). Kept here it is an entry in a heap and a timer.

Nothing is lost when the process dies: the deferral's row was written before (due at its slot,
its dispatch deadline set: worker.services.attempts.Row.reschedule), as for a message with a
countdown, and the sweepers send the work again once that deadline has passed, as they do for
a message a killed worker held; or the row stayed leased to the process (Row.hold: a removal
batch), and the sweepers take it as soon as the process's heartbeat stops, as they do a row
whose call was in flight. A process shutting down hands what it keeps to the broker, each
held row's lease released first.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from worker.broker.dispatch import Message

log = logging.getLogger(__name__)

# Longer deferrals (retries, parked accounts, polls) go through the broker: kept here, the
# work of a process that stops between would wait for the sweepers' deadline.
KEEP_UP_TO = 30.0
# Beyond this many kept at once a process hands more to the broker: enough for a few thousand
# accounts' deferrals, a bound on what a process holds in memory.
KEEP_AT_MOST = 10_000

Run = Callable[[Message], None]
Release = Callable[[], None]


class LocalDeferrals:
    """A timer over the deferrals this process keeps, and the threads that run them."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, Message, Run, Release | None]] = []
        self._order = itertools.count()  # equal times run in the order they were kept
        self._threads = 0
        self._closed = False
        self._pid = 0  # the process the timer and threads were started in
        self._executor: ThreadPoolExecutor | None = None

    def allow(self, threads: int) -> None:
        """This process keeps deferrals and runs them on up to `threads` threads of their own
        (0: it keeps none, every deferral is a message)."""
        with self._lock:
            self._threads = max(0, threads)
            if self._closed:  # kept again after a close: a new timer and threads
                self._closed, self._pid = False, 0

    def keep(self, message: Message, run: Run, release: Release | None = None) -> bool:
        """Keep `message` (its countdown from now) for `run` on a thread of this process;
        False when it must go through the broker instead (none kept here, the process is
        shutting down, the countdown is long, or too many are kept). `release`: what lets
        its row go before the message goes to the broker instead (close)."""
        countdown = message.countdown or 0.0
        with self._lock:
            if (
                not self._threads
                or self._closed
                or countdown > KEEP_UP_TO
                or len(self._heap) >= KEEP_AT_MOST
            ):
                return False
            self._start()
            entry = (time.monotonic() + countdown, next(self._order), message, run, release)
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._lock.notify()
            return True

    def kept(self) -> int:
        """How many deferrals wait here."""
        with self._lock:
            return len(self._heap)

    def close(self) -> list[Message]:
        """Keep no more; the deferrals not yet due are returned with what is left of their
        countdowns, for the broker, their rows released. Those under way finish (join)."""
        with self._lock:
            self._closed = True
            left = sorted(self._heap)
            self._heap.clear()
            self._lock.notify()
        now = time.monotonic()
        messages = []
        for at, _, message, _, release in left:
            if release is not None:
                try:
                    release()
                except Exception as exc:
                    # Its row's lease ends when this process's heartbeat stops (the sweepers).
                    log.warning("a kept deferral's row not released (%s)", type(exc).__name__)
            messages.append(replace(message, countdown=max(0.0, at - now)))
        return messages

    def join(self) -> None:
        """Wait for the deferrals under way to end (after close)."""
        executor = self._executor
        if executor is not None and self._pid == os.getpid():
            executor.shutdown(wait=True)

    def _start(self) -> None:
        # Under the lock. Once a process (a forked child starts its own).
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="deferral")
        threading.Thread(target=self._timer, name="deferrals", daemon=True).start()

    def _timer(self) -> None:
        while True:
            with self._lock:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._lock.wait(wait)
                if self._closed:
                    return
                _, _, message, run, _ = heapq.heappop(self._heap)
            executor = self._executor
            assert executor is not None
            executor.submit(_run, run, message)


def _run(run: Run, message: Message) -> None:
    try:
        run(message)
    except Exception:
        # The task's own handler said what it could; its row is found again by the sweepers.
        log.exception("a kept deferral of %s failed", message.task)


local_deferrals = LocalDeferrals()
