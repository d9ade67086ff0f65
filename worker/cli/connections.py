"""What a command works with: the settings, the results database, the account it works for,
and the broker it sends tasks over."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Sequence
from typing import Any

from kombu.exceptions import OperationalError
from sqlalchemy.orm import sessionmaker

from worker.accounts.store import environment_account, get_account
from worker.broker.dispatch import Message
from worker.cli.exits import CommandFailed
from worker.db.engine import get_engine
from worker.db.schema import DatabaseUnavailable, ensure_schema
from worker.outbox.events import take_recorded
from worker.settings import Settings, SettingsError


def load_settings() -> Settings:
    """The settings from the environment; one that cannot be used is bad input (exit 2)."""
    return Settings.from_env()


def open_sessions(settings: Settings) -> Any:
    """A sessionmaker on an up-to-date database; bad URLs and unreachable servers exit 2."""
    try:
        ensure_schema(settings.database_url)
    except DatabaseUnavailable as exc:
        raise SettingsError(f"{exc} (check DATABASE_URL)") from None
    return sessionmaker(get_engine(settings.database_url), expire_on_commit=False)


def account_name(args: argparse.Namespace, settings: Settings, sessions: Any = None) -> str:
    """The name of the account a command works for: --account, else the default account; an
    unknown name is bad input (exit 2). The environment's account needs no database, so an
    enqueue for it without --wait opens none (the broker may be all that is reachable)."""
    environment = environment_account(settings)
    if (
        environment is not None
        and settings.default_account is None
        and args.account in (None, environment.name)
    ):
        return environment.name
    with (sessions or open_sessions(settings))() as session:
        return get_account(session, settings, args.account).name


def open_account(args: argparse.Namespace) -> tuple[Any, Settings, str]:
    """(sessions, settings, account name) for a command that changes an account's rows: the
    account --account names, else the default one, always looked up in the database."""
    settings = load_settings()
    sessions = open_sessions(settings)
    with sessions() as session:
        return sessions, settings, get_account(session, settings, args.account).name


def send(name: str, args: Sequence[Any], task_id: str | None = None, **kwargs: Any) -> str:
    """Enqueue a task by name over the configured broker; returns its id."""
    # Imported here: the Celery app reads and checks the environment as it loads, and a bad
    # variable must be the command's one-line error (exit 2), not a traceback at start.
    from worker.celery_app import app

    task_id = task_id or str(uuid.uuid4())
    try:
        app.send_task(
            name,
            args=list(args),
            kwargs=kwargs,
            task_id=task_id,
            retry_policy={"max_retries": 2, "interval_start": 0.5, "interval_step": 1},
        )
    except OperationalError as exc:
        # Not always unreachable (a full disk under the embedded broker): the broker's own
        # words say what failed.
        raise CommandFailed(
            f"the broker {app.conf.broker_url.split('@')[-1]} did not take the task: {exc}"
        ) from None
    return task_id


def publish(messages: Sequence[Message]) -> None:
    """What follows a commit, sent over the broker (the sweepers send it if this fails): the
    messages given, then the deliveries of the events the transaction recorded."""
    for message in [*messages, *take_recorded()]:
        send(message.task, list(message.args), **message.kwargs)
