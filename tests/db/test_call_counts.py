"""The API calls' counts by account and outcome (what /metrics reads): each recording adds its
calls to them, whatever outcomes one transaction holds, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from worker.db.audit import record_api_calls
from worker.db.engine import core_transaction, get_engine
from worker.db.models import ApiCallCount
from worker.platforms import CallRecord


def _call(outcome: str) -> CallRecord:
    return CallRecord("RemoveProduct", outcome, 0.1, 200, None, "")  # type: ignore[arg-type]


def test_calls_are_added_to_their_accounts_counts_by_outcome(database_url: str) -> None:
    sessions = sessionmaker(get_engine(database_url))
    recordings = [
        ("shop-a", ["ok", "api_error", "ok"]),  # several outcomes in one transaction
        ("shop-b", ["transport_error"]),
        ("shop-a", ["ok", "transport_error"]),  # rows that exist, and one new
    ]
    for account, outcomes in recordings:
        with core_transaction(sessions) as connection:
            record_api_calls(connection, account, [_call(o) for o in outcomes])

    with sessions() as session:
        counts = {
            (row.account, row.outcome): row.calls for row in session.scalars(select(ApiCallCount))
        }
    assert counts == {
        ("shop-a", "ok"): 3,
        ("shop-a", "api_error"): 1,
        ("shop-a", "transport_error"): 1,
        ("shop-b", "transport_error"): 1,
    }
