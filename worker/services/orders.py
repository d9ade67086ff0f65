"""Orders: fetch one from its account's platform (GetOrder on the legacy platform; the order
and its items on the Open Platform, decision L7), then insert or update the stored order;
open orders are refreshed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.accounts.platforms import PlatformFor
from worker.accounts.store import AccountChange, account_change, work_account_id
from worker.broker.dispatch import Message, dispatch_deadline
from worker.db import storable
from worker.db.audit import record_failure
from worker.db.engine import core_transaction
from worker.db.leases import claim_params, claim_statement, holder
from worker.db.models import Order, table_of
from worker.outbox.events import record_order_event
from worker.platforms import ApiError, TransientApiError
from worker.platforms import Order as ApiOrder
from worker.services.attempts import Row, attempt
from worker.services.order_store import store_order
from worker.settings import Settings

log = logging.getLogger(__name__)

FETCH_ORDER_TASK = "lazada.fetch_order"
ORDERS_GROUP = "orders"  # an account's order fetches take their turns as one group


def fetch_message(account: str, order_id: int) -> Message:
    """The task that fetches the account's order."""
    return Message(FETCH_ORDER_TASK, (order_id,), kwargs={"account": account})


def fetch_order(
    sessions: sessionmaker[Session],
    platforms: PlatformFor,
    settings: Settings,
    account: str,
    order_id: int,
    request_id: str | None,
    callback: str | None = None,
    callback_queue: str | None = None,
    slot: float | None = None,
) -> list[Message]:
    """Serve one fetch request. A request seen before (a redelivered message) does nothing,
    nor does one that arrives while another task is fetching the same order. A callback, when
    named, is kept on the order's row: its fetches' events go there. `slot`: the call slot
    reserved for this message when the fetch was deferred to it (worker.ratelimit)."""
    named = {"callback": callback, "callback_queue": callback_queue} if callback else {}
    row_id = _claim(sessions, settings, account, order_id, request_id, named)
    if row_id is None:
        return []
    platform = platforms(account)
    message = fetch_message(account, order_id)
    row = Row(
        _orders,
        row_id,
        account,
        "next_attempt_at",
        message,
        ORDERS_GROUP,
        slot,
        calls=platform.calls_per_order,
        backlog=_BACKLOG,
    )
    attempted = attempt(
        sessions,
        settings,
        row,
        lambda: platform.get_order(order_id),
        succeeded=lambda c, order, now: _store(c, row, request_id, order, now, settings),
        failed=lambda c, error, message, attempts, now: _fail(
            c, row, order_id, request_id, error, message, attempts, now
        ),
        retrying=lambda c, error, attempts, now: _record_retry(c, row, request_id, error, attempts),
    )
    return attempted.messages


def request_fetch(
    sessions: sessionmaker[Session], settings: Settings, account: str, order_ids: list[int]
) -> list[Message]:
    """Mark the account's orders as due and say which fetches to send (the CLI, the refresh)."""
    now = datetime.now(UTC)
    for order_id in order_ids:
        _ensure_row(sessions, settings, account, order_id, now)
    with core_transaction(sessions) as connection:
        work_account_id(connection, settings, account)  # held against a removal till commit
        connection.execute(
            update(_orders)
            .where(_orders.c.account == account, _orders.c.order_id.in_(order_ids))
            .values(
                next_attempt_at=now,
                dispatched_until=dispatch_deadline(now, settings.redispatch_after),
                attempts=0,  # a new fetch: its attempts are counted from here
            )
        )
    return [fetch_message(account, order_id) for order_id in order_ids]


