"""One rate limit for all workers of an account, on every machine, shared fairly.

The limiter hands out call slots at least 1/rate seconds apart: a caller reserves a slot in
shared state, and the calendar of reserved slots keeps the spacing. Reserving instead of
retrying keeps the rate exact and every slot used. Time comes from the shared store's clock,
so workers on machines with skewed clocks still agree.

No task waits for its slot longer than MAX_SLOT_WAIT: a slot further away is still reserved,
and the work is deferred to it (a row due then and a countdown, worker.services.attempts), so
its thread takes other work meanwhile.

Fair shares: every call belongs to a group (a removal job, order fetches, image submits, image
polls: the Turn a service sets around its call). A group's next slot is placed at least as
many intervals after its last one as there are groups taking turns (a slot to come and
another near it), in the first free place of the calendar from there: with G groups busy,
each gets every G-th slot (round-robin), and a group alone gets them all. A group of one call
now and then gets the first free place, and no room is kept for it after. A group holds at
most a few slots ahead (GROUP_AHEAD, or GROUP_SECONDS' worth); past that it is refused
(TurnsTaken), and its own holders go on with its next work when their slot comes. So a small
job or an order sent while a 20,000-SKU job runs gets a slot after a few of the big job's, not
after all of them.

Work that makes several calls (an Open Platform order: the order, then its items) reserves
them together, one interval apart, and its later calls wait for theirs in the task: deferring
a second call made the work start over, and under load it started over forever.

The state lives in Redis when the broker is Redis, else in the results database. An E901 or
E429 answer keeps the account's new slots back for a moment and halves its rate for a while
(this account only).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import NamedTuple, Protocol

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from worker.db.engine import get_engine
from worker.db.models import RateLimit
from worker.platforms import CallRecord, ThrottledApiError
from worker.settings import Settings

log = logging.getLogger(__name__)

PAUSE_AFTER_THROTTLE = 1.0  # seconds no call is made after the API said "too frequent"
SLOW_FOR = 30.0  # seconds the rate stays halved after that
# Slots 3% further apart than 1/rate: calls leave a few ms late or early (threads, GIL), and
# exact spacing let rate+1 calls land in one second at the API (bench/RESULTS.md, ratelimit).
SPACING = 1.03
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
# made every retry's call be refused again, and the account was never refreshed nor parked.
AUTH_PATHS = ("/auth/",)
# Slots SPACING/rate apart leave the calls of any second SPACING - 1 s of slack. A call up to
# LATE after its reserved slot is sent in it; no more than the account's limit of calls are
# ever placed within WINDOW s (SPACING - LATE, what regular slots keep with a call that
# late), and a later call is sent only where that holds. Calls then leave at least
# WINDOW - LATE (1.02 s) after the call `limit` before them: the rest of a second is for the
# jitter between sending and the API's clock (bench.fair accounts, with a probe at the
# worker's send and the sandbox's arrival: p99 22 ms, on two busy shared cores).
LATE = 0.005
WINDOW = SPACING - LATE
# A call later than LATE is sent now, its slot moved to now, if that keeps every WINDOW at
# the limit (the account's next slots then come later by what the call was late); else (or
# later than an interval: a new slot costs less than pushing the next ones) it takes a new
# slot, or, chained, is left to its group. Half an interval was allowed as lateness before,
# and the calls sent that late put an account over its limit in a second in bench.fair's
# twenty accounts (63 of 1,200 calls on a busy machine: bench/RESULTS.md, scenario 5); taking
# a new slot instead left a quarter of the slots unused there.
# The calls of the last WINDOW are kept for this up to this many calls a second; above it
# (the limit switched off), the spacing alone holds.
WINDOW_UP_TO = 50
# A bound on place()'s search (each step moves past a slot or a window): never reached, but a
# Lua loop without one would stop Redis for good.
MAX_SHIFTS = 1000
# A deferral's message comes back this long before its slot and the task sleeps the rest
# (within MAX_SLOT_WAIT): Celery's timer and a task's start make a message a little late, and
# late for its slot the call would have to be moved or take a new one. With 30 ms, a quarter
# of the deferred calls in bench.fair accounts came back more than 15 ms late; with 45, 6%.
EARLY = 0.045
# Slots this much closer than an interval still count as an interval apart: sums of floats
# (and Redis's text) put a free place between two slots a hair under an interval wide, and
# such a place never got filled: a slot in five went unused with four jobs.
EPSILON = 0.001


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
    are all busy; taking a new slot, the message came back late again, and its group's late
    messages took slot after slot with no call made. Left to the group's runners
    under way, the messages waiting for slots become as many as the threads can serve."""

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
    group: str, slot: float | None = None, calls: int = 1, chained: bool = False
) -> Iterator[Turn]:
    """Calls made inside count for `group`; the work's first `calls` take slots reserved
    together (from `slot` when the work was deferred to it). `chained`: others of the group
    go on with its work (a removal job's runners). Yields the Turn (its `spare` after)."""
    current = Turn(group, slot, calls, chained)
    token = _turn.set(current)
    try:
        yield current
    finally:
        _turn.reset(token)


