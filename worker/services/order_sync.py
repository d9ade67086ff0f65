"""Order sync: every order of an account that changed since its sync point, stored without a
request by id (contract "Order sync"; decisions L11-L14, D9).

An account has one row in `order_syncs`. A request (`lazada.sync_orders`: beat, the CLI, the
shop) starts a run when none is under way, else asks for one more after it (`follow`). A run
lists from the sync point less L12's overlap up to the moment it started, a page at a time
(`lazada.sync_orders_step`): each step claims the row (its lease keeps two steps of an account
from running at once, on any number of workers), makes one call through the account's rate
limit and turns (worker.services.attempts), and writes what it read with the new position in
one transaction; a task goes on to the next step for some seconds (calling the next page
while it stores one), then sends it as a message. A crash re-reads at most the page it was on.

The position (L11): the listing is read by `updated_at` ascending; every page re-anchors on the
last second read (offset 0) and skips the ids already read at that second. A page that is all
one second (more orders in it than a page) is read inside that second with offsets, and read
again from offset 0 until a pass through it finds no new id: orders that leave the second while
it is paged (they changed again) shift the offsets, and no order of it may be missed. A second
with more orders than the API's offsets reach is then read once under each of the platform's
status values (`Platform.order_statuses`), each in passes from offset 0 as the whole second
was, the ids already read at that second still skipped (an order under several statuses is
stored once); the status being read is part of the position. Only a status with more orders
in that one second than the offsets reach leaves some unread: a failure row says so. A short
page ends the listing. On `lazop` the orders of a page wait in the row for their items (L13: at
most 50 ids a call, matched by `order_id`; an id the API does not know halves the calls until
it is alone, then it is fetched by id instead). The sync point moves only to a time up to which
every order is stored (L14).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError, StatementError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import ColumnElement, Executable

from worker.accounts.platforms import PlatformFor
from worker.accounts.store import UnknownAccount, environment_account, work_account_id
from worker.broker.dispatch import Message, dispatch_deadline
from worker.db.audit import collect_calls, record_api_calls, record_call, record_failure
from worker.db.engine import core_transaction
from worker.db.heartbeats import stopping
from worker.db.leases import holder
from worker.db.models import Account as AccountRow
from worker.db.models import OrderSync, table_of
from worker.outbox.events import take_recorded
from worker.platforms import (
    ApiError,
    CallRecord,
    ListedOrder,
    OrderPage,
    Platform,
    TransientApiError,
    UnknownInBatch,
    UnusableOrder,
)
from worker.platforms import Order as ApiOrder
from worker.ratelimit import turn
from worker.services import orders
from worker.services.attempts import Row, attempt
from worker.services.order_store import store_order, store_orders
from worker.settings import Settings

log = logging.getLogger(__name__)

SYNC_TASK = "lazada.sync_orders"
STEP_TASK = "lazada.sync_orders_step"
SYNC_GROUP = "order-sync"  # an account's sync calls take their turns as one group
OVERLAP = timedelta(minutes=10)  # L12: orders become visible in the listing this late
MAX_OFFSET = 4500  # L11: the API's offset cap
ONE_SECOND = timedelta(seconds=1)
# How long one task goes on reading pages before it leaves the rest to its next message, so
# that queued work takes turns for the worker's threads: as long as a removal job's runner
# (removal.RUNNER_SECONDS). Each hand-over costs the sync a page's time (the next page cannot
# be called ahead across it), so it is not shorter.
STEP_SECONDS = 20.0
# How long a step waits for its next page's call to go out before it stores a page (a call
# sleeps for its slot at most CHAINED_SLOT_WAIT).
CALL_GOING_OUT = 1.0

_syncs = table_of(OrderSync)
_accounts = table_of(AccountRow)


def step_message(account: str) -> Message:
    return Message(STEP_TASK, (), kwargs={"account": account})


# -- requests ------------------------------------------------------------------------------


def request_sync(
    sessions: sessionmaker[Session], settings: Settings, account: str
) -> list[Message]:
    """Start a run of the account's sync, or, while one is under way, ask for one more run
    after it (never two at once, never more than one waiting)."""
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        connection.execute(
            _new_sync_row(connection.dialect.name), {"row_account": account, "now": now}
        )
        if _start_run(connection, settings, account, now):
            return [step_message(account)]
        connection.execute(
            update(_syncs)
            .where(_syncs.c.account == account, _syncs.c.run_until.is_not(None))
            .values(follow=True)
        )
    return []


def due_syncs(sessions: sessionmaker[Session], settings: Settings) -> list[Message]:
    """Beat: a sync of every account that can call its API and whose last run started
    `order_sync_every` seconds ago or more (none when syncs are off).

    Beat asks every few seconds: the due accounts' runs are started in one transaction of a
    few statements, whatever the number of accounts and of due ones (rows for the accounts
    never synced made in one, the due rows read and locked in one, their runs started in one
    batch of updates), and no secret is read. The environment's account, which has no stored
    row to join, is asked as a request is."""
    every = settings.order_sync_every
    if every <= 0:
        return []
    now = datetime.now(UTC)
    synced_before = now - timedelta(seconds=every)
    environment = environment_account(settings)
    messages: list[Message] = []
    if environment is not None:
        with core_transaction(sessions) as connection:
            own = connection.execute(
                select(_syncs.c.id).where(
                    _syncs.c.account == environment.name, ~_due(synced_before)
                )
            ).first()
        if own is None:
            messages += request_sync(sessions, settings, environment.name)
    with core_transaction(sessions) as connection:
        connection.execute(_new_sync_rows(connection.dialect.name), {"now": now})
        due = connection.execute(
            select(_syncs.c.id, _syncs.c.account, _syncs.c.synced_through)
            .join(_accounts, _accounts.c.name == _syncs.c.account)
            .where(_accounts.c.state != "needs_authorization", _due(synced_before))
            .order_by(_syncs.c.account)
            # Another request starting one of these runs meanwhile waits for this transaction,
            # then finds it under way; beat does not wait for a row another holds.
            .with_for_update(of=_syncs, skip_locked=True)
        ).all()
        if due:
            connection.execute(
                _START_DUE,
                [
                    _run_values(settings, row.synced_through, now) | {"row_id": row.id}
                    for row in due
                ],
            )
    return messages + [step_message(row.account) for row in due]


def _due(synced_before: datetime) -> ColumnElement[bool]:
    """A sync row whose account is due a run: none under way (its own step messages, or the
    sweeper, carry a run on), and never synced or last synced up to `synced_before`."""
    return and_(
        _syncs.c.run_until.is_(None),
        or_(_syncs.c.synced_through.is_(None), _syncs.c.synced_through <= synced_before),
    )


@cache
def _new_sync_rows(dialect: str) -> Executable:
    """The rows of the stored accounts that have none yet, in one statement."""
    missing = select(_accounts.c.name, bindparam("now", type_=_syncs.c.created_at.type)).where(
        _accounts.c.state != "needs_authorization",
        ~select(_syncs.c.id).where(_syncs.c.account == _accounts.c.name).exists(),
    )
    return _unless_made(_sync_rows_insert(dialect).from_select(["account", "created_at"], missing))


@cache
def _new_sync_row(dialect: str) -> Executable:
    """The row of one account (`row_account`), unless it has one."""
    return _unless_made(
        _sync_rows_insert(dialect).values(
            account=bindparam("row_account"),
            created_at=bindparam("now", type_=_syncs.c.created_at.type),
        )
    )


def _sync_rows_insert(dialect: str) -> postgresql.Insert | sqlite.Insert:
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_syncs)


def _unless_made(statement: postgresql.Insert | sqlite.Insert) -> Executable:
    """A row that exists already, made by another request at the same moment or before, is
    left as it is."""
    return statement.on_conflict_do_nothing(index_elements=[_syncs.c.account])


def _start_run(connection: Connection, settings: Settings, account: str, now: datetime) -> bool:
    """A new run, if none is under way."""
    found = connection.execute(
        select(_syncs.c.synced_through).where(
            _syncs.c.account == account, _syncs.c.run_until.is_(None)
        )
    ).one_or_none()
    if found is None:
        return False
    started = connection.execute(
        update(_syncs)
        .where(_syncs.c.account == account, _syncs.c.run_until.is_(None))
        .values(**_run_values(settings, found.synced_through, now))
    )
    return started.rowcount == 1


def _run_values(
    settings: Settings, synced_through: datetime | None, now: datetime
) -> dict[str, Any]:
    """A new run's row: from the sync point less the overlap (the lookback for a first sync)
    to now, in whole seconds."""
    # The run's end is its start, to the microsecond (a `sync-orders --wait` given after it
    # must wait for the next run); the listing asks up to its whole second.
    point = synced_through
    if point is None:
        point = now - timedelta(seconds=settings.order_sync_lookback) + OVERLAP
    return {
        "run_until": now,
        "follow": False,
        "cursor_at": (point - OVERLAP).replace(microsecond=0),
        "cursor_ids": [],
        "in_second": False,
        "second_offset": 0,
        "second_found": False,
        "second_status": None,
        "pending": [],
        "chunk": 0,
        "run_new": 0,
        "run_changed": 0,
        "error_code": None,
        "message": None,
        "attempts": 0,
        "next_attempt_at": now,
        "lease_until": None,
        "dispatched_until": dispatch_deadline(now, settings.redispatch_after),
    }


# The due runs started by beat, a row each in one batch (the values those of `_run_values`).
_START_DUE = update(_syncs).where(_syncs.c.id == bindparam("row_id"), _syncs.c.run_until.is_(None))


# -- one step --------------------------------------------------------------------------------


@dataclass
class _Position:
    """Where a run is, as its row holds it."""

    id: int
    account: str
    run_until: datetime
    cursor_at: datetime | None  # None: the listing is read; only items may be left
    cursor_ids: list[int]
    in_second: bool
    second_offset: int
    second_found: bool
    second_status: str | None  # the status a crowded second is read under; None: all
    pending: list[dict[str, Any]]
    chunk: int
    synced_through: datetime | None


_CLAIM = (
    update(_syncs)
    .where(_syncs.c.run_until.is_not(None), _syncs.c.next_attempt_at.is_not(None))
    .returning(
        _syncs.c.id,
        _syncs.c.run_until,
        _syncs.c.cursor_at,
        _syncs.c.cursor_ids,
        _syncs.c.in_second,
        _syncs.c.second_offset,
        _syncs.c.second_found,
        _syncs.c.second_status,
        _syncs.c.pending,
        _syncs.c.chunk,
        _syncs.c.synced_through,
    )
)


def sync_step(
    sessions: sessionmaker[Session],
    platforms: PlatformFor,
    settings: Settings,
    account: str,
    slot: float | None = None,
    for_seconds: float = STEP_SECONDS,
    publish: Callable[[list[Message]], None] | None = None,
) -> list[Message]:
    """The account's run under way, a page (or an items call) at a time, each written in its
    own transaction; nothing when there is none, when it is not due, or when another task
    holds it.

    A page whose next one is due at once is followed in the same task, for up to
    `for_seconds` and until its worker shuts down: a message per page would add its delivery
    and its task's start to every page, and pages are read one after the other. While it goes
    on, the next page's call is made as soon as a page is read, while that page is stored
    (_NextPage), and the deliveries of the events the page recorded are sent through
    `publish`: held to the task's end, they would reach the shop late, and past the sweeper's
    wait for them (the outbox's REDISPATCH_AFTER), which would send each event again on its
    own. Anything else (a deferral to a slot further away, a retry, the run's end) returns its
    messages."""
    ends = time.monotonic() + for_seconds
    ahead = _Ahead(until=ends)
    try:
        while True:
            messages = _one_step(sessions, platforms, settings, account, slot, ahead)
            if not _at_once(messages, account):
                return messages
            if _hands_over(ends) and ahead.page is None:
                return messages
            if publish is not None:
                publish(take_recorded())
            # Its row is due now and its lease released: taken again by the claim, as a
            # message would take it (were this task killed, the sweeper sends the row again).
            slot = None
    finally:
        if ahead.page is not None:  # a call made for a step that did not come
            ahead.page.settle(sessions, account)


def _hands_over(ends: float) -> bool:
    """Whether a task going on from page to page leaves the rest to a new message: its time
    is up, or its worker is shutting down (a running task takes no more work)."""
    return time.monotonic() >= ends or stopping()


Listing = tuple[datetime, datetime, int, str | None]
"""A listing call's filter: updated after, updated before, offset, status."""


class _NextPage:
    """The next page's listing call, made on a thread of its own while the page before it is
    stored: a page can be listed only once the one before it is read (its last second is the
    next one's anchor), so without this the next call would wait for the storing too. The
    call takes its slot like every call of the sync (its group's turn, sleeping for a near
    slot), and its records and outcome, error included, go to the step that takes it."""

    def __init__(self, platform: Platform, listing: Listing) -> None:
        self.listing = listing
        self._platform = platform
        self._page: OrderPage | None = None
        self._error: Exception | None = None
        self._calls: list[CallRecord] = []
        self._sent = threading.Event()
        self._thread = threading.Thread(target=self._call, name="order-sync-next-page")
        self._thread.start()
        # The page before is stored next, in a transaction that holds the database's write
        # lock on the embedded stack, where the call's slot is kept too (reserved, and moved
        # when it wakes late for it): the call goes out first, then the page is stored while
        # it is answered (bounded: a slot store that does not answer is the call's error).
        self._sent.wait(CALL_GOING_OUT)

    def _call(self) -> None:
        with collect_calls() as calls, turn(SYNC_GROUP, sleeps=True, on_slot=self._sent.set):
            try:
                self._page = self._platform.list_orders(*self.listing)
            except Exception as exc:  # the step that takes the page raises it
                self._error = exc
            finally:
                self._sent.set()
        self._calls = calls

    def result(self) -> OrderPage:
        """The page, as the call would have returned it in this thread (its records added to
        this thread's collection), or its error."""
        self._thread.join()
        for record in self._calls:
            record_call(record)
        if self._error is not None:
            raise self._error
        assert self._page is not None
        return self._page

    def settle(self, sessions: sessionmaker[Session], account: str) -> None:
        """A call no step took: its audit rows all the same."""
        self._thread.join()
        if not self._calls:
            return
        try:
            with core_transaction(sessions) as connection:
                record_api_calls(connection, account, self._calls)
        except SQLAlchemyError as exc:
            log.warning("the audit of a listing call of %s was not recorded: %s", account, exc)


@dataclass
class _Ahead:
    """A task's next page called ahead, while it may still go on (`until`, monotonic)."""

    until: float
    page: _NextPage | None = None


def _at_once(messages: list[Message], account: str) -> bool:
    """Whether the step's only message is the account's next step, due now."""
    if len(messages) != 1:
        return False
    message = messages[0]
    return (
        message.task == STEP_TASK
        and message.kwargs == {"account": account}
        and not message.countdown
        and message.slot is None
    )


def _one_step(
    sessions: sessionmaker[Session],
    platforms: PlatformFor,
    settings: Settings,
    account: str,
    slot: float | None,
    ahead: _Ahead | None = None,
) -> list[Message]:
    position = _claim(sessions, settings, account)
    if position is None:
        return []
    try:
        # Read here, not from the platforms' cache, which may still hold a removed account.
        with core_transaction(sessions) as connection:
            work_account_id(connection, settings, account)
        platform = platforms(account)
    except UnknownAccount:
        # Removed while its sync ran: nothing is left to sync for it.
        with core_transaction(sessions) as connection:
            connection.execute(delete(_syncs).where(_syncs.c.id == position.id))
        log.info("order sync of %s ended: the account was removed", account)
        return []
    # The step after a page goes on in the same task (sync_step): near its slot it sleeps.
    row = Row(
        _syncs,
        position.id,
        account,
        "next_attempt_at",
        step_message(account),
        SYNC_GROUP,
        slot,
        sleeps=True,
    )
    if position.pending:
        return _items_step(sessions, settings, platform, row, position)
    assert position.cursor_at is not None
    return _listing_step(sessions, settings, platform, row, position, ahead)


def _claim(sessions: sessionmaker[Session], settings: Settings, account: str) -> _Position | None:
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        found = connection.execute(
            _CLAIM.where(
                _syncs.c.account == account,
                _syncs.c.next_attempt_at <= now,
                or_(_syncs.c.lease_until.is_(None), _syncs.c.lease_until < now),
            ).values(
                lease_until=now + timedelta(seconds=settings.lease_seconds), lease_holder=holder()
            )
        ).one_or_none()
    if found is None:
        return None
    return _Position(
        id=found.id,
        account=account,
        run_until=found.run_until,
        cursor_at=found.cursor_at,
        cursor_ids=[int(i) for i in found.cursor_ids or []],
        in_second=bool(found.in_second),
        second_offset=int(found.second_offset or 0),
        second_found=bool(found.second_found),
        second_status=found.second_status,
        pending=list(found.pending or []),
        chunk=int(found.chunk or 0),
        synced_through=found.synced_through,
    )


def _listing_step(
    sessions: sessionmaker[Session],
    settings: Settings,
    platform: Platform,
    row: Row,
    position: _Position,
    ahead: _Ahead | None = None,
) -> list[Message]:
    status = position.second_status
    if status is not None and status not in platform.order_statuses:
        # A status the platform no longer names: the second's statuses are read again from
        # the first (the ids already read are still skipped).
        status = platform.order_statuses[0] if platform.order_statuses else None
        position.second_status, position.second_offset, position.second_found = status, 0, False
    listing = _listing_of(position, {})
    assert listing is not None
    called = None
    if ahead is not None:
        called, ahead.page = ahead.page, None
        if called is not None and called.listing != listing:
            # The position moved otherwise than this task moved it: read it as it is.
            called.settle(sessions, row.account)
            called = None

    def call() -> _Paged:
        page = called.result() if called is not None else platform.list_orders(*listing)
        paged = _paged(platform, position, page)
        # Where a page's orders are stored at once (on a platform whose orders wait for their
        # items, the next step is an items call), the next page is called while this one is
        # stored, if the task goes on to it; before this page's transaction begins, so that
        # the call's slot (in the database on the embedded stack) does not wait for it.
        if ahead is not None and not platform.ids_per_items_call:
            following = _listing_of(position, paged.values)
            if following is not None and not _hands_over(ahead.until):
                ahead.page = _NextPage(platform, following)
        return paged

    follow: list[Message] = []
    attempted = attempt(
        sessions,
        settings,
        row,
        call,
        succeeded=lambda c, paged, now: _listed(c, settings, platform, row, position, paged, now),
        failed=lambda c, error, message, attempts, now: follow.extend(
            _fail_run(c, settings, row, error, message, attempts, now)
        ),
        retrying=lambda c, error, attempts, now: _note_retry(c, row, error),
    )
    if attempted.value is not None:
        return attempted.value
    return [*attempted.messages, *follow]


def _listed(
    connection: Connection,
    settings: Settings,
    platform: Platform,
    row: Row,
    position: _Position,
    paged: _Paged,
    now: datetime,
) -> list[Message]:
    """A page read: its new orders stored (or kept for their items), the position moved, in
    one transaction."""
    if paged.over_cap:
        assert position.cursor_at is not None
        _over_offset_cap(connection, row, position.cursor_at, position.second_status, now)
    values = paged.values
    counts = _take(connection, settings, platform, row, paged.fresh, now, values)
    return _moved(connection, settings, row, position, values, counts, now)


class _Paged(NamedTuple):
    """What a page read moves: the position's new values, the page's orders not read before,
    and whether its second holds more orders than the offsets reach under its status."""

    values: dict[str, Any]
    fresh: list[ListedOrder]
    over_cap: bool


def _paged(platform: Platform, position: _Position, page: OrderPage) -> _Paged:
    """A page read, as _Paged says (nothing written)."""
    anchor = position.cursor_at
    assert anchor is not None
    known = set(position.cursor_ids)
    full = page.rows >= platform.orders_per_page
    fresh = [
        listed
        for listed in page.orders
        if not (listed.order_id in known and (position.in_second or listed.updated_at == anchor))
    ]
    values: dict[str, Any] = {}
    over_cap = False
    if position.in_second:
        known |= {listed.order_id for listed in page.orders}
        found = position.second_found or bool(fresh)
        status = position.second_status
        values["second_status"] = status  # as this step read it: a replaced one is written
        if full and position.second_offset + page.rows <= MAX_OFFSET:
            values.update(second_offset=position.second_offset + page.rows, second_found=found)
        elif full and status is None and platform.order_statuses:
            # More orders in the second than the offsets reach: read it per status.
            values.update(second_status=platform.order_statuses[0], second_offset=0)
            values.update(second_found=False)
        elif full:
            over_cap = True
            values.update(_after_pass(platform, anchor, status))
        elif found and position.second_offset > 0:
            values.update(second_offset=0, second_found=False)  # once more, to be sure
        else:
            values.update(_after_pass(platform, anchor, status))
        if "cursor_at" not in values:
            values["cursor_ids"] = sorted(known)
    else:
        moments = [listed.updated_at for listed in page.orders if listed.updated_at is not None]
        last = max(moments) if moments else anchor
        if not full:
            values.update(cursor_at=None, cursor_ids=[])  # the listing is read
        elif last == anchor:  # the whole page is one second: page inside it
            known |= {listed.order_id for listed in page.orders}
            values.update(
                cursor_ids=sorted(known),
                in_second=True,
                second_offset=page.rows,
                second_found=True,
            )
        else:
            at_last = {listed.order_id for listed in page.orders if listed.updated_at == last}
            values.update(cursor_at=last, cursor_ids=sorted(at_last))
    return _Paged(values, fresh, over_cap)


def _listing_of(position: _Position, values: dict[str, Any]) -> Listing | None:
    """The listing call of the position with `values` written (None: the listing is read)."""
    anchor = values.get("cursor_at", position.cursor_at)
    if anchor is None:
        return None
    status = values.get("second_status", position.second_status)
    if values.get("in_second", position.in_second):
        return anchor, anchor, values.get("second_offset", position.second_offset), status
    return anchor, position.run_until, 0, status


def _after_pass(platform: Platform, anchor: datetime, status: str | None) -> dict[str, Any]:
    """The position once a pass through the second is done: the next status of the second
    while it is read per status, else the next second."""
    if status is not None:
        statuses = platform.order_statuses
        index = statuses.index(status) if status in statuses else len(statuses)
        if index + 1 < len(statuses):
            return {"second_status": statuses[index + 1], "second_offset": 0, "second_found": False}
    return _next_second(anchor)


def _next_second(anchor: datetime) -> dict[str, Any]:
    return {
        "cursor_at": anchor + ONE_SECOND,
        "cursor_ids": [],
        "in_second": False,
        "second_offset": 0,
        "second_found": False,
        "second_status": None,
    }


def _take(
    connection: Connection,
    settings: Settings,
    platform: Platform,
    row: Row,
    fresh: list[ListedOrder],
    now: datetime,
    values: dict[str, Any],
) -> tuple[int, int]:
    """Store the page's new orders, or keep them in the row until their items are read."""
    readable = []
    for listed in fresh:
        if listed.updated_at is None:
            _order_failure(connection, row, listed.order_id, listed.problem or "unreadable", now)
        else:
            readable.append(listed)
    if platform.ids_per_items_call:
        if readable:
            values["pending"] = [_kept(listed) for listed in readable]
            values["chunk"] = platform.ids_per_items_call
        return 0, 0
    return _store_all(
        connection, settings, platform, row, [(listed, None) for listed in readable], now
    )


def _store_all(
    connection: Connection,
    settings: Settings,
    platform: Platform,
    row: Row,
    batch: list[tuple[ListedOrder, list[dict[str, Any]] | None]],
    now: datetime,
) -> tuple[int, int]:
    """The batch's orders stored together (worker.services.order_store.store_orders); if the
    database refuses that, each on its own savepoint, so that the one it refuses fails alone."""
    # The orders a sync stores are its account's work, tied to it by id like a fetch's
    # (worker.accounts.store.account_change).
    try:
        account_id = work_account_id(connection, settings, row.account)
    except UnknownAccount:  # removed during this call: its next step ends the sync
        account_id = None
    readable: list[tuple[int, ApiOrder]] = []
    for listed, items in batch:
        try:
            readable.append((listed.order_id, platform.listed_order(listed, items)))
        except UnusableOrder as exc:
            _order_failure(connection, row, listed.order_id, str(exc), now)
    if not readable:
        return 0, 0
    try:
        with connection.begin_nested():
            outcomes = [
                stored
                for _, stored in store_orders(
                    connection,
                    row.account,
                    [order for _, order in readable],
                    now,
                    settings.order_callback,
                    account_id=account_id,
                )
            ]
    except StatementError:
        outcomes = []
        for order_id, order in readable:
            try:
                with connection.begin_nested():
                    _, stored = store_order(
                        connection,
                        row.account,
                        order,
                        now,
                        settings.order_callback,
                        account_id=account_id,
                    )
            except StatementError as exc:
                why = f"cannot be stored: {exc}"[:500]
                _order_failure(connection, row, order_id, why, now)
                continue
            outcomes.append(stored)
    return outcomes.count("new"), outcomes.count("changed")


def _moved(
    connection: Connection,
    settings: Settings,
    row: Row,
    position: _Position,
    values: dict[str, Any],
    counts: tuple[int, int],
    now: datetime,
) -> list[Message]:
    """Write the new position; the run ends when nothing is left to list or to complete."""
    pending = values.get("pending", position.pending)
    cursor_at = values.get("cursor_at", position.cursor_at)
    in_second = values.get("in_second", position.in_second)
    values.update(
        run_new=_syncs.c.run_new + counts[0],
        run_changed=_syncs.c.run_changed + counts[1],
        attempts=0,
        error_code=None,
        message=None,
    )
    through = position.synced_through
    if not pending and cursor_at is not None and not in_second:
        # Everything updated before the second read to is stored (L14).
        candidate = cursor_at - ONE_SECOND
        if through is None or candidate > through:
            values["synced_through"] = candidate
    if pending or cursor_at is not None:
        connection.execute(update(_syncs).where(_syncs.c.id == row.id).values(values))
        return [row.reschedule(connection, settings, now, 0.0)]
    # The run is done: the sync point is its end.
    end = position.run_until if through is None or position.run_until > through else through
    values.update(
        synced_through=end,
        synced_at=now,
        run_until=None,
        cursor_at=None,
        cursor_ids=[],
        pending=[],
        last_new=_syncs.c.run_new + counts[0],
        last_changed=_syncs.c.run_changed + counts[1],
        next_attempt_at=None,
        lease_until=None,
        dispatched_until=None,
    )
    follow = connection.execute(
        update(_syncs).where(_syncs.c.id == row.id).values(values).returning(_syncs.c.follow)
    ).scalar_one()
    log.info(
        "order sync of %s done through %s",
        row.account,
        end.isoformat(),
        extra={"account": row.account, "outcome": "synced"},
    )
    if follow and _start_run(connection, settings, row.account, now):
        return [step_message(row.account)]
    return []


def _kept(listed: ListedOrder) -> dict[str, Any]:
    """A listed order as the row keeps it while its items are read."""
    assert listed.updated_at is not None
    return {
        "order_id": listed.order_id,
        "updated_at": listed.updated_at.isoformat(),
        "raw": dict(listed.raw),
    }


def _unkept(kept: dict[str, Any]) -> ListedOrder:
    return ListedOrder(
        int(kept["order_id"]), datetime.fromisoformat(kept["updated_at"]), kept["raw"]
    )


def _items_step(
    sessions: sessionmaker[Session],
    settings: Settings,
    platform: Platform,
    row: Row,
    position: _Position,
) -> list[Message]:
    chunk = max(1, min(position.chunk or platform.ids_per_items_call, platform.ids_per_items_call))
    taken = position.pending[:chunk]
    ids = [int(kept["order_id"]) for kept in taken]
    alone: list[int] = []
    follow: list[Message] = []

    def unknown(
        connection: Connection, error: ApiError, message: str, attempts: int, now: datetime
    ) -> None:
        if not isinstance(error, UnknownInBatch):
            follow.extend(_fail_run(connection, settings, row, error, message, attempts, now))
            return
        values: dict[str, Any] = {"attempts": 0}
        if len(ids) > 1:
            values["chunk"] = max(1, len(ids) // 2)  # ask for fewer until the id is alone
        else:
            # L13: the id the API does not know in a batch is fetched by itself.
            alone.extend(ids)
            values["pending"] = position.pending[1:]
        connection.execute(update(_syncs).where(_syncs.c.id == row.id).values(values))
        if "pending" in values and not values["pending"]:
            moved = _moved(connection, settings, row, position, values, (0, 0), now)
            follow.extend(moved)
            return
        follow.append(row.reschedule(connection, settings, now, 0.0))

    attempted = attempt(
        sessions,
        settings,
        row,
        lambda: platform.order_items(ids),
        succeeded=lambda c, found, now: _itemized(
            c, settings, platform, row, position, taken, found, now
        ),
        failed=unknown,
        retrying=lambda c, error, attempts, now: _note_retry(c, row, error),
    )
    messages = attempted.value if attempted.value is not None else attempted.messages
    messages = [*messages, *follow]
    if alone:
        messages += orders.request_fetch(sessions, settings, row.account, alone)
    return messages


def _itemized(
    connection: Connection,
    settings: Settings,
    platform: Platform,
    row: Row,
    position: _Position,
    taken: list[dict[str, Any]],
    found: Any,
    now: datetime,
) -> list[Message]:
    batch: list[tuple[ListedOrder, list[dict[str, Any]] | None]] = []
    for kept in taken:
        listed = _unkept(kept)
        items = found.get(listed.order_id)
        if items is None:
            _order_failure(
                connection, row, listed.order_id, "its items were not in the items answer", now
            )
            continue
        batch.append((listed, items))
    counts = _store_all(connection, settings, platform, row, batch, now)
    values: dict[str, Any] = {"pending": position.pending[len(taken) :]}
    return _moved(connection, settings, row, position, values, counts, now)


# -- outcomes other than a page ----------------------------------------------------------------


def _note_retry(connection: Connection, row: Row, error: TransientApiError) -> None:
    connection.execute(
        update(_syncs)
        .where(_syncs.c.id == row.id)
        .values(error_code=error.code, message=str(error)[:2000])
    )
    log.info("order sync of %s: %s; resumes from its position", row.account, error)


def _fail_run(
    connection: Connection,
    settings: Settings,
    row: Row,
    error: ApiError,
    message: str,
    attempts: int,
    now: datetime,
) -> list[Message]:
    """The run ends without moving the sync point further; the next run starts from it, at
    once if one was asked for while this one ran (its step message is returned)."""
    follow = connection.execute(
        update(_syncs)
        .where(_syncs.c.id == row.id)
        .values(
            run_until=None,
            pending=[],
            error_code=error.code,
            message=message[:2000],
            next_attempt_at=None,
            lease_until=None,
            dispatched_until=None,
        )
        .returning(_syncs.c.follow)
    ).scalar_one()
    record_failure(
        connection, row.account, "order_sync", row.account, error.code, message, attempts, now
    )
    log.warning(
        "order sync of %s failed: %s",
        row.account,
        message,
        extra={"account": row.account, "outcome": "failed"},
    )
    if follow and _start_run(connection, settings, row.account, now):
        return [step_message(row.account)]
    return []


def _order_failure(
    connection: Connection, row: Row, order_id: int, why: str, now: datetime
) -> None:
    """An order the sync read but cannot store: a failure row for it; the sync goes on."""
    record_failure(connection, row.account, "order", str(order_id), "unusable", why, 1, now)
    log.warning("order %s from the sync of %s cannot be stored: %s", order_id, row.account, why)


def _over_offset_cap(
    connection: Connection, row: Row, second: datetime, status: str | None, now: datetime
) -> None:
    under = "" if status is None else f" with status {status}"
    why = (
        f"more orders{under} were updated at {second.isoformat()} than the API's offsets reach "
        f"(they stop at {MAX_OFFSET}): those past them were not read by this sync (fetch them "
        "by id)"
    )
    record_failure(connection, row.account, "order_sync", row.account, "offset_cap", why, 1, now)
    log.warning("order sync of %s: %s", row.account, why)


# -- reading ---------------------------------------------------------------------------------


def sync_state(session: Session, account: str) -> dict[str, Any]:
    """The account's sync as `accounts show` and `sync-orders --wait` read it."""
    row = session.scalars(select(OrderSync).where(OrderSync.account == account)).one_or_none()
    if row is None:
        return {
            "orders_synced_through": None,
            "orders_synced_at": None,
            "running": False,
            "error_code": None,
            "message": None,
            "new": 0,
            "changed": 0,
        }
    return {
        "orders_synced_through": row.synced_through,
        "orders_synced_at": row.synced_at,
        "running": row.run_until is not None,
        "error_code": row.error_code,
        "message": row.message,
        "new": row.last_new,
        "changed": row.last_changed,
    }


def synced_fields(session: Session, account: str) -> dict[str, Any]:
    """The Account document's `orders_synced_through` and `orders_synced_at`."""
    state = sync_state(session, account)
    return {
        "orders_synced_through": _iso(state["orders_synced_through"]),
        "orders_synced_at": _iso(state["orders_synced_at"]),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