def refresh_open_orders(
    sessions: sessionmaker[Session], settings: Settings, limit: int = 1000
) -> list[Message]:
    """Fetch again the open orders, of every account, last fetched longer ago than the
    refresh interval, only while order sync is off (a sync keeps them current). An order
    whose account was removed since (or whose name another account has now) is not fetched:
    it ends, once, no longer open, its message saying why."""
    if settings.order_sync_every > 0:
        return []
    now = datetime.now(UTC)
    stale = now - timedelta(seconds=settings.order_refresh_after)
    by_account: dict[str, list[int]] = {}
    with core_transaction(sessions) as connection:
        found = connection.execute(
            select(_orders.c.id, _orders.c.account, _orders.c.account_id, _orders.c.order_id)
            .where(
                _orders.c.is_open.is_(True),
                _orders.c.fetched_at < stale,
                _orders.c.next_attempt_at.is_(None),
            )
            .order_by(_orders.c.fetched_at)
            .limit(limit)
        ).all()
        changes: dict[tuple[str, int | None], AccountChange | None] = {}
        for row in found:
            owner = (row.account, row.account_id)
            if owner not in changes:
                changes[owner] = account_change(connection, settings, *owner)
            changed = changes[owner]
            if changed is None:
                by_account.setdefault(row.account, []).append(row.order_id)
            else:
                _end(connection, row.id, row.account, row.order_id, None, changed, now)
    return [
        message
        for account, order_ids in by_account.items()
        for message in request_fetch(sessions, settings, account, order_ids)
    ]


def end_for_removed_account(
    sessions: sessionmaker[Session],
    settings: Settings,
    account: str,
    order_id: int,
    request_id: str | None,
) -> bool:
    """A fetch of an order stored for an account no longer known by its name: its row, when
    a fetch of it is due, ends once saying so (True). False when no fetch of it is due: the
    name is simply unknown."""
    with core_transaction(sessions) as connection:
        found = connection.execute(_FIND, {"account": account, "order_id": order_id}).one_or_none()
        if found is None:
            return False
        changed = account_change(connection, settings, account, found.account_id)
        if changed is None:
            return False
        due = connection.execute(
            select(_orders.c.next_attempt_at).where(_orders.c.id == found.id)
        ).scalar()
        if due is None:
            return False
        _end(connection, found.id, account, order_id, request_id, changed, datetime.now(UTC))
        return True


def _end(
    connection: Connection,
    row_id: int,
    account: str,
    order_id: int,
    request_id: str | None,
    changed: AccountChange,
    now: datetime,
) -> None:
    """An order whose account is gone: not fetched (nor refreshed) again, its data kept; one
    failure row and one `order.failed` event say why."""
    values: dict[str, Any] = {"last_request_id": request_id} if request_id is not None else {}
    connection.execute(
        update(_orders)
        .where(_orders.c.id == row_id)
        .values(
            state=case((_orders.c.state == "fetched", "fetched"), else_="failed"),
            is_open=False,
            error_code=changed.code,
            message=changed.message,
            next_attempt_at=None,
            lease_until=None,
            dispatched_until=None,
            **values,
        )
    )
    record_failure(
        connection, account, "order", str(order_id), changed.code, changed.message, 1, now
    )
    log.warning(
        "order %s not fetched: %s",
        order_id,
        changed.message,
        extra={
            "account": account,
            "order_id": order_id,
            "outcome": "failed",
            "error_code": changed.code,
        },
    )
    record_order_event(connection, row_id, fetched=False)


# The fetch's statements, built once (see worker.db.leases.claim_statement). An UPDATE without
# .values() sets the columns named in the parameters it is executed with.
_orders = table_of(Order)
_FIND = select(_orders.c.id, _orders.c.last_request_id, _orders.c.account_id).where(
    _orders.c.account == bindparam("account"), _orders.c.order_id == bindparam("order_id")
)
_INSERT = insert(_orders).returning(_orders.c.id)
# The account's orders waiting for a fetch: how widely fetches refused a turn spread out.
_BACKLOG = (
    select(func.count())
    .select_from(_orders)
    .where(_orders.c.account == bindparam("account"), _orders.c.next_attempt_at <= bindparam("now"))
)
# `attempts` counts the attempts of the current fetch: a claim of a row with nothing due
# starts a new fetch (a message sent straight to the task), a stored result counts its call.
_CLAIM = claim_statement(Order).values(
    attempts=case((_orders.c.next_attempt_at.is_(None), 0), else_=_orders.c.attempts)
)
_UPDATE = update(_orders).where(_orders.c.id == bindparam("row"))


