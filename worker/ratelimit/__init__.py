"""One rate limit for all workers of an account, on every machine, shared fairly.

The limiter hands out call slots at least 1/rate seconds apart: a caller reserves a slot in
shared state, and the calendar of reserved slots keeps the spacing. Reserving instead of
retrying keeps the rate exact and every slot used. Time comes from the shared store's clock,
so workers on machines with skewed clocks still agree.

No task waits for its slot longer than MAX_SLOT_WAIT: a slot further away is still reserved,
and the work is deferred to it (a row due then and a countdown, worker.services.attempts), so
its thread takes other work meanwhile. Chained work (a removal job's runners, which go on to
the job's next batch) and work that goes on at once (an order sync's pages) are the exception:
near its slot (CHAINED_SLOT_WAIT, its group's slots ahead) it sleeps for it while at most half
the worker's threads do so (slot_sleepers), as a deferral per call would cost a message, a
task and transactions.

Fair shares: every call belongs to a group (a removal job, order fetches, image submits, image
polls: the Turn a service sets around its call). A group's next slot is placed at least as
many intervals after its last one as there are groups taking turns (a slot to come and
another near it), in the first free place of the calendar from there: with G groups busy,
each gets every G-th slot (round-robin), and a group alone gets them all. A group of one call
now and then gets the first free place, and no room is kept for it after. A group holds at
most a few slots ahead (GROUP_AHEAD, or GROUP_SECONDS' worth); past that it is refused
(TurnsTaken), and its own holders go on with its next work when their slot comes. So a small
job or an order sent while a large job runs gets a slot after a few of the large job's, not
after all of them.

Work that makes several calls (an Open Platform order: the order, then its items) reserves
them together, one interval apart, and its later calls wait for theirs in the task: deferring
a second call would make the work start over, and under load it could start over forever.

The state lives in Redis when the broker is Redis, else in the results database. An E901 or
E429 answer keeps the account's new slots back for a moment and halves its rate for a while
(this account only).

The package's modules, each depending only on those before it:
- calendar: the pure calendar of reserved slots (place, move_slot) and its constants;
- database, redis: the two slot stores (redis runs the calendar's steps as the Lua scripts
  in lua/, shipped as package data);
- limiter: the policy (RateLimiter, Turn, the errors) and limiter_for, which picks the store;
- runners: how many runners a removal job keeps for its account's rate.
"""

from worker.ratelimit.calendar import (
    EPSILON,
    LATE,
    MAX_SHIFTS,
    SPACING,
    WINDOW,
    Grant,
    move_slot,
    place,
)
from worker.ratelimit.database import DatabaseSlots
from worker.ratelimit.limiter import (
    AUTH_PATHS,
    CHAINED_SLOT_WAIT,
    EARLY,
    GROUP_AHEAD,
    GROUP_SECONDS,
    MAX_SLOT_WAIT,
    OTHER_GROUP,
    PAUSE_AFTER_THROTTLE,
    SLOW_FOR,
    WINDOW_UP_TO,
    LateForSlot,
    RateLimited,
    RateLimiter,
    SlotSleepers,
    SlotStore,
    Turn,
    TurnsTaken,
    limiter_for,
    move_spacing,
    slot_sleepers,
    slots_ahead,
    turn,
)
from worker.ratelimit.redis import RedisSlots
from worker.ratelimit.runners import RUNNERS_PER_JOB, more_runner_countdowns, runners_for

__all__ = [
    "AUTH_PATHS",
    "CHAINED_SLOT_WAIT",
    "EARLY",
    "EPSILON",
    "GROUP_AHEAD",
    "GROUP_SECONDS",
    "LATE",
    "MAX_SHIFTS",
    "MAX_SLOT_WAIT",
    "OTHER_GROUP",
    "PAUSE_AFTER_THROTTLE",
    "RUNNERS_PER_JOB",
    "SLOW_FOR",
    "SPACING",
    "WINDOW",
    "WINDOW_UP_TO",
    "DatabaseSlots",
    "Grant",
    "LateForSlot",
    "RateLimited",
    "RateLimiter",
    "RedisSlots",
    "SlotSleepers",
    "SlotStore",
    "Turn",
    "TurnsTaken",
    "limiter_for",
    "more_runner_countdowns",
    "move_slot",
    "move_spacing",
    "place",
    "runners_for",
    "slot_sleepers",
    "slots_ahead",
    "turn",
]
