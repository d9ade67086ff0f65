"""The audit: what each HTTP attempt did (collected per thread, stored as rows), and what
failed for good."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.db import storable
from worker.db.models import ApiCall, ApiCallCount, Failure, table_of
from worker.platforms.sellercenter import CallRecord

_local = threading.local()


def record_call(record: CallRecord) -> None:
    """The client's after_call hook: keep the record if this thread is collecting."""
    calls: list[CallRecord] | None = getattr(_local, "calls", None)
    if calls is not None:
        calls.append(record)


@contextmanager
def collect_calls() -> Iterator[list[CallRecord]]:
    """Gather the records of the calls made in this block, on this thread."""
    previous = getattr(_local, "calls", None)
    calls: list[CallRecord] = []
    _local.calls = calls
    try:
        yield calls
    finally:
        _local.calls = previous


_INSERT = insert(table_of(ApiCall))
_COUNTS = table_of(ApiCallCount)


def record_api_calls(
    connection: Connection | Session, account: str, calls: list[CallRecord]
) -> None:
    """Add the audit rows of `calls` to the transaction (one Core INSERT), and add them to
    the account's counts by outcome (one upsert)."""
    if not calls:
        return
    now = datetime.now(UTC)
    connection.execute(
        _INSERT,
        [
            {
                "account": account,
                "at": now,
                "action": c.action,
                "outcome": c.outcome,
                "duration_ms": round(c.duration_s * 1000),
                "http_status": c.http_status,
                "error_code": storable.code(c.error_code),  # the API's: untrusted
            }
            for c in calls
        ],
    )
    _add_to_counts(connection, account, Counter(c.outcome for c in calls))


def _add_to_counts(connection: Connection | Session, account: str, outcomes: Counter[str]) -> None:
    """The counts' rows are upserted in the order of their outcome: every transaction that
    records calls takes their locks in one order, and does so first, before its work rows."""
    bind = connection.get_bind() if isinstance(connection, Session) else connection
    connection.execute(
        _counts_upsert(bind.dialect.name),
        [
            {"account": account, "outcome": outcome, "calls": count}
            for outcome, count in sorted(outcomes.items())
        ],
    )


@cache
def _counts_upsert(dialect: str) -> Any:
    """One statement per dialect, its rows as parameters: built once, it is compiled once
    (a statement with its rows written in would be built, and compiled, for every call)."""
    upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_COUNTS)
    return upsert.on_conflict_do_update(
        index_elements=[_COUNTS.c.account, _COUNTS.c.outcome],
        set_={"calls": _COUNTS.c.calls + upsert.excluded.calls},
    )


_FAILURE = insert(table_of(Failure))


def record_failure(
    connection: Connection,
    account: str,
    kind: str,
    subject: str,
    code: str | None,
    message: str,
    attempts: int,
    now: datetime,
) -> None:
    """The row that tells operators (`lazada-worker failures`) what failed for good, and why;
    the code and message (often the API's) made storable."""
    connection.execute(
        _FAILURE.values(
            account=account,
            at=now,
            kind=kind,
            subject=storable.text(subject),
            error_code=storable.code(code),
            message=storable.text(message),
            attempts=attempts,
        )
    )
