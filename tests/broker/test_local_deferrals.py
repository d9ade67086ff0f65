"""Deferrals kept in the worker's process (worker.broker.deferrals): run at their time on the
process's own threads, handed back at a shutdown, left to the broker when not kept. Their
part in a running worker is in tests/ratelimit/test_fair_shares.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from worker.broker.deferrals import KEEP_UP_TO, LocalDeferrals
from worker.broker.dispatch import Message


@pytest.fixture
def deferrals() -> Iterator[LocalDeferrals]:
    kept = LocalDeferrals()
    kept.allow(2)
    yield kept
    kept.close()
    kept.join()


def _message(n: int, countdown: float) -> Message:
    return Message("lazada.remove_batch", (n,), countdown=countdown, slot=1.0e9 + n)


class _Runs:
    """What the kept deferrals ran, and on which threads."""

    def __init__(self, expected: int) -> None:
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.expected = expected
        self.ran: list[Message] = []
        self.threads: set[str] = set()

    def __call__(self, message: Message) -> None:
        with self.lock:
            self.ran.append(message)
            self.threads.add(threading.current_thread().name)
            if len(self.ran) == self.expected:
                self.done.set()


def test_kept_deferrals_run_on_the_processs_own_threads_in_the_order_they_are_due(
    deferrals: LocalDeferrals,
) -> None:
    runs = _Runs(3)
    for n, countdown in ((1, 1.0), (2, 0.0), (3, 0.5)):
        assert deferrals.keep(_message(n, countdown), runs)
    assert runs.done.wait(30), f"ran {runs.ran}"
    assert [m.args[0] for m in runs.ran] == [2, 3, 1]
    assert runs.ran[0] == _message(2, 0.0)  # the message itself, slot and all
    assert all(name.startswith("deferral") for name in runs.threads)
    assert threading.current_thread().name not in runs.threads
    assert deferrals.kept() == 0


def test_a_failing_deferral_does_not_stop_the_ones_after_it(deferrals: LocalDeferrals) -> None:
    runs = _Runs(1)

    def fails(message: Message) -> None:
        raise RuntimeError("the task's own error")

    assert deferrals.keep(_message(1, 0.0), fails)
    assert deferrals.keep(_message(2, 0.2), runs)
    assert runs.done.wait(30)
    assert [m.args[0] for m in runs.ran] == [2]


def test_a_process_that_keeps_none_or_a_long_countdown_leaves_them_to_the_broker() -> None:
    none_kept = LocalDeferrals()
    assert not none_kept.keep(_message(1, 0.0), _Runs(1))
    kept = LocalDeferrals()
    kept.allow(1)
    assert not kept.keep(_message(1, KEEP_UP_TO + 1), _Runs(1))
    assert kept.kept() == 0


def test_a_shutdown_hands_back_what_is_not_due_with_its_countdown_left_and_keeps_no_more(
    deferrals: LocalDeferrals,
) -> None:
    runs = _Runs(1)
    assert deferrals.keep(_message(1, 20.0), runs)
    assert deferrals.keep(_message(2, 10.0), runs)
    left = deferrals.close()
    assert [m.args[0] for m in left] == [2, 1]
    assert all(m.slot == 1.0e9 + m.args[0] for m in left)
    assert 0 < left[0].countdown <= 10.0 and 10.0 < left[1].countdown <= 20.0
    assert not deferrals.keep(_message(3, 0.0), runs)
    deferrals.join()
    assert runs.ran == [] and deferrals.kept() == 0
