"""Image job tasks."""

from __future__ import annotations

from typing import Any

from tasks.base import ServiceTask
from worker.celery_app import app
from worker.inputs import clean_action, clean_key, clean_request_id, clean_urls
from worker.outbox.events import clean_callback
from worker.services import images


@app.task(name="lazada.migrate_images", base=ServiceTask, bind=True)
def migrate_images(
    self: ServiceTask,
    urls: Any,
    key: Any = None,
    account: Any = None,
    callback: Any = None,
    callback_queue: Any = None,
) -> None:
    """Record a migration under `key` (the task id when none); its chunks are submitted next.
    Each image job's event goes to `callback` too."""
    cleaned = clean_urls(urls)
    named = clean_callback(callback, callback_queue)
    job_key = clean_key(key) or self.request.id
    owner = self.account(account).name
    per_call = self.platforms(owner).max_urls_per_call
    _, messages = images.start_migration(
        self.sessions, self.settings, owner, job_key, cleaned, per_call, *named
    )
    self.publish(messages)


@app.task(name="lazada.track_image_job", base=ServiceTask, bind=True)
def track_image_job(
    self: ServiceTask,
    request_id: Any,
    action: Any = "MigrateImages",
    account: Any = None,
    callback: Any = None,
    callback_queue: Any = None,
) -> None:
    """Poll a job submitted elsewhere (e.g. UploadImages, decision D5) until it finishes or its
    deadline passes."""
    request = clean_request_id(request_id)
    named = clean_callback(callback, callback_queue)
    owner = self.account(account).name
    action_name = clean_action(action)
    self.publish(images.track(self.sessions, self.settings, owner, request, action_name, *named))


@app.task(name="lazada.advance_image_job", base=ServiceTask, bind=True)
def advance_image_job(self: ServiceTask, job_id: int) -> None:
    """Submit or poll one image job once (internal: its countdown is the wait; a deferral's
    reserved call slot comes in its message header, ServiceTask.reserved_slot)."""
    reserved = self.reserved_slot()
    self.publish(images.advance(self.sessions, self.platforms, self.settings, job_id, reserved))
