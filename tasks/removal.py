"""Removal tasks."""

from __future__ import annotations

from typing import Any

from tasks.base import ServiceTask
from worker.celery_app import app
from worker.inputs import clean_key, clean_skus
from worker.outbox.events import clean_callback
from worker.ratelimit.runners import runners_for
from worker.services import removal


@app.task(name="lazada.remove_products", base=ServiceTask, bind=True)
def remove_products(
    self: ServiceTask,
    skus: Any,
    key: Any = None,
    account: Any = None,
    callback: Any = None,
    callback_queue: Any = None,
) -> None:
    """Record a removal job under `key` (the task id when none) and start its batches; its
    event goes to `callback` when named. A key used with another set of SKUs is bad input."""
    cleaned = clean_skus(skus)
    named = clean_callback(callback, callback_queue)
    job_key = clean_key(key) or self.request.id
    owner = self.account(account)
    batch_size = self.platforms(owner.name).max_skus_per_call
    _, messages = removal.create_job(
        self.sessions,
        self.settings,
        owner.name,
        job_key,
        cleaned,
        batch_size,
        *named,
        runners=runners_for(owner.rate_limit),
    )
    self.publish(messages)


@app.task(name="lazada.remove_batch", base=ServiceTask, bind=True)
def remove_batch(self: ServiceTask, batch_id: int) -> None:
    """Remove one batch's pending SKUs (internal: enqueued by remove_products and sweepers;
    a deferral's reserved call slot comes in its message header, ServiceTask.reserved_slot)."""
    reserved = self.reserved_slot()
    self.publish(
        removal.process_batch(
            self.sessions,
            self.platforms,
            self.settings,
            batch_id,
            reserved,
            publish=self.publish,
            keep=self.keep_held,
        )
    )
