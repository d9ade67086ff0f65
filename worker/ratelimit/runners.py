"""How many runners a removal job keeps for its account's rate: the limiter's side of the
job's tasks (worker.services.removal sends them; a runner is a task that goes on to the job's
next free batch until none is left).

A job needs runners for its calls in flight and for the slots its group may hold ahead; a
slow API, whose calls outlast those slots, gets more as the job goes: a call whose fresh
slot came at once (Turn.spare) starts one for each slot it let pass.
"""

from __future__ import annotations

import math

from worker.ratelimit.limiter import slots_ahead

# A job starts at most this many runners: Celery's cost per task (comparable to a batch's own
# work, bench/RESULTS.md) is then paid once per several batches. More than the threads of all
# workers is harmless: a runner that finds no free batch ends at once.
RUNNERS_PER_JOB = 32
# At a real rate limit a job needs runners only for its calls in flight and those waiting for
# their slots: this many seconds of calls (a call's worth at a fast API), and its group's
# slots ahead. More would only find their turns taken and end, and the jobs of many accounts
# sent together would start far apart behind them (bench/RESULTS.md, scenario 5); a slower
# API gets more as the job goes (more_runner_countdowns).
RUNNER_CALL_SECONDS = 0.2


def runners_for(rate: float) -> int:
    """How many tasks a job of an account limited to `rate` calls a second starts."""
    return min(RUNNERS_PER_JOB, math.ceil(rate * RUNNER_CALL_SECONDS) + slots_ahead(rate))


def more_runner_countdowns(took: float, interval: float) -> list[float | None]:
    """The countdowns of the runners for the slots a call that took `took` s let pass with no
    runner of its job there to take them (one at least, at most RUNNERS_PER_JOB), an
    `interval` apart, the first at once (None): arriving together, all but the slots the job
    may hold ahead would find its turns taken."""
    count = min(RUNNERS_PER_JOB, max(1, math.ceil(took / interval) - 1))
    return [n * interval if n else None for n in range(count)]
