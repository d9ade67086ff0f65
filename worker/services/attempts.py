"""One API attempt for one work row, written once for every service: the audit rows, the
deferral when the rate limit has no slot, the retry ladder for transient errors, and the
final failure for permanent ones (recorded once, in the transaction of the row's final state).

A service says only what its call is and what each outcome writes on its rows.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Generic, NamedTuple, TypeVar

from sqlalchemy import Connection, Select, Table, update
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from worker.accounts.store import mark_needs_authorization
from worker.broker.dispatch import Message, countdown_deadline, retry_delay
from worker.db.audit import collect_calls, record_api_calls
from worker.db.engine import core_transaction
from worker.db.leases import held
from worker.db.storable import text as storable_text
from worker.platforms import (
    AccountParked,
    ApiError,
    AuthorizationLostError,
    CallRecord,
    PermanentApiError,
    TransientApiError,
)
from worker.ratelimit import LateForSlot, RateLimited, TurnsTaken, turn
from worker.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# How often parked work (its account needs authorization) looks again: it resumes by itself
# within this long of `lazada-worker accounts authorize`.
PARK_SECONDS = 15.0


# A chained row deferred to a reserved slot is due this long after it for the rest of its
# group; its own message, which carries the slot, takes it at the slot.
SLOT_HOLD = 2.0


@dataclass(frozen=True)
class Row:
    """The work row an attempt is for: its table, id, account, the column that says when it is
    due, and the message that comes back to it (sent with a countdown when it is due again).

    `group` is whose turn its calls take (worker.ratelimit); `slot` the call slot reserved for
    it when it was deferred (its message carries it). When its group's turns are taken:
    `chained`, others of its group go on with it (a removal job's runners take its next
    batch); else it comes back once its group's first slot has passed, at a random moment
    over as many slots as `backlog` (a count of its group's due rows, run with `account` and
    `now`) says are waiting, so that a crowd refused together comes back about as fast as
    slots come, not all at once. A chained row late for its slot is left to the others of its
    group when `under_way` (a count of its group's rows held by running tasks that go on with
    it, run with `id` and `now`) finds any; else it takes a new slot.
    """

    table: Table
    id: int
    account: str
    due_column: str
    message: Message
    group: str
    slot: float | None = None
    calls: int = 1  # the API calls of its attempt, reserved together
    chained: bool = False
    sleeps: bool = False  # its work goes on at once: near its slot it sleeps for it
    backlog: Select[tuple[int]] | Select[int] | None = None
    under_way: Select[tuple[int]] | Select[int] | None = None
    # Keeps the row leased to this process, which comes back to it at the slot reserved for
    # it (`delay` s from now, `slot`) without a write: a deferral the process keeps
    # (worker.broker.deferrals). False when it cannot: the row is then rescheduled.
    hold: Callable[[float, float], bool] | None = None

    def reschedule(
        self,
        connection: Connection,
        settings: Settings,
        now: datetime,
        delay: float,
        slot: float | None = None,
    ) -> Message:
        """Due again in `delay` s, lease released; returns the message with that countdown
        (and the slot reserved for it, if one was)."""
        due = now + timedelta(seconds=delay)
        if slot is not None and self.chained:
            due += timedelta(seconds=SLOT_HOLD)
        connection.execute(
            update(self.table)
            .where(self.table.c.id == self.id)
            .values(
                {
                    self.due_column: due,
                    "lease_until": None,
                    "dispatched_until": countdown_deadline(due, settings.redispatch_after),
                }
            )
        )
        return replace(self.message, countdown=delay, slot=slot)

    def waiting(self, connection: Connection, now: datetime) -> int:
        """How many rows of its group are due (itself at least)."""
        if self.backlog is None:
            return 1
        count = connection.execute(self.backlog, {"account": self.account, "now": now})
        return max(1, int(count.scalar_one()))

    def release(self, connection: Connection, due: datetime | None = None) -> None:
        """Lease released, due as it was (or at `due`): for the rest of its group to take."""
        table = self.table
        values: dict[str, datetime | None] = {"lease_until": None}
        if due is not None:
            values[self.due_column] = due
        connection.execute(update(table).where(table.c.id == self.id).values(values))

    def has_company(self, connection: Connection, now: datetime) -> bool:
        """Whether others of its group are held by running tasks (which go on with it)."""
        if self.under_way is None:
            return False
        count = connection.execute(self.under_way, {"id": self.id, "now": now})
        return int(count.scalar_one()) > 0


class Attempted(NamedTuple, Generic[R]):
    """What an attempt led to: the success handler's value, or the messages of the other
    outcomes; `deferred` when nothing was sent because the rate limit had no slot."""

    value: R | None
    messages: list[Message]
    deferred: bool = False
    spare: float = 0.0  # the call's slot came at once (worker.ratelimit.Turn.spare)


class UnstorableAnswer(PermanentApiError):
    """The call's outcome could not be recorded: the database refused what the answer held
    (a value no column takes, an id already recorded for other work). The work fails for it,
    once: the call is not made again."""


# What a transaction recording an outcome raises when the database refuses a value (SQLAlchemy
# wraps the driver's error, or an encoding error, in a StatementError), or when a value cannot
# be converted for a column at all. A database that cannot be reached (OperationalError,
# InterfaceError) is not among them: the task is retried, and the row is sent again after its
# lease.
_REFUSED = (StatementError, UnicodeError, ValueError, TypeError)
_UNREACHABLE = (OperationalError, InterfaceError)

# Handlers: what each outcome writes, in the transaction that also holds the audit rows.
Succeeded = Callable[[Connection, T, datetime], R]
# (error, the message to record, the row's attempts with this one)
Failed = Callable[[Connection, ApiError, str, int, datetime], None]
# (error, attempts so far); returns False when the row needs no retry (its work was ended
# meanwhile, e.g. its job cancelled), None or True to be retried
Retrying = Callable[[Connection, TransientApiError, int, datetime], bool | None]
Transient = Callable[[Connection, TransientApiError, datetime], list[Message]]


def attempt(
    sessions: sessionmaker[Session],
    settings: Settings,
    row: Row,
    call: Callable[[], T],
    *,
    succeeded: Succeeded[T, R],
    failed: Failed,
    retrying: Retrying | None = None,
    transient: Transient | None = None,
) -> Attempted[R]:
    """Make `call` once and record its outcome.

    - success: `succeeded` records it and its value is returned;
    - no rate-limit slot soon (nothing sent): the row is due again at the slot reserved for
      it (or kept leased for it, with no write, when `row.hold` takes it), or, when its
      group's turns are taken, later, or for its group to take (`chained`;
      also when it came back late for its slot and others of its group are under way); not an
      attempt, and no thread waits;
    - a transient error: the row's `attempts` grows, `retrying` records the error, and the row
      is due again after the next step of the retry ladder; past the ladder it fails with the
      last error. A service with its own policy (image polls: "not yet") passes `transient`.
    - a permanent error: `failed` records the final state once;
    - the account's authorization is lost: the account is marked (once) and the row parked,
      due again in PARK_SECONDS, not an attempt: nothing fails, nothing is lost.

    When the database refuses the transaction that records the outcome (the answer held a
    value it cannot store), `failed` records an UnstorableAnswer in a new one: the row ends
    failed at once instead of staying leased, to be sent again, and refused again, for ever.
    """
    error: ApiError | None = None
    with collect_calls() as calls, held(row.table, row.id):  # the lease renewed meanwhile
        try:
            with turn(row.group, row.slot, row.calls, row.chained, row.sleeps) as current:
                result = call()
        except RateLimited as exc:
            if (
                exc.slot is not None
                and not calls  # calls made (a token's refresh) are recorded below
                and row.hold is not None
                and row.hold(exc.come_back, exc.slot)
            ):
                return Attempted(None, [], deferred=True)
            with core_transaction(sessions) as connection:
                record_api_calls(connection, row.account, calls)
                now = datetime.now(UTC)
                delay = exc.come_back
                if isinstance(exc, LateForSlot) and row.has_company(connection, now):
                    row.release(connection, due=now)
                    return Attempted(None, [], deferred=True)
                if isinstance(exc, TurnsTaken):
                    if row.chained:
                        row.release(connection)
                        return Attempted(None, [], deferred=True)
                    delay += random.uniform(0, row.waiting(connection, now) * exc.interval)
                message = row.reschedule(connection, settings, now, delay, exc.slot)
            return Attempted(None, [message], deferred=True)
        except AuthorizationLostError as exc:
            now = datetime.now(UTC)
            with core_transaction(sessions) as connection:
                record_api_calls(connection, row.account, calls)
                # Only a loss the API just reported marks the account: a parked account's own
                # refusal, read before an `authorize`, must not mark it again after it.
                if not isinstance(exc, AccountParked):
                    mark_needs_authorization(connection, row.account, str(exc), now)
                message = row.reschedule(connection, settings, now, PARK_SECONDS)
            return Attempted(None, [message], deferred=True)
        except (TransientApiError, PermanentApiError) as exc:
            error = exc
    now = datetime.now(UTC)
    try:
        with core_transaction(sessions) as connection:
            record_api_calls(connection, row.account, calls)
            if error is None:
                return Attempted(succeeded(connection, result, now), [], spare=current.spare)
            if isinstance(error, PermanentApiError):
                failed(connection, error, error.message, _count_attempt(connection, row), now)
                return Attempted(None, [])
            assert isinstance(error, TransientApiError)
            if transient is not None:
                return Attempted(None, transient(connection, error, now))
            messages = _retry(connection, settings, row, error, now, failed, retrying)
            return Attempted(None, messages)
    except _REFUSED as exc:
        if isinstance(exc, _UNREACHABLE):
            raise
        action = calls[-1].action if calls else "the call"
        _unstorable(sessions, row, calls, failed, UnstorableAnswer(_refusal(exc), action=action))
        return Attempted(None, [])


def _unstorable(
    sessions: sessionmaker[Session],
    row: Row,
    calls: list[CallRecord],
    failed: Failed,
    error: UnstorableAnswer,
) -> None:
    """The row's work failed because its outcome could not be stored (see `attempt`)."""
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        record_api_calls(connection, row.account, calls)
        failed(connection, error, error.message, _count_attempt(connection, row), now)
    log.error(
        "%s %s: %s",
        row.table.name,
        row.id,
        error.message,
        extra={"account": row.account, "outcome": "failed"},
    )


def _refusal(exc: Exception) -> str:
    """What the database refused, in one line (the driver's own error, without the statement
    and its parameters)."""
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines() or [""]
    detail = storable_text(f"{type(cause).__name__}: {lines[0]}")[:300]
    return f"the answer could not be stored: {detail}"


def _retry(
    connection: Connection,
    settings: Settings,
    row: Row,
    error: TransientApiError,
    now: datetime,
    failed: Failed,
    retrying: Retrying | None,
) -> list[Message]:
    attempts = _count_attempt(connection, row)
    if attempts > len(settings.retry_ladder):
        message = f"gave up after repeated transient errors; last: {error}"
        failed(connection, error, message, attempts, now)
        return []
    if retrying is not None and retrying(connection, error, attempts, now) is False:
        return []
    delay = retry_delay(settings.retry_ladder, attempts)
    return [row.reschedule(connection, settings, now, delay)]


def _count_attempt(connection: Connection, row: Row) -> int:
    """One more call of the row's that failed; returns how many there have been."""
    table = row.table
    return int(
        connection.execute(
            update(table)
            .where(table.c.id == row.id)
            .values(attempts=table.c.attempts + 1)
            .returning(table.c.attempts)
        ).scalar_one()
    )
