"""How many runners a removal job starts for its account's rate."""

from worker.ratelimit.runners import RUNNERS_PER_JOB, runners_for


def test_a_job_starts_runners_for_a_call_in_flight_and_its_slots_ahead_at_most_32() -> None:
    assert runners_for(5) == 3  # one call at 5/s, and its two slots ahead
    assert runners_for(0.5) == 3
    assert runners_for(40) == 8 + 20  # 0.2 s of calls, 0.5 s of slots ahead
    assert runners_for(100_000) == RUNNERS_PER_JOB == 32
