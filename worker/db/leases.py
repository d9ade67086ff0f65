"""Claiming work rows: a conditional UPDATE that takes a lease, so two workers never do the same
row and a duplicate delivery finds nothing to do.

A lease names its holder, the worker process that took it (`holder()`), so that a row held by a
process that died is taken again as soon as its heartbeat stops (worker.db.heartbeats), not when
the lease ends. While a row's API attempt runs (`held`), the holder's heartbeat renews its
lease: a live worker's attempt, however many calls it makes (a call, a token refresh, the call
again), never outlasts its lease.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, Update, bindparam, or_, update

from worker.db.models import Base, table_of

_identity: tuple[int, str] | None = None
_lock = threading.Lock()
# The rows of this process's attempts under way, by table: their leases are renewed.
_held: dict[Table, Counter[int]] = {}


def holder() -> str:
    """This process's name on the leases it takes: host, pid and a random part (pids are
    reused), made anew in a forked child."""
    global _identity
    pid = os.getpid()
    identity = _identity
    if identity is None or identity[0] != pid:
        with _lock:
            if _identity is None or _identity[0] != pid:
                host = socket.gethostname()[:200]
                _identity = (pid, f"{host}:{pid}:{secrets.token_hex(4)}")
            identity = _identity
    return identity[1]


def claim_statement(model: type[Base], *conditions: ColumnElement[bool]) -> Update:
    """The UPDATE that leases one row of `model` if it is free and meets `conditions`.

    Built once per caller (a module constant): it runs on every task, and building SQLAlchemy
    expressions costs more CPU than running them. Execute it with `claim_params`; conditions
    may use ``bindparam("now")``. Add ``.returning(...)`` to read the row in the same trip.
    """
    table = table_of(model)
    return (
        update(table)
        .where(
            table.c.id == bindparam("row"),
            or_(table.c.lease_until.is_(None), table.c.lease_until < bindparam("now")),
            *conditions,
        )
        .values(lease_until=bindparam("until"), lease_holder=bindparam("holder"))
    )


def claim_params(row_id: int, now: datetime, lease_seconds: float) -> dict[str, Any]:
    """The parameters of a `claim_statement`: row `row_id`, leased for `lease_seconds` from now
    by this process."""
    return {
        "row": row_id,
        "now": now,
        "until": now + timedelta(seconds=lease_seconds),
        "holder": holder(),
    }


@contextmanager
def held(table: Table, row_id: int) -> Iterator[None]:
    """While the block runs (an API attempt on the row, which this process leased), the
    process's heartbeat renews the row's lease."""
    hold(table, row_id)
    try:
        yield
    finally:
        let_go(table, row_id)


def hold(table: Table, row_id: int) -> None:
    """From now on the process's heartbeat renews the lease this process took on the row
    (until `let_go`): work it keeps leased while it waits (a deferral kept in the process)."""
    with _lock:
        _held.setdefault(table, Counter())[row_id] += 1


def let_go(table: Table, row_id: int) -> None:
    """Undo one `hold` of the row."""
    with _lock:
        rows = _held.get(table)
        if rows is None or rows[row_id] <= 0:
            return
        rows[row_id] -= 1
        if rows[row_id] <= 0:
            del rows[row_id]


def renew_held(connection: Connection, now: datetime, lease_seconds: float) -> int:
    """Extend to `lease_seconds` from now the leases this process holds on rows whose attempt
    is under way; returns how many. A lease released meanwhile (NULL) or taken by another
    process stays as it is. Rows in id order: two transactions locking rows of one table in
    the same order cannot deadlock on them."""
    with _lock:
        snapshot = {table: sorted(rows) for table, rows in _held.items() if rows}
    renewed = 0
    until = now + timedelta(seconds=lease_seconds)
    for table, ids in snapshot.items():
        renewed += connection.execute(
            update(table)
            .where(
                table.c.id.in_(ids),
                table.c.lease_holder == holder(),
                table.c.lease_until.is_not(None),
                table.c.lease_until < until,
            )
            .values(lease_until=until)
        ).rowcount
    return renewed
