"""Periodic sweepers: due work whose message was lost is sent again."""

from __future__ import annotations

from tasks.base import ServiceTask
from worker.celery_app import app
from worker.services import sweepers


@app.task(name="lazada.sweep_removal_batches", base=ServiceTask, bind=True)
def sweep_removal_batches(self: ServiceTask) -> None:
    self.publish(sweepers.sweep_removal_batches(self.sessions, self.settings))


@app.task(name="lazada.sweep_orders", base=ServiceTask, bind=True)
def sweep_orders(self: ServiceTask) -> None:
    self.publish(sweepers.sweep_orders(self.sessions, self.settings))


@app.task(name="lazada.sweep_image_jobs", base=ServiceTask, bind=True)
def sweep_image_jobs(self: ServiceTask) -> None:
    self.publish(sweepers.sweep_image_jobs(self.sessions, self.settings))


@app.task(name="lazada.sweep_order_syncs", base=ServiceTask, bind=True)
def sweep_order_syncs(self: ServiceTask) -> None:
    self.publish(sweepers.sweep_order_syncs(self.sessions, self.settings))