class Grant(NamedTuple):
    reserved: bool  # False: the group holds all its slots ahead
    wait: float  # seconds until the (first) reserved slot, or until the group's first one passes


class SlotStore(Protocol):
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

    def move(self, account: str, group: str, late: float, interval: float, per_second: int) -> bool:
        """Move `group`'s slot that was `late` s ago to now, if no WINDOW s then holds more
        than `per_second` slots; False (nothing changed) if it would."""

    def throttled(self, account: str, pause: float, slow_for: float) -> None:
        """The API said "too frequent": no slot for `pause` s, half the rate for `slow_for` s."""


def slots_ahead(rate: float) -> int:
    """How many slots one group may hold ahead of now at `rate` calls a second."""
    return max(GROUP_AHEAD, math.floor(GROUP_SECONDS * rate))


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

    def acquire(self, action: str) -> None:
        """Return when the call may be made (at most MAX_SLOT_WAIT s from now; a later call
        of work reserved together, at most an interval), else raise RateLimited with the slot
        reserved for it, TurnsTaken, or LateForSlot."""
        if action.startswith(AUTH_PATHS):
            return
        current = _turn.get() or Turn(OTHER_GROUP)
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
        if wait > MAX_SLOT_WAIT and not continuing:
            raise RateLimited(action, wait, slot)  # comes back at its slot, its run reserved
        # A later call of the run waits here (at most an interval): a deferral would start the
        # work over, sending its first call again.
        current.left -= 1
        if current.left > 0:
            current.slot = slot + self.interval
        if wait > 0:
            time.sleep(wait)
            late = time.time() - slot
            if current.calls == 1 and late > LATE and not self._goes_late(current, action, late):
                self.acquire(action)  # woken too late for its slot: a new one

    def _goes_late(self, current: Turn, action: str, late: float) -> bool:
        """Whether a call `late` s after its slot (more than LATE) is sent now, its slot
        moved to now where every window stays at the limit; else LateForSlot for chained
        work, or False: it takes a new slot."""
        movable = current.calls == 1 and late <= self.interval and self.per_second
        if movable and self.store.move(
            self.account, current.group, late, self.interval, self.per_second
        ):
            return True
        if current.chained:
            raise LateForSlot(action)
        return False

    def observe(self, record: CallRecord) -> None:
        if record.throttled:
            log.warning("%s throttled (%s): slowing down", record.action, record.error_code)
            self.store.throttled(self.account, PAUSE_AFTER_THROTTLE, SLOW_FOR)


def place(
    turns: dict[str, list[float]],
    group: str,
    now: float,
    interval: float,
    ahead: int,
    floor: float = 0.0,
    calls: int = 1,
    step: float | None = None,
    per_second: int = 0,
) -> tuple[Grant, dict[str, list[float]]]:
    """Reserve `group` `calls` slots, `step` apart (the account's own interval, while
    `interval` may be a throttle's longer one), in the calendar `turns` (each group's
    reserved slots, epoch seconds; slots past by more than an interval are dropped, nearer
    ones still keep their distance, and with `per_second` those of the last WINDOW count
    against it). Returns the grant of the first and the calendar to store.
    No slot comes before `floor`.

    The Redis store runs the same steps in Lua (_RESERVE): keep them alike.
    """
    step = interval if step is None else step
    kept = _kept(turns, now, interval, per_second)
    mine = kept.get(group, [])
    recent = [t for t in mine if t > now - interval]
    coming = [t for t in mine if t > now]
    if len(coming) >= ahead:
        return Grant(False, min(coming) - now), kept
    busy = _taking_turns(kept, group, now, interval)
    slot = max(now, floor)
    if recent:  # round-robin: as many intervals after its last slot as groups take turns
        slot = max(slot, max(recent) + len(busy) * interval)
    span = (calls - 1) * step  # from the run's first slot to its last
    taken = sorted(t for slots in kept.values() for t in slots)
    for _ in range(MAX_SHIFTS):
        for t in taken:
            if t >= slot + span + interval - EPSILON:
                break
            if t > slot - interval + EPSILON:  # too close: the first free place after it
                slot = t + interval
        run = [slot + i * step for i in range(calls)]
        shift = _window_shift(taken, run, per_second)
        if shift <= 0:
            break
        slot += shift
    kept[group] = [*mine, *run]
    return Grant(True, slot - now), kept


