"""Order tasks."""

from __future__ import annotations

from typing import Any

from tasks.base import ServiceTask
from worker.accounts.store import UnknownAccount
from worker.celery_app import app
from worker.inputs import clean_order_id
from worker.outbox.events import clean_callback
from worker.services import order_sync, orders


@app.task(name="lazada.fetch_order", base=ServiceTask, bind=True)
def fetch_order(
    self: ServiceTask,
    order_id: Any,
    account: Any = None,
    callback: Any = None,
    callback_queue: Any = None,
) -> None:
    """Fetch the order, then insert or update the stored one; its event goes to `callback` too."""
    order = clean_order_id(order_id)
    named = clean_callback(callback, callback_queue)
    try:
        owner = self.account(account).name
    except UnknownAccount:
        # A fetch, sent again by a sweeper, of an order stored for an account removed since:
        # its row ends once, saying so, rather than failing as bad input at every sweep.
        if isinstance(account, str) and orders.end_for_removed_account(
            self.sessions, self.settings, account, order, self.request.id
        ):
            return
        raise
    reserved = self.reserved_slot()
    self.publish(
        orders.fetch_order(
            self.sessions,
            self.platforms,
            self.settings,
            owner,
            order,
            self.request.id,
            *named,
            slot=reserved,
        )
    )


@app.task(name="lazada.refresh_open_orders", base=ServiceTask, bind=True)
def refresh_open_orders(self: ServiceTask) -> None:
    """Periodic: fetch again the stored orders, of every account, not in a final status."""
    self.publish(orders.refresh_open_orders(self.sessions, self.settings))


@app.task(name="lazada.sync_orders", base=ServiceTask, bind=True)
def sync_orders(self: ServiceTask, account: Any = None) -> None:
    """An order sync of the account (contract "Order sync"); sent while one runs, one more
    follows it."""
    owner = self.account(account).name
    self.publish(order_sync.request_sync(self.sessions, self.settings, owner))


@app.task(name="lazada.sync_orders_step", base=ServiceTask, bind=True)
def sync_orders_step(self: ServiceTask, account: Any = None) -> None:
    """The next page of the account's sync under way (its position is in the database)."""
    if not isinstance(account, str):
        return
    reserved = self.reserved_slot()
    self.publish(
        order_sync.sync_step(
            self.sessions, self.platforms, self.settings, account, reserved, publish=self.publish
        )
    )


@app.task(name="lazada.schedule_order_syncs", base=ServiceTask, bind=True)
def schedule_order_syncs(self: ServiceTask) -> None:
    """Periodic: a sync of every account whose last one started LAZADA_ORDER_SYNC_EVERY ago."""
    self.publish(order_sync.due_syncs(self.sessions, self.settings))
