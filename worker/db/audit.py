"""The audit: what each HTTP attempt did (collected per thread, stored as rows), and what
failed for good."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from worker.db import storable
from worker.db.models import ApiCall, Failure, table_of
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


def record_api_calls(
    connection: Connection | Session, account: str, calls: list[CallRecord]
) -> None:
    """Add the audit rows of `calls` to the transaction (one Core INSERT)."""
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