def _taking_turns(
    kept: dict[str, list[float]], group: str, now: float, interval: float
) -> set[str]:
    """The groups a new slot of `group` keeps room for: itself, and each group that takes
    turns: a slot to come, and two of its slots (past or to come) within two rounds (an
    interval for each group with a slot to come). A group of one call now and then (an
    order, a 50-SKU job) may not come back, and the room kept for it after its slot was a
    slot nobody used: orders now and then beside a removal job left a slot or two unused
    each (bench/RESULTS.md, seventh session)."""
    coming = {g for g, slots in kept.items() if max(slots) > now} | {group}
    reach = 2 * len(coming) * interval
    busy = {group}
    for g in coming - {group}:
        slots = sorted(kept[g])
        if any(b - a <= reach + EPSILON for a, b in pairwise(slots)):
            busy.add(g)
    return busy


def move_slot(
    turns: dict[str, list[float]],
    group: str,
    now: float,
    late: float,
    interval: float,
    per_second: int,
) -> tuple[bool, dict[str, list[float]]]:
    """Move `group`'s slot nearest to `now - late` (if within half an interval of it) to
    `now`, unless the calendar `turns` would then hold more than `per_second` slots within
    WINDOW s. Returns whether it moved, and the calendar to store.

    The Redis store runs the same steps in Lua (_MOVE): keep them alike.
    """
    kept = _kept(turns, now, interval, per_second)
    mine = list(kept.get(group, []))
    due = now - late
    nearest = min(mine, key=lambda t: abs(t - due), default=None)
    if nearest is not None and abs(nearest - due) <= interval / 2:
        mine.remove(nearest)
    others = sorted(t for g, slots in kept.items() if g != group for t in slots)
    if _window_shift(sorted([*others, *mine]), [now], per_second) > 0:
        return False, turns
    kept[group] = [*mine, now]
    return True, kept


def _kept(
    turns: dict[str, list[float]], now: float, interval: float, per_second: int
) -> dict[str, list[float]]:
    """The calendar without the slots no new one is measured against."""
    horizon = now - (max(interval, WINDOW) if per_second else interval)
    kept = {g: [t for t in slots if t > horizon] for g, slots in turns.items()}
    return {g: slots for g, slots in kept.items() if slots}


def _window_shift(taken: list[float], run: list[float], per_second: int) -> float:
    """How much later the `run` of new slots must start so that, with the sorted `taken`,
    no WINDOW holds more than `per_second` slots (0: it fits, or no limit)."""
    if not per_second:
        return 0.0
    marked = sorted([(t, False) for t in taken] + [(t, True) for t in run])
    for i in range(len(marked) - per_second):
        (first, first_new), (last, _) = marked[i], marked[i + per_second]
        if last - first >= WINDOW - EPSILON:
            continue
        new = [t for t, is_new in marked[i : i + per_second + 1] if is_new]
        if not new or len(new) == per_second + 1:
            continue  # the taken slots' own (placed by the rule: never) or the run's own
        if first_new:  # the window starts at a new slot: past the slot after it
            return marked[i + 1][0] - first + EPSILON
        return first + WINDOW - new[0]
    return 0.0


class _SlotRow(NamedTuple):
    floor: datetime  # no slot before (a throttle's pause)
    slow_until: datetime | None
    turns: dict[str, list[float]]  # each group's reserved slots (epoch seconds)
    now: datetime


