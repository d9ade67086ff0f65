"""Event tasks: delivery (on the events queue), the sweeper, and the operator's job controls."""

from __future__ import annotations

from typing import Any

from tasks.base import ServiceTask
from worker.celery_app import app
from worker.inputs import InvalidInput, clean_key
from worker.outbox import webhooks
from worker.ratelimit.runners import runners_for
from worker.services import job_control, sweepers


@app.task(name="lazada.deliver_event", base=ServiceTask, bind=True)
def deliver_event(self: ServiceTask, event_id: Any) -> None:
    """Send one recorded event to its targets (internal: sent after commit, and by the sweeper)."""
    if not isinstance(event_id, str):
        raise InvalidInput(f"event_id must be a string, got {type(event_id).__name__}")

    def send(name: str, event: dict[str, Any], queue: str) -> None:
        self.app.send_task(name, args=[event], queue=queue)

    self.publish(webhooks.deliver(self.sessions, self.settings, send, event_id))


@app.task(name="lazada.deliver_events", base=ServiceTask, bind=True)
def deliver_events(self: ServiceTask, event_ids: Any) -> None:
    """Send recorded events to their targets, one after the other (internal: sent after the
    commit of work that recorded several, as one message instead of one each)."""
    if not isinstance(event_ids, list) or not all(isinstance(i, str) for i in event_ids):
        raise InvalidInput("event_ids must be a list of strings")

    def send(name: str, event: dict[str, Any], queue: str) -> None:
        self.app.send_task(name, args=[event], queue=queue)

    self.publish(webhooks.deliver_many(self.sessions, self.settings, send, event_ids))


@app.task(name="lazada.sweep_events", base=ServiceTask, bind=True)
def sweep_events(self: ServiceTask) -> None:
    self.publish(sweepers.sweep_events(self.sessions, self.settings))


@app.task(name="lazada.retry_job", base=ServiceTask, bind=True)
def retry_job(self: ServiceTask, key: Any, account: Any = None) -> None:
    """A done removal job's failed SKUs are sent again (as `lazada-worker retry`)."""
    job_key = _key(key)
    owner = self.account(account)
    runners = runners_for(owner.rate_limit)
    retried = job_control.retry(self.sessions, self.settings, owner.name, job_key, runners)
    self.publish(retried.messages)


@app.task(name="lazada.cancel_job", base=ServiceTask, bind=True)
def cancel_job(self: ServiceTask, key: Any, account: Any = None) -> None:
    """A removal job's SKUs not yet sent are cancelled (as `lazada-worker cancel`)."""
    job_key = _key(key)
    owner = self.account(account).name
    job_control.cancel(self.sessions, owner, job_key)
    self.publish([])


def _key(key: Any) -> str:
    cleaned = clean_key(key)
    if cleaned is None:
        raise InvalidInput("key is required: the removal job's idempotency key")
    return cleaned
