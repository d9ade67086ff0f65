"""The limiter: one account's policy for when a call may be made, around a slot store.

A RateLimiter is the client's before_call (acquire) and after_call (observe) hooks for one
account: it reserves the call's slot in the account's store, sleeps for it when it is near,
defers the work to it when it is not, and slows the account down when the API says "too
frequent". A Turn (set around a service's call with turn()) says whose turn the call takes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from worker.platforms import CallRecord, ThrottledApiError
from worker.ratelimit.calendar import EPSILON, LATE, SPACING, Grant
from worker.ratelimit.database import DatabaseSlots
from worker.ratelimit.redis import RedisSlots
from worker.settings import Settings

log = logging.getLogger(__name__)

PAUSE_AFTER_THROTTLE = 1.0  # seconds no call is made after the API said "too frequent"
SLOW_FOR = 30.0  # seconds the rate stays halved after that
# The longest a task sleeps for its slot; a slot further away defers the work to it. Below a
# broker round trip and a task's own overhead, so sleeping is the cheaper way this close.
MAX_SLOT_WAIT = 0.05
# Slots one group may hold ahead of now: at least GROUP_AHEAD, and GROUP_SECONDS' worth at
# high rates, so that a group alone keeps the whole rate busy (its next calls' slots are
# reserved while its last ones are under way) while a new group waits at most that long a group.
GROUP_AHEAD = 2
GROUP_SECONDS = 0.5
OTHER_GROUP = "other"  # calls made outside a service's turn (tests, tools)
# Token calls (Open Platform) go to the auth service, not the API the limit is for, and come
# between a call refused for its token and that call again: deferring the refresh to a slot
# would have every retry's call refused again, and the account would never be refreshed nor
# parked.
AUTH_PATHS = ("/auth/",)
# A call later than LATE is sent now, its slot moved to now, if that keeps every WINDOW at
# the limit (the account's next slots then come later by what the call was late); else (or
# later than an interval: a new slot costs less than pushing the next ones) it takes a new
# slot, or, chained, is left to its group. A looser bound on lateness (half an interval) let
# calls sent late put an account over its limit within a second when many accounts shared a
# busy machine, and always taking a new slot instead left many slots unused there
# (bench/RESULTS.md, scenario 5).
# The calls of the last WINDOW are kept for this up to this many calls a second; above it
# (the limit switched off), the spacing alone holds.
WINDOW_UP_TO = 50
# A deferral's message comes back this long before its slot and the task sleeps the rest
# (within MAX_SLOT_WAIT): Celery's timer and a task's start make a message a little late, and
# late for its slot the call would have to be moved or take a new one. Near MAX_SLOT_WAIT, as
# a shorter lead left many deferred calls late on a busy machine (bench/RESULTS.md, bench.fair
# accounts).
EARLY = 0.045
# A chained call (a removal job's runner, which goes on to its job's next batch) or one of work
# that goes on to its next call at once (an order sync's next page) sleeps for a slot up to its
# group's slots ahead away, and at most this long, when a thread of the worker
# is free to (SlotSleepers): a deferral costs a message, a task and transactions for each call
# (bench/RESULTS.md, issue 27), a sleep nothing. Well under the shortest lease and a shutdown's
# patience: a killed worker's sleeping runner is a call in flight, found again by its lease.
CHAINED_SLOT_WAIT = 0.5


class SlotSleepers:
    """How many of this process's threads may sleep for a chained call's slot at once: half
    its pool (none until told: a process that is not a worker, or one thread), so that the
    other half serve every other account's and group's messages while runners sleep, and a
    job's runners cannot hold the pool while other work waits for a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.limit = 0
        self.sleeping = 0

    def allow(self, threads: int) -> None:
        """The worker's pool has `threads` threads."""
        with self._lock:
            self.limit = max(0, threads // 2)

    def take(self) -> bool:
        """A thread may sleep for its slot (then `give_back` after); False: it defers."""
        with self._lock:
            if self.sleeping >= self.limit:
                return False
            self.sleeping += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.sleeping -= 1


slot_sleepers = SlotSleepers()


class RateLimited(ThrottledApiError):
    """The call must wait for its slot (`slot`, on this machine's time.time() clock, reserved
    for it), or for a slot to be free at all (`slot` None): nothing was sent."""

    def __init__(self, action: str, wait: float, slot: float | None = None) -> None:
        super().__init__(f"local rate limit: next call slot in {wait:.1f}s", action=action)
        self.wait = wait
        self.slot = slot

    @property
    def come_back(self) -> float:
        """Seconds until the work should run again: EARLY before its reserved slot."""
        return self.wait if self.slot is None else max(0.0, self.wait - EARLY)


class TurnsTaken(RateLimited):
    """The call's group holds all the slots ahead it may: none was reserved for this call.
    Work that others of its group go on with (a removal job's batches) is left to them;
    other work comes back later (`interval`: the account's seconds between slots)."""

    def __init__(self, action: str, wait: float, interval: float) -> None:
        super().__init__(action, wait)
        self.interval = interval


class LateForSlot(RateLimited):
    """Work of a group that others go on with came back too late for its reserved slot:
    nothing was sent, and no new slot was reserved. A late message means the workers' threads
    are all busy; were it to take a new slot, the message would come back late again, and its
    group's late messages would take slot after slot with no call made. Left to the group's
    runners under way, the messages waiting for slots become as many as the threads can
    serve."""

    def __init__(self, action: str) -> None:
        super().__init__(action, 0.0)


@dataclass
class Turn:
    """The group of the calls a service makes now, how many calls its work makes (reserved
    together), and the reserved slot of its next call (given: the one it was deferred to)."""

    group: str
    slot: float | None = None  # time.time() of the next call's reserved slot
    calls: int = 1
    chained: bool = False  # others of the group go on with its work: LateForSlot when late
    sleeps: bool = False  # its work goes on at once: near its slot it sleeps, as chained work
    # Told when the call goes out (its slot has come, or a late one was moved to now): until
    # then the call may need the slot store, so a caller on another thread whose transaction
    # would hold it (the database's write lock, on the embedded stack) waits for this first.
    on_slot: Callable[[], None] | None = None
    left: int = 0  # reserved slots not yet used, the next at `slot`
    # A slot reserved now came at once, at a real limit: the account had a free slot that no
    # slot the group held ahead took, so the group's work is short of hands (a removal job
    # whose calls take longer than its held slots cover starts more runners). The account's
    # interval (seconds between its slots) then, else 0.
    spare: float = 0.0

    def __post_init__(self) -> None:
        if self.slot is not None:
            self.left = self.calls


_turn: ContextVar[Turn | None] = ContextVar("lazada_rate_turn", default=None)


@contextmanager
def turn(
    group: str,
    slot: float | None = None,
    calls: int = 1,
    chained: bool = False,
    sleeps: bool = False,
    on_slot: Callable[[], None] | None = None,
) -> Iterator[Turn]:
    """Calls made inside count for `group`; the work's first `calls` take slots reserved
    together (from `slot` when the work was deferred to it). `chained`: others of the group
    go on with its work (a removal job's runners); `sleeps`: its work goes on at once after
    the call (an order sync's pages), so near its slot it sleeps for it, as chained work
    does; `on_slot` is called when the call goes out. Yields the Turn (its `spare` after)."""
    current = Turn(group, slot, calls, chained, sleeps, on_slot=on_slot)
    token = _turn.set(current)
    try:
        yield current
    finally:
        _turn.reset(token)


class SlotStore(Protocol):
    """Where an account's calendar of slots is kept, shared by every worker of a deployment
    (worker.ratelimit.database, worker.ratelimit.redis)."""

    def reserve(
        self,
        account: str,
        group: str,
        interval: float,
        ahead: int,
        calls: int = 1,
        per_second: int = 0,
    ) -> Grant:
        """Reserve the account's next `calls` slots for `group`, `interval` apart, unless
        the group already holds `ahead` slots that have not come yet; never more than
        `per_second` slots within WINDOW s (0: spacing alone)."""

    def move(
        self,
        account: str,
        group: str,
        late: float,
        interval: float,
        per_second: int,
        spacing: float = 0.0,
    ) -> bool:
        """Move `group`'s slot that was `late` s ago to now, if no WINDOW s then holds more
        than `per_second` slots and no slot is nearer to now than `spacing` s; False (nothing
        changed) if it would."""

    def throttled(self, account: str, pause: float, slow_for: float) -> None:
        """The API said "too frequent": no slot for `pause` s, half the rate for `slow_for` s."""


def slots_ahead(rate: float) -> int:
    """How many slots one group may hold ahead of now at `rate` calls a second."""
    return max(GROUP_AHEAD, math.floor(GROUP_SECONDS * rate))


def move_spacing(rate: float) -> float:
    """How far a late call's slot moved to now must stay from the account's other slots at
    `rate` calls a second (0: the windows' count alone, at a call a second or more). Below a
    call a second the limit is the spacing itself, which a window's count does not keep:
    half way between the API's own interval (1/rate) and the slots' spacing (SPACING/rate),
    the other half of that margin left for the time from the move to the call's arrival."""
    if rate + EPSILON >= 1:
        return 0.0
    return (1 + SPACING) / 2 / rate


class RateLimiter:
    """The client's before_call and after_call hooks for one account."""

    def __init__(self, store: SlotStore, account: str, rate: float) -> None:
        self.store = store
        self.account = account
        self.interval = SPACING / rate
        self.ahead = slots_ahead(rate)
        # The most calls any WINDOW may hold (0: too many to keep; the spacing alone holds).
        limit = max(1, math.floor(rate + EPSILON))
        self.per_second = limit if limit <= WINDOW_UP_TO else 0
        # A late slot is moved to now where every window stays at the limit (with the limit
        # off, never), and below a call a second where it stays move_spacing from the others.
        self.move_spacing = move_spacing(rate)
        # How far a chained call's slot may be for it to sleep for it (its group's slots ahead).
        self.chained_wait = min(CHAINED_SLOT_WAIT, self.ahead * self.interval)

    def acquire(self, action: str) -> None:
        """Return when the call may be made (at most MAX_SLOT_WAIT s from now; a later call
        of work reserved together, at most an interval; a chained call, when a thread may
        sleep, at most chained_wait), else raise RateLimited with the slot reserved for it,
        TurnsTaken, or LateForSlot."""
        if action.startswith(AUTH_PATHS):
            return
        current = _turn.get() or Turn(OTHER_GROUP)
        self._acquire(current, action)
        if current.on_slot is not None:
            current.on_slot()

    def _acquire(self, current: Turn, action: str) -> None:
        # The next slot of a run a call of this work has used already.
        continuing = current.slot is not None and current.left < current.calls
        slot, current.slot = current.slot, None
        late = 0.0 if slot is None or continuing else time.time() - slot
        if late > LATE:
            if self._goes_late(current, action, late):
                return
            slot = None  # too late for its slot: nothing was sent yet, so it takes a new one
        if slot is None:  # (again, past its run: a deferral starts the work over)
            grant = self.store.reserve(
                self.account,
                current.group,
                self.interval,
                self.ahead,
                current.calls,
                self.per_second,
            )
            if not grant.reserved:
                raise TurnsTaken(action, grant.wait, self.interval)
            slot, current.left = time.time() + grant.wait, current.calls
            if grant.wait <= MAX_SLOT_WAIT and self.per_second:
                current.spare = self.interval
        wait = slot - time.time()
        sleeper = False
        if wait > MAX_SLOT_WAIT and not continuing:
            # A chained call near its slot sleeps for it, if a thread may: the same wait as
            # its deferral's, without the deferral.
            sleeper = (
                (current.chained or current.sleeps)
                and wait <= self.chained_wait
                and slot_sleepers.take()
            )
            if not sleeper:
                raise RateLimited(action, wait, slot)  # comes back at its slot, its run reserved
        # A later call of the run waits here (at most an interval): a deferral would start the
        # work over, sending its first call again.
        current.left -= 1
        if current.left > 0:
            current.slot = slot + self.interval
        if wait > 0:
            try:
                time.sleep(max(0.0, slot - time.time()))
            finally:
                if sleeper:
                    slot_sleepers.give_back()
            late = time.time() - slot
            if current.calls == 1 and late > LATE and not self._goes_late(current, action, late):
                self._acquire(current, action)  # woken too late for its slot: a new one

    def _goes_late(self, current: Turn, action: str, late: float) -> bool:
        """Whether a call `late` s after its slot (more than LATE) is sent now, its slot
        moved to now where every window stays at the limit; else LateForSlot for chained
        work, or False: it takes a new slot."""
        movable = current.calls == 1 and late <= self.interval and bool(self.per_second)
        if movable and self.store.move(
            self.account, current.group, late, self.interval, self.per_second, self.move_spacing
        ):
            return True
        if current.chained:
            raise LateForSlot(action)
        return False

    def observe(self, record: CallRecord) -> None:
        if record.throttled:
            log.warning("%s throttled (%s): slowing down", record.action, record.error_code)
            self.store.throttled(self.account, PAUSE_AFTER_THROTTLE, SLOW_FOR)


_lock = threading.Lock()
_limiters: dict[tuple[str, str, float], RateLimiter] = {}


def limiter_for(settings: Settings, account: str, rate: float) -> RateLimiter:
    """The process's limiter for `account` at `rate` calls a second: its slots in Redis when
    the broker is Redis, else in the database, shared by every worker of the deployment."""
    redis_broker = settings.broker_url.startswith(("redis://", "rediss://"))
    store_url = settings.broker_url if redis_broker else settings.database_url
    key = (store_url, account, rate)
    with _lock:
        limiter = _limiters.get(key)
        if limiter is None:
            store: SlotStore = RedisSlots(store_url) if redis_broker else DatabaseSlots(store_url)
            limiter = RateLimiter(store, account, rate)
            _limiters[key] = limiter
        return limiter
