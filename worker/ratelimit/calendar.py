"""The calendar of an account's reserved call slots, as pure functions on plain data.

A calendar maps each group (a removal job, order fetches, ...) to its reserved slots, in epoch
seconds. place() reserves a group's next slots in it, move_slot() moves a late call's slot to
now; both return the calendar to store. The stores keep the calendar and call these steps
under their own lock: the database store in Python (worker.ratelimit.database), the Redis
store in Lua (worker/ratelimit/lua/), which must take the same steps.
"""

from __future__ import annotations

from itertools import pairwise
from typing import NamedTuple

# Slots a little further apart than 1/rate: calls leave slightly late or early (threads, the
# GIL), and with exact spacing rate+1 calls could land in one second at the API
# (bench/RESULTS.md, ratelimit).
SPACING = 1.03
# Slots SPACING/rate apart leave the calls of any second SPACING - 1 s of slack. A call up to
# LATE after its reserved slot is sent in it; no more than the account's limit of calls are
# ever placed within WINDOW s (SPACING - LATE, what regular slots keep with a call that
# late), and a later call is sent only where that holds. Calls then leave at least
# WINDOW - LATE, still more than a second, after the call `limit` before them: the rest of the
# slack is for the jitter between sending and the API's clock (measured by bench.fair
# accounts, with a probe at the worker's send and the sandbox's arrival: bench/RESULTS.md).
LATE = 0.005
WINDOW = SPACING - LATE
# A bound on place()'s search (each step moves past a slot or a window): never reached, but a
# Lua loop without one would stop Redis for good.
MAX_SHIFTS = 1000
# Slots this much closer than an interval still count as an interval apart: sums of floats
# (and Redis's text) can put a free place between two slots a hair under an interval wide,
# and such a place would never be filled: slots would go unused whenever several jobs share
# the account.
EPSILON = 0.001


class Grant(NamedTuple):
    reserved: bool  # False: the group holds all its slots ahead
    wait: float  # seconds until the (first) reserved slot, or until the group's first one passes


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

    The Redis store runs the same steps in Lua (lua/reserve.lua): keep them alike.
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
    order, a job of one batch) may not come back, and room kept for it after its slot would
    be a slot nobody used: orders now and then beside a removal job would each leave a slot
    or two unused (bench/RESULTS.md)."""
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
    spacing: float = 0.0,
) -> tuple[bool, dict[str, list[float]]]:
    """Move `group`'s slot nearest to `now - late` (if within half an interval of it) to
    `now`, unless the calendar `turns` would then hold more than `per_second` slots within
    WINDOW s, or a slot nearer to `now` than `spacing` s. Returns whether it moved, and the
    calendar to store.

    The Redis store runs the same steps in Lua (lua/move.lua): keep them alike.
    """
    kept = _kept(turns, now, interval, per_second)
    mine = list(kept.get(group, []))
    due = now - late
    nearest = min(mine, key=lambda t: abs(t - due), default=None)
    if nearest is not None and abs(nearest - due) <= interval / 2:
        mine.remove(nearest)
    taken = sorted([*(t for g, slots in kept.items() if g != group for t in slots), *mine])
    if _window_shift(taken, [now], per_second) > 0:
        return False, turns
    if any(abs(t - now) < spacing - EPSILON for t in taken):
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
    no WINDOW holds more than `per_second` slots (0: it fits, or no limit).

    The Redis store's scripts share the same function in Lua (lua/window_shift.lua)."""
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