def _claim(
    sessions: sessionmaker[Session],
    settings: Settings,
    account: str,
    order_id: int,
    request_id: str | None,
    named: dict[str, Any],
) -> int | None:
    """Insert the order's row already claimed, or claim the existing one, in one transaction;
    None when the request was served before or another task holds the order."""
    now = datetime.now(UTC)
    lease_until = now + timedelta(seconds=settings.lease_seconds)
    for _ in range(2):  # a second round if another task inserted the row at the same moment
        try:
            with core_transaction(sessions) as connection:
                found = connection.execute(
                    _FIND, {"account": account, "order_id": order_id}
                ).one_or_none()
                if found is None:
                    new_row = {
                        "account": account,
                        "account_id": work_account_id(connection, settings, account),
                        "order_id": order_id,
                        "next_attempt_at": now,
                        "lease_until": lease_until,
                        "lease_holder": holder(),
                        **named,
                    }
                    return int(connection.execute(_INSERT, new_row).scalar_one())
                row_id, last_request_id, account_id = found
                if request_id is not None and last_request_id == request_id:
                    return None
                changed = account_change(connection, settings, account, account_id)
                if changed is not None:  # stored for an earlier account of this name
                    _end(connection, row_id, account, order_id, request_id, changed, now)
                    return None
                params = {**claim_params(row_id, now, settings.lease_seconds), **named}
                return row_id if connection.execute(_CLAIM, params).rowcount == 1 else None
        except IntegrityError:
            continue
    return None


def _ensure_row(
    sessions: sessionmaker[Session], settings: Settings, account: str, order_id: int, now: datetime
) -> None:
    params = {"account": account, "order_id": order_id}
    with core_transaction(sessions) as connection:
        if connection.execute(_FIND, params).first() is not None:
            return
    try:
        with core_transaction(sessions) as connection:
            account_id = work_account_id(connection, settings, account)
            connection.execute(
                _INSERT, {**params, "account_id": account_id, "next_attempt_at": now}
            )
    except IntegrityError:  # recorded by another task at the same moment
        pass


def _store(
    connection: Connection,
    row: Row,
    request_id: str | None,
    order: ApiOrder,
    now: datetime,
    settings: Settings,
) -> list[Message]:
    # Recorded only now: a request whose worker died mid-call is served again on redelivery.
    # The call that fetched it counts; nothing is due any more. A newer version stored
    # meanwhile (by a sync) is kept (worker.services.order_store).
    done = {
        "last_request_id": request_id,
        "attempts": _orders.c.attempts + 1,
        "next_attempt_at": None,
        "lease_until": None,
        "dispatched_until": None,
    }
    store_order(
        connection, row.account, order, now, settings.order_callback, row_id=row.id, extra=done
    )
    record_order_event(connection, row.id, fetched=True)
    return []


def _record_retry(
    connection: Connection,
    row: Row,
    request_id: str | None,
    error: TransientApiError,
    attempts: int,
) -> None:
    values = {
        "last_request_id": request_id,
        "error_code": storable.code(error.code),
        "message": storable.text(str(error)),
    }
    connection.execute(_UPDATE, {"row": row.id, **values})
    log.info("order %s: %s; retry %s", row.message.args[0], error, attempts)


def _fail(
    connection: Connection,
    row: Row,
    order_id: int,
    request_id: str | None,
    error: ApiError,
    message: str,
    attempts: int,
    now: datetime,
) -> None:
    # An order fetched before keeps its data and state; the error says why it is not current.
    connection.execute(
        update(_orders)
        .where(_orders.c.id == row.id)
        .values(
            state=case((_orders.c.state == "fetched", "fetched"), else_="failed"),
            last_request_id=request_id,
            error_code=storable.code(error.code),
            message=storable.text(message),
            next_attempt_at=None,
            lease_until=None,
            dispatched_until=None,
        )
    )
    record_failure(
        connection, row.account, "order", str(order_id), error.code, message, attempts, now
    )
    log.warning(
        "order %s failed: %s %s",
        order_id,
        error.code or "?",
        message,
        extra={
            "account": row.account,
            "order_id": order_id,
            "outcome": "failed",
            "error_code": error.code,
        },
    )
    record_order_event(connection, row.id, fetched=False)