class DatabaseSlots:
    """Slots in the results database: one row per account, locked while a slot is taken.

    Core statements on a plain connection: this runs once per API call, so it stays small.
    """

    def __init__(self, database_url: str) -> None:
        self.engine = get_engine(database_url)

    def _state(self, conn: Connection, account: str) -> _SlotRow:
        """The account's row, locked, and the store's time."""
        now = _now(conn)
        row = conn.execute(
            select(RateLimit.next_slot_at, RateLimit.slow_until, RateLimit.turns)
            .where(RateLimit.account == account)
            .with_for_update()
        ).one_or_none()
        if row is None:
            conn.execute(insert(RateLimit).values(account=account, next_slot_at=now))
            return _SlotRow(now, None, {}, now)
        return _SlotRow(row.next_slot_at, row.slow_until, json.loads(row.turns or "{}"), now)

    def _save(self, conn: Connection, account: str, **values: datetime | str | None) -> None:
        conn.execute(update(RateLimit).where(RateLimit.account == account).values(**values))

    def reserve(
        self,
        account: str,
        group: str,
        interval: float,
        ahead: int,
        calls: int = 1,
        per_second: int = 0,
    ) -> Grant:
        try:
            return self._reserve(account, group, interval, ahead, calls, per_second)
        except IntegrityError:  # another worker created the account's row at the same moment
            return self._reserve(account, group, interval, ahead, calls, per_second)

    def _reserve(
        self, account: str, group: str, interval: float, ahead: int, calls: int, per_second: int
    ) -> Grant:
        with self.engine.begin() as conn:
            floor, slow_until, turns, now = self._state(conn, account)
            slowed = slow_until is not None and now < slow_until
            grant, turns = place(
                turns,
                group,
                now.timestamp(),
                interval * 2 if slowed else interval,
                ahead,
                floor.timestamp(),
                calls,
                step=interval,
                per_second=per_second,
            )
            self._save(conn, account, turns=json.dumps(turns))
            return grant

    def move(self, account: str, group: str, late: float, interval: float, per_second: int) -> bool:
        with self.engine.begin() as conn:
            _, _, turns, now = self._state(conn, account)
            moved, turns = move_slot(turns, group, now.timestamp(), late, interval, per_second)
            if moved:
                self._save(conn, account, turns=json.dumps(turns))
            return moved

    def throttled(self, account: str, pause: float, slow_for: float) -> None:
        with self.engine.begin() as conn:
            floor, _, _, now = self._state(conn, account)
            self._save(
                conn,
                account,
                next_slot_at=max(floor, now + timedelta(seconds=pause)),
                slow_until=now + timedelta(seconds=slow_for),
            )


def _now(conn: Connection) -> datetime:
    """The database's clock on PostgreSQL (shared by all machines); this machine's on SQLite."""
    if conn.dialect.name == "postgresql":
        value = conn.scalar(select(func.clock_timestamp()))
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
    return datetime.now(UTC)


