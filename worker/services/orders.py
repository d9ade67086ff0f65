"""Orders: GetOrder, then insert or update the stored order; open orders are refreshed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.audit import collect_calls, record_api_calls
from worker.db.engine import core_transaction
from worker.db.leases import claim_params, claim_statement, defer
from worker.db.models import Failure, Order, table_of
from worker.dispatch import Message, dispatch_deadline, retry_delay
from worker.ratelimit import RateLimited
from worker.sellercenter import CallRecord, PermanentError, SellerCenterClient, TransientError
from worker.sellercenter import Order as ApiOrder
from worker.settings import Settings

log = logging.getLogger(__name__)

FETCH_ORDER_TASK = "lazada.fetch_order"
# Item statuses after which an order no longer changes by itself; anything else is refreshed.
FINAL_STATUSES = frozenset({"delivered", "canceled", "returned", "failed", "return_rejected"})


def fetch_order(
    sessions: sessionmaker[Session],
    client: SellerCenterClient,
    settings: Settings,
    order_id: int,
    request_id: str | None,
) -> list[Message]:
    """Serve one fetch request. A request seen before (a redelivered message) does nothing,
    nor does one that arrives while another task is fetching the same order."""
    row_id = _claim(sessions, settings, order_id, request_id)
    if row_id is None:
        return []
    with collect_calls() as calls:
        try:
            order = client.get_order(order_id)
        except RateLimited as exc:  # nothing was sent: not an attempt
            return [_defer(sessions, settings, row_id, order_id, exc.wait)]
        except TransientError as exc:
            return _record_transient(sessions, settings, row_id, request_id, exc, calls)
        except PermanentError as exc:
            _record_failure(sessions, settings, row_id, request_id, exc, calls)
            return []
    with core_transaction(sessions) as connection:
        record_api_calls(connection, settings.account, calls)
        values = _stored_values(order, datetime.now(UTC))
        # Recorded only now: a request whose worker died mid-call is served again on redelivery.
        values["last_request_id"] = request_id
        connection.execute(_UPDATE, {"row": row_id, **values})
    return []


def _defer(
    sessions: sessionmaker[Session], settings: Settings, row_id: int, order_id: int, wait: float
) -> Message:
    with sessions.begin() as session:
        defer(session, Order, row_id, Order.next_attempt_at, wait, settings.redispatch_after)
    return Message(FETCH_ORDER_TASK, (order_id,), countdown=wait)


def request_fetch(
    sessions: sessionmaker[Session], settings: Settings, order_ids: list[int]
) -> list[Message]:
    """Mark orders as due and say which fetches to send (for the CLI and the refresh)."""
    now = datetime.now(UTC)
    for order_id in order_ids:
        _ensure_row(sessions, settings, order_id, now)
    with sessions.begin() as session:
        session.execute(
            update(Order)
            .where(Order.account == settings.account, Order.order_id.in_(order_ids))
            .values(
                next_attempt_at=now,
                dispatched_until=dispatch_deadline(now, settings.redispatch_after),
            )
        )
    return [Message(FETCH_ORDER_TASK, (order_id,)) for order_id in order_ids]


def refresh_open_orders(
    sessions: sessionmaker[Session], settings: Settings, limit: int = 1000
) -> list[Message]:
    """Fetch again the open orders last fetched longer ago than the refresh interval."""
    now = datetime.now(UTC)
    stale = now - timedelta(seconds=settings.order_refresh_after)
    with sessions.begin() as session:
        order_ids = list(
            session.scalars(
                select(Order.order_id)
                .where(
                    Order.account == settings.account,
                    Order.is_open.is_(True),
                    Order.fetched_at < stale,
                    Order.next_attempt_at.is_(None),
                )
                .order_by(Order.fetched_at)
                .limit(limit)
            )
        )
    return request_fetch(sessions, settings, order_ids) if order_ids else []


# The fetch's statements, built once (see worker.db.leases.claim_statement). An UPDATE without
# .values() sets the columns named in the parameters it is executed with.
_orders = table_of(Order)
_FIND = select(_orders.c.id, _orders.c.last_request_id).where(
    _orders.c.account == bindparam("account"), _orders.c.order_id == bindparam("order_id")
)
_INSERT = insert(_orders).returning(_orders.c.id)
_CLAIM = claim_statement(Order)
_UPDATE = update(_orders).where(_orders.c.id == bindparam("row"))


def _claim(
    sessions: sessionmaker[Session], settings: Settings, order_id: int, request_id: str | None
) -> int | None:
    """Insert the order's row already claimed, or claim the existing one, in one transaction;
    None when the request was served before or another task holds the order."""
    now = datetime.now(UTC)
    lease_until = now + timedelta(seconds=settings.lease_seconds)
    for _ in range(2):  # a second round if another task inserted the row at the same moment
        try:
            with core_transaction(sessions) as connection:
                found = connection.execute(
                    _FIND, {"account": settings.account, "order_id": order_id}
                ).one_or_none()
                if found is None:
                    new_row = {
                        "account": settings.account,
                        "order_id": order_id,
                        "next_attempt_at": now,
                        "lease_until": lease_until,
                    }
                    return int(connection.execute(_INSERT, new_row).scalar_one())
                row_id, last_request_id = found
                if request_id is not None and last_request_id == request_id:
                    return None
                params = claim_params(row_id, now, settings.lease_seconds)
                return row_id if connection.execute(_CLAIM, params).rowcount == 1 else None
        except IntegrityError:
            continue
    return None


def _ensure_row(
    sessions: sessionmaker[Session], settings: Settings, order_id: int, now: datetime
) -> int:
    query = select(Order.id).where(Order.account == settings.account, Order.order_id == order_id)
    with sessions.begin() as session:
        row_id = session.scalar(query)
        if row_id is not None:
            return row_id
    try:
        with sessions.begin() as session:
            row = Order(account=settings.account, order_id=order_id, next_attempt_at=now)
            session.add(row)
            session.flush()
            return row.id
    except IntegrityError:  # recorded by another task at the same moment
        with sessions.begin() as session:
            return session.scalars(query).one()


def _stored_values(order: ApiOrder, now: datetime) -> dict[str, Any]:
    """The columns a fetched order sets: its data, and nothing due any more."""
    return {
        "state": "fetched",
        "order_number": order.order_number,
        "customer_first_name": order.customer_first_name,
        "customer_last_name": order.customer_last_name,
        "payment_method": order.payment_method,
        "price": str(order.price),
        "gift_option": order.gift_option,
        "items_count": order.items_count,
        "statuses": list(order.statuses),
        "is_open": not set(order.statuses) <= FINAL_STATUSES,
        "order_created_at": order.created_at,
        "order_updated_at": order.updated_at,
        "address_billing": dict(order.address_billing),
        "address_shipping": dict(order.address_shipping),
        "extra_attributes": dict(order.extra_attributes),
        "raw": dict(order.raw),
        "error_code": None,
        "message": None,
        "attempts": 0,
        "fetched_at": now,
        "next_attempt_at": None,
        "lease_until": None,
        "dispatched_until": None,
    }


def _record_transient(
    sessions: sessionmaker[Session],
    settings: Settings,
    row_id: int,
    request_id: str | None,
    exc: TransientError,
    calls: list[CallRecord],
) -> list[Message]:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        record_api_calls(session, settings.account, calls)
        row = session.get_one(Order, row_id)
        row.last_request_id = request_id
        row.attempts += 1
        if row.attempts > len(settings.retry_ladder):
            message = f"gave up after repeated transient errors; last: {exc}"
            _fail(session, row, exc.code, message, now)
            return []
        delay = retry_delay(settings.retry_ladder, row.attempts)
        row.error_code = exc.code
        row.message = str(exc)
        row.next_attempt_at = now + timedelta(seconds=delay)
        row.dispatched_until = dispatch_deadline(row.next_attempt_at, settings.redispatch_after)
        row.lease_until = None
        log.info("order %s: %s; retry %s in %.1fs", row.order_id, exc, row.attempts, delay)
        return [Message(FETCH_ORDER_TASK, (row.order_id,), countdown=delay)]


def _record_failure(
    sessions: sessionmaker[Session],
    settings: Settings,
    row_id: int,
    request_id: str | None,
    exc: PermanentError,
    calls: list[CallRecord],
) -> None:
    with sessions.begin() as session:
        record_api_calls(session, settings.account, calls)
        row = session.get_one(Order, row_id)
        row.last_request_id = request_id
        row.attempts += 1
        _fail(session, row, exc.code, exc.message, datetime.now(UTC))


def _fail(session: Session, row: Order, code: int | None, message: str, now: datetime) -> None:
    log.warning(
        "order %s failed: E%s %s",
        row.order_id,
        code if code is not None else "?",
        message,
        extra={
            "account": row.account,
            "order_id": row.order_id,
            "outcome": "failed",
            "error_code": code,
        },
    )
    # An order fetched before keeps its data and state; the error says why it is not current.
    if row.state != "fetched":
        row.state = "failed"
    row.error_code = code
    row.message = message
    row.next_attempt_at = None
    row.lease_until = None
    row.dispatched_until = None
    session.add(
        Failure(
            account=row.account,
            at=now,
            kind="order",
            subject=str(row.order_id),
            error_code=code,
            message=message,
            attempts=row.attempts,
        )
    )
