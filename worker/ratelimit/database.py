"""The slot store in the results database, for deployments whose broker is not Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from worker.db.engine import get_engine
from worker.db.models import RateLimit
from worker.ratelimit.calendar import Grant, move_slot, place


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

    def move(
        self,
        account: str,
        group: str,
        late: float,
        interval: float,
        per_second: int,
        spacing: float = 0.0,
    ) -> bool:
        with self.engine.begin() as conn:
            _, _, turns, now = self._state(conn, account)
            moved, turns = move_slot(
                turns, group, now.timestamp(), late, interval, per_second, spacing
            )
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