# Redis: the same steps as place() and move_slot() in Lua scripts, atomic on the server, on
# its clock. The account's hash holds next_slot (the floor), slow_until, and a field
# "g:<group>" a group with its slots ("t1,t2"); fields whose slots are all past go.
_WINDOW_SHIFT = """
local function window_shift(taken, run, per_second, window, eps)
  if per_second <= 0 then return 0 end
  local marked = {}
  for _, t in ipairs(taken) do marked[#marked + 1] = {t, false} end
  for _, t in ipairs(run) do marked[#marked + 1] = {t, true} end
  table.sort(marked, function(a, b)
    return a[1] < b[1] or (a[1] == b[1] and (not a[2]) and b[2])
  end)
  for i = 1, #marked - per_second do
    local first, last = marked[i], marked[i + per_second]
    if last[1] - first[1] < window - eps then
      local new_first, old = nil, 0
      for k = i, i + per_second do
        if marked[k][2] then
          if new_first == nil then new_first = marked[k][1] end
        else
          old = old + 1
        end
      end
      if new_first ~= nil and old > 0 then
        if first[2] then return marked[i + 1][1] - first[1] + eps end
        return first[1] + window - new_first
      end
    end
  end
  return 0
end
"""
_RESERVE = (
    _WINDOW_SHIFT
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local ahead = tonumber(ARGV[2])
local group = 'g:' .. ARGV[3]
local eps = tonumber(ARGV[4])
local calls = tonumber(ARGV[5])
local per_second = tonumber(ARGV[6])
local window = tonumber(ARGV[7])
local step = interval
local slow_until = tonumber(redis.call('HGET', KEYS[1], 'slow_until') or '0')
if now < slow_until then interval = interval * 2 end
local keep = interval
if per_second > 0 and window > keep then keep = window end
local fields = redis.call('HGETALL', KEYS[1])
local all, mine, coming, first, recent = {}, {}, 0, nil, nil
local others = {}  -- each other group with a slot to come: its closest two slots' distance
for i = 1, #fields, 2 do
  local name = fields[i]
  if string.sub(name, 1, 2) == 'g:' then
    local kept, last = {}, nil
    for s in string.gmatch(fields[i + 1], '[^,]+') do
      local slot = tonumber(s)
      if slot > now - keep then
        table.insert(kept, slot)
        table.insert(all, slot)
        if last == nil or slot > last then last = slot end
        if name == group then
          if slot > now - interval and (recent == nil or slot > recent) then recent = slot end
          if slot > now then
            coming = coming + 1
            if first == nil or slot < first then first = slot end
          end
        end
      end
    end
    if #kept == 0 then
      redis.call('HDEL', KEYS[1], name)
    elseif name == group then
      mine = kept
    elseif last > now then
      table.sort(kept)
      local closest = math.huge
      for k = 2, #kept do closest = math.min(closest, kept[k] - kept[k - 1]) end
      table.insert(others, closest)
    end
  end
end
if coming >= ahead then return {0, tostring(first - now)} end
local reach = 2 * (#others + 1) * interval
local busy = 1
for _, closest in ipairs(others) do
  if closest <= reach + eps then busy = busy + 1 end
end
local slot = math.max(now, tonumber(redis.call('HGET', KEYS[1], 'next_slot') or '0'))
if recent ~= nil then slot = math.max(slot, recent + busy * interval) end
table.sort(all)
local span = (calls - 1) * step
local run = {}
for _ = 1, tonumber(ARGV[8]) do
  for _, taken in ipairs(all) do
    if taken >= slot + span + interval - eps then break end
    if taken > slot - interval + eps then slot = taken + interval end
  end
  run = {}
  for i = 0, calls - 1 do table.insert(run, slot + i * step) end
  local shift = window_shift(all, run, per_second, window, eps)
  if shift <= 0 then break end
  slot = slot + shift
end
for _, s in ipairs(run) do table.insert(mine, s) end
local text = {}
for _, s in ipairs(mine) do table.insert(text, string.format('%.6f', s)) end
redis.call('HSET', KEYS[1], group, table.concat(text, ','))
redis.call('EXPIRE', KEYS[1], 3600)
return {1, tostring(slot - now)}
"""
)
_MOVE = (
    _WINDOW_SHIFT
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local late = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local per_second = tonumber(ARGV[3])
local group = 'g:' .. ARGV[4]
local window = tonumber(ARGV[5])
local eps = tonumber(ARGV[6])
local keep = math.max(interval, window)
local fields = redis.call('HGETALL', KEYS[1])
local others, mine = {}, {}
for i = 1, #fields, 2 do
  local name = fields[i]
  if string.sub(name, 1, 2) == 'g:' then
    for s in string.gmatch(fields[i + 1], '[^,]+') do
      local slot = tonumber(s)
      if slot > now - keep then
        if name == group then table.insert(mine, slot) else table.insert(others, slot) end
      end
    end
  end
end
local due, nearest = now - late, nil
for k, slot in ipairs(mine) do
  if nearest == nil or math.abs(slot - due) < math.abs(mine[nearest] - due) then nearest = k end
end
if nearest ~= nil and math.abs(mine[nearest] - due) <= interval / 2 then
  table.remove(mine, nearest)
end
local taken = {}
for _, s in ipairs(others) do table.insert(taken, s) end
for _, s in ipairs(mine) do table.insert(taken, s) end
table.sort(taken)
if window_shift(taken, {now}, per_second, window, eps) > 0 then return 0 end
table.insert(mine, now)
local text = {}
for _, s in ipairs(mine) do table.insert(text, string.format('%.6f', s)) end
redis.call('HSET', KEYS[1], group, table.concat(text, ','))
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""
)
_THROTTLED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local next_slot = tonumber(redis.call('HGET', KEYS[1], 'next_slot') or '0')
redis.call('HSET', KEYS[1], 'next_slot', tostring(math.max(next_slot, now + tonumber(ARGV[1]))))
redis.call('HSET', KEYS[1], 'slow_until', tostring(now + tonumber(ARGV[2])))
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""


class RedisSlots:
    """Slots in Redis (the broker's server), one hash per account."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self._reserve = self.client.register_script(_RESERVE)
        self._throttled = self.client.register_script(_THROTTLED)
        self._move = self.client.register_script(_MOVE)

    def reserve(
        self,
        account: str,
        group: str,
        interval: float,
        ahead: int,
        calls: int = 1,
        per_second: int = 0,
    ) -> Grant:
        args: list[str | float] = [interval, ahead, group, EPSILON, calls, per_second]
        args += [WINDOW, MAX_SHIFTS]
        reserved, wait = self._reserve(keys=[_key(account)], args=args)
        return Grant(bool(reserved), float(wait))

    def move(self, account: str, group: str, late: float, interval: float, per_second: int) -> bool:
        args: list[str | float] = [late, interval, per_second, group, WINDOW, EPSILON]
        return bool(self._move(keys=[_key(account)], args=args))

    def throttled(self, account: str, pause: float, slow_for: float) -> None:
        self._throttled(keys=[_key(account)], args=[pause, slow_for])


def _key(account: str) -> str:
    return f"lazada-worker:rate:{account}"


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
