"""The base class of every task: settings, sessions, each account's platform, the check of a
message before Celery unpacks it, and publishing after commit."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from celery import Task
from celery.exceptions import InvalidTaskError
from celery.signals import worker_init
from celery.worker.request import Request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from worker.accounts.platforms import Platforms, platforms
from worker.accounts.store import Account
from worker.broker.deferrals import local_deferrals
from worker.broker.dispatch import SLOT_HEADER, Message, send_messages
from worker.broker.messages import Unservable, check_celery_message
from worker.db.engine import get_engine, session_scope
from worker.db.models import Failure
from worker.inputs import InvalidInput, clean_slot
from worker.outbox.events import take_recorded
from worker.ratelimit import slot_sleepers
from worker.settings import Settings

log = logging.getLogger(__name__)

KEPT_RETRY = 2.0  # s before a kept deferral whose database was out of reach runs again


@worker_init.connect
def _pool_size(sender: Any, **_: Any) -> None:
    """The worker's threads: how many may sleep for a chained call's slot (worker.ratelimit),
    and how many run the deferrals this process keeps (worker.broker.deferrals: a process of
    threads, not a prefork pool's parent, which runs no task)."""
    threads = getattr(sender, "concurrency", 0)
    threads = threads if isinstance(threads, int) else 0
    slot_sleepers.allow(threads)
    pool = getattr(sender, "pool_cls", None)
    pool_name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    local_deferrals.allow(0 if "prefork" in str(pool_name) else threads)


class CheckedRequest(Request):  # type: ignore[misc]
    """A task message checked before Celery unpacks it: one with a field Celery would trip
    over outside its error handling (a `timelimit` of text, a body that is not [args, kwargs,
    embed]) is an invalid task, which Celery logs and rejects, not an error that stops the
    worker. Every broker: a shop's bug or a hand-made message must not stop the worker."""

    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        headers = kwargs.get("headers") or message.headers or {}
        body = None if kwargs.get("decoded") else kwargs.get("body", message.body)
        content_type = message.content_type if body is not None else None
        try:
            check_celery_message(headers, body, content_type)
        except Unservable as exc:
            raise InvalidTaskError(f"message {exc}") from None
        super().__init__(message, *args, **kwargs)


class ServiceTask(Task):  # type: ignore[misc]
    """Owns what a task needs around its service call.

    A database that cannot be reached (restarting, failing over) is retried with a growing
    delay rather than failing the task: the service's state is in the rows, so running the
    task again later is always safe.
    """

    abstract = True
    Request = "tasks.base:CheckedRequest"
    autoretry_for = (OperationalError, InterfaceError)
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 30

    @cached_property
    def settings(self) -> Settings:
        return Settings.from_env()

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return sessionmaker(get_engine(self.settings.database_url), expire_on_commit=False)

    @property
    def platforms(self) -> Platforms:
        """Each account's platform, chosen from the account of the row a service claims."""
        return platforms(self.sessions, self.settings)

    def account(self, name: Any) -> Account:
        """The account a task names (None: the default one); unknown names are bad input."""
        if name is not None and not isinstance(name, str):
            raise InvalidInput(f"account must be an account's name, got {type(name).__name__}")
        return self.platforms.account(name)

    def reserved_slot(self) -> float | None:
        """The call slot a deferral of this work reserved (worker.ratelimit), from the header
        the worker set on its own message; a slot is not a task argument any sender can pass."""
        return clean_slot(getattr(self.request, SLOT_HEADER, None), time.time())

    def publish(self, messages: list[Message]) -> None:
        """Send follow-up tasks; called only after the service's transactions committed.

        The task's own deferral to a reserved call slot is kept in this process and run here
        at its time when the process keeps deferrals (worker.broker.deferrals); the rest go
        to the broker (send_messages).
        """
        messages = [*messages, *take_recorded()]  # events this task's service committed
        sent = [message for message in messages if not self._kept(message)]
        send_messages(self.app, sent)

    def _kept(self, message: Message) -> bool:
        return (
            message.task == self.name
            and message.slot is not None
            and local_deferrals.keep(message, self.run_kept)
        )

    def keep_held(
        self, message: Message, resume: Callable[[], list[Message]], release: Callable[[], None]
    ) -> bool:
        """Keep in this process a deferral whose row stays leased to it (a removal batch's:
        worker.services.removal.Keep): `resume` goes on with the row at the slot and returns
        the messages to publish; `release` lets the row go should `message` go to the broker
        instead (the process stops first, or the database is out of reach at the slot)."""
        return local_deferrals.keep(
            message, lambda kept: self.run_kept(kept, resume, release), release
        )

    def run_kept(
        self,
        message: Message,
        resume: Callable[[], list[Message]] | None = None,
        release: Callable[[], None] | None = None,
    ) -> None:
        """Run a deferral this process kept, as the worker runs its message (or go on with its
        held row: keep_held): the slot in the request, a database out of reach retried (through
        the broker, without the slot, which will have passed), any other error recorded
        (on_failure)."""
        task_id = f"kept-{uuid.uuid4()}"
        args, kwargs = list(message.args), dict(message.kwargs)
        self.push_request(id=task_id, args=args, kwargs=kwargs, **{SLOT_HEADER: message.slot})
        try:
            if resume is None:
                self.run(*args, **kwargs)
            else:
                self.publish(resume())
        except self.autoretry_for as exc:
            log.warning("%s[%s]: %s; sent again", self.name, task_id, type(exc).__name__)
            if release is not None:
                with contextlib.suppress(*self.autoretry_for):
                    release()  # else its lease ends, and the sweepers send it again
            send_messages(self.app, [replace(message, countdown=KEPT_RETRY, slot=None)])
        except Exception as exc:
            log.exception("%s[%s] failed", self.name, task_id)
            self.on_failure(exc, task_id, args, kwargs, None)
        finally:
            self.pop_request()

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """A task that could not do its work leaves a row that says why (bad arguments too)."""
        kind = "bad_input" if isinstance(exc, InvalidInput | TypeError) else "task"
        named = (kwargs or {}).get("account")
        account = named if isinstance(named, str) and named else self.settings.account
        try:
            with session_scope(self.settings.database_url) as session:
                session.add(
                    Failure(
                        account=account[:255],
                        at=datetime.now(UTC),
                        kind=kind,
                        subject=f"{self.name}[{task_id}]",
                        error_code=None,
                        message=str(exc)[:2000] or type(exc).__name__,
                        attempts=self.request.retries + 1,
                    )
                )
        except Exception:
            log.exception("could not record the failure of %s[%s]", self.name, task_id)
