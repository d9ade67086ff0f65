"""The effective settings, read once from the environment (see the contract's table)."""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from worker.broker import embedded  # registers the lazada-files:// transport
from worker.urls import mask_url

DEFAULT_DATABASE_URL = "sqlite:///lazada-worker.sqlite3"
_DAY = 86400.0
# A name kombu can use as a queue and as part of a file name (the embedded broker).
_TASK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,254}")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable and the fix."""


@dataclass(frozen=True)
class Settings:
    """Everything the worker reads from the environment, validated.

    `api_url`, `user_id` and `api_key` define the environment's legacy account
    (worker.accounts.store.environment_account); other accounts are stored as data. The
    secrets (the API key, the secret key, the webhook secret) are kept out of ``repr`` so that
    a logged or printed Settings never leaks them.
    """

    database_url: str
    broker_url: str
    api_url: str | None
    user_id: str | None
    api_key: str | None = field(repr=False)
    rate_limit: float
    queue: str = "lazada"  # several shops (or test runs) can share one broker by name
    # Transient failures are retried on this ladder (seconds, jittered by +-25%), then given up.
    retry_ladder: tuple[float, ...] = (1.0, 2.0, 5.0, 15.0, 30.0, 60.0)
    # Image jobs: first poll after `poll_first` s, then every `poll_growth` x age + `poll_slack` s,
    # at most `poll_cap` s apart; a job still running `image_deadline` s after it started expires.
    poll_first: float = 1.0
    poll_growth: float = 0.2
    poll_slack: float = 4.5
    poll_cap: float = 60.0
    image_deadline: float = 900.0
    # A task holds a row for at most `lease_seconds` per API call; a message sent for a row that
    # has not been served `redispatch_after` s after it was due is taken for lost and sent again.
    lease_seconds: float = 90.0
    redispatch_after: float = 300.0
    # The client's HTTP timeouts; a lease must outlast a whole call, or a second worker could
    # take the row while the first is still waiting for its answer.
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    # Stored orders not in a final status are fetched again when older than this.
    order_refresh_after: float = 900.0
    # Order sync (worker.services.order_sync): beat starts one for every account this often
    # (0: off, and beat refreshes open orders instead); the first reaches back this far; the
    # task that hears of every order.created and order.updated.
    order_sync_every: float = 300.0
    order_sync_lookback: float = 7 * _DAY
    order_callback: str | None = None
    # The account used when work names none (worker.accounts.store.get_account).
    default_account: str | None = None
    # The Fernet key(s) that encrypt stored secrets, comma-separated, or a file holding them
    # (read when a secret is first stored or read: worker.accounts.secrets).
    secret_key: str | None = field(default=None, repr=False)
    secret_key_file: str | None = None
    # Events (worker.outbox.events): the queue of callback tasks that name none, and where
    # webhooks go, signed with a Standard Webhooks secret (`whsec_` + base64).
    callback_queue: str | None = None
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str | None = field(default=None, repr=False)
    # Seconds one webhook delivery may take in all, from connecting to the answer's last byte.
    webhook_timeout: float = 10.0
    webhook_give_up_after: float = 3 * _DAY  # then an undelivered event is dead

    @property
    def broker_folder(self) -> Path | None:
        """The embedded broker's folder, when the broker is the embedded one."""
        if not self.broker_url.startswith((EMBEDDED_BROKER_URL, "filesystem://")):
            return None
        return embedded_broker_folder(self.database_url)

    def broker_transport_options(self) -> dict[str, object]:
        """kombu transport options for the broker (publishers need them as well as workers)."""
        folder = self.broker_folder
        if folder is None:
            # Redis: a message unacknowledged this long is delivered again. Far above our
            # longest countdown (a few minutes), so a held message is never redelivered early.
            return {"visibility_timeout": 3600}
        # The embedded broker (worker.broker.embedded): one file a message, measured against
        # kombu's SQLAlchemy transport on SQLite in bench/embedded_broker.py.
        # Beside the database, whose directory must exist (checked in from_env): never a tree.
        folder.mkdir(exist_ok=True)
        for sub in ("queue", "control"):
            (folder / sub).mkdir(exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            # How often a consumer looks for new files: it looks again after every task, so a
            # long interval is a wait between tasks, and a short one costs an idle worker CPU;
            # the trade-off is measured in bench/RESULTS.md.
            "polling_interval": 0.01,
        }

    @property
    def poll_queue(self) -> str:
        """The queue of image jobs' steps (submit, then polls), apart from the bulk work: a
        large removal does not delay polls, and workers of their own can serve them."""
        return f"{self.queue}.polls"

    @property
    def events_queue(self) -> str:
        """The queue of event deliveries: a slow or failing receiver holds up no API work."""
        return f"{self.queue}.events"

    @property
    def account(self) -> str:
        """The environment's legacy account's name (its UserID, "default" without one): a task
        that names no account records its failure under it."""
        return self.user_id or "default"

    def require_api(self) -> tuple[str, str, str]:
        """The API url, user id and key, or a SettingsError saying which variables to set."""
        missing = [
            name
            for name, value in (
                ("LAZADA_API_URL", self.api_url),
                ("LAZADA_USER_ID", self.user_id),
                ("LAZADA_API_KEY or LAZADA_API_KEY_FILE", self.api_key),
            )
            if not value
        ]
        if missing:
            raise SettingsError(
                f"missing API settings: set {', '.join(missing)} "
                "(or run `lazada-worker demo`, which uses the local sandbox)"
            )
        assert self.api_url and self.user_id and self.api_key
        return self.api_url, self.user_id, self.api_key

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        database_url = env.get("DATABASE_URL") or DEFAULT_DATABASE_URL
        _check_database_url(database_url)
        broker_url = env.get("CELERY_BROKER_URL") or EMBEDDED_BROKER_URL
        rate = env.get("LAZADA_RATE_LIMIT") or "5"
        try:
            rate_limit = float(rate)
        except ValueError:
            raise SettingsError(
                f"LAZADA_RATE_LIMIT must be a number of calls per second, got {rate!r}"
            ) from None
        if not (rate_limit > 0 and math.isfinite(rate_limit)):
            raise SettingsError(f"LAZADA_RATE_LIMIT must be a finite number above 0, got {rate!r}")
        read_timeout = _seconds(env, "LAZADA_READ_TIMEOUT", 30.0, 0.1, 600)
        lease = _seconds(env, "LAZADA_LEASE_SECONDS", max(90.0, 3 * read_timeout), 1, _DAY)
        if lease < read_timeout + 10:
            raise SettingsError(
                f"LAZADA_LEASE_SECONDS ({lease:g}) must exceed LAZADA_READ_TIMEOUT "
                f"({read_timeout:g}) by at least 10 s: a lease must outlast a whole API call"
            )
        return cls(
            database_url=database_url,
            broker_url=broker_url,
            api_url=_api_url(env),
            user_id=env.get("LAZADA_USER_ID") or None,
            api_key=_read_api_key(env),
            rate_limit=rate_limit,
            queue=_queue(env),
            image_deadline=_seconds(env, "LAZADA_IMAGE_DEADLINE", 900.0, 1, 7 * _DAY),
            poll_first=_seconds(env, "LAZADA_POLL_FIRST", 1.0, 0, 3600),
            poll_slack=_seconds(env, "LAZADA_POLL_SLACK", 4.5, 0, 3600),
            order_refresh_after=_seconds(env, "LAZADA_ORDER_REFRESH_AFTER", 900.0, 0, 30 * _DAY),
            order_sync_every=_seconds(env, "LAZADA_ORDER_SYNC_EVERY", 300.0, 0, _DAY),
            order_sync_lookback=_seconds(
                env, "LAZADA_ORDER_SYNC_LOOKBACK", 7 * _DAY, 60, 365 * _DAY
            ),
            order_callback=_task_name(env, "LAZADA_ORDER_CALLBACK"),
            redispatch_after=_seconds(env, "LAZADA_REDISPATCH_AFTER", 300.0, 1, _DAY),
            lease_seconds=lease,
            read_timeout=read_timeout,
            retry_ladder=_ladder(env),
            default_account=env.get("LAZADA_DEFAULT_ACCOUNT") or None,
            secret_key=env.get("LAZADA_SECRET_KEY") or None,
            secret_key_file=env.get("LAZADA_SECRET_KEY_FILE") or None,
            callback_queue=_queue(env, "LAZADA_CALLBACK_QUEUE", None),
            webhook_urls=_webhook_urls(env),
            webhook_secret=_webhook_secret(env),
            webhook_timeout=_seconds(env, "LAZADA_WEBHOOK_TIMEOUT", 10.0, 1, 300),
        )


EMBEDDED_BROKER_URL = f"{embedded.ALIAS}://"


def embedded_broker_folder(database_url: str) -> Path:
    """Where the embedded broker keeps its messages: beside a SQLite results database, or in
    the working directory for a server database."""
    url = make_url(database_url)
    folder = Path(".")
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        folder = Path(url.database).parent
    return (folder / "lazada-worker-broker").resolve()


def _check_database_url(value: str) -> None:
    try:
        url = make_url(value)
    except ArgumentError:
        raise SettingsError(
            f"DATABASE_URL is not a database URL: {mask_url(value)!r} "
            "(e.g. sqlite:///lazada-worker.sqlite3 or postgresql+psycopg://user@host/db)"
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingsError(
            f"DATABASE_URL: {url.get_backend_name()!r} is not supported; use sqlite or postgresql"
        )
    if url.get_backend_name() != "sqlite":
        return
    if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
        # Each process would have a database of its own, empty: the worker's rows and the
        # CLI's would never meet.
        raise SettingsError(
            f"DATABASE_URL {value!r} is an in-memory database, which no other process sees; "
            "give a file path, e.g. sqlite:///lazada-worker.sqlite3"
        )
    folder = Path(url.database).parent
    if not folder.is_dir():
        raise SettingsError(
            f"DATABASE_URL {value!r}: directory {str(folder)!r} does not exist; "
            "create it, or give a path in an existing directory"
        )


def _api_url(env: Mapping[str, str]) -> str | None:
    value = env.get("LAZADA_API_URL") or None
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (parsed on access)
    except ValueError as exc:
        raise SettingsError(f"LAZADA_API_URL is not a URL ({exc}): {mask_url(value)!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"LAZADA_API_URL must be an http(s) URL with a host, got {mask_url(value)!r}"
        )
    if parts.query or parts.fragment:
        raise SettingsError(
            "LAZADA_API_URL must not carry a query or fragment: the client signs its own"
        )
    return value


def _queue(env: Mapping[str, str], name: str = "LAZADA_QUEUE", default: Any = "lazada") -> Any:
    value = env.get(name) or default
    if value is not None and not _QUEUE_NAME.fullmatch(value):
        raise SettingsError(
            f"{name} must be a plain queue name (letters, digits, '-', '_', '.'; "
            f"at most 100, starting with a letter or digit), got {value!r}"
        )
    return value


def _task_name(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name) or None
    if value is not None and not _TASK_NAME.fullmatch(value):
        raise SettingsError(
            f"{name} must be a task name (letters, digits, '_', '.', ':', '-'), got {value!r}"
        )
    return value


def _webhook_urls(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("LAZADA_WEBHOOK_URLS") or ""
    urls = tuple(part.strip() for part in raw.split(",") if part.strip())
    for url in urls:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (parsed on access)
        except ValueError:
            parts = urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(
                "LAZADA_WEBHOOK_URLS must be comma-separated http(s) URLs with a host, "
                f"got {mask_url(url)!r}"
            )
    return urls


def _webhook_secret(env: Mapping[str, str]) -> str | None:
    """The signing secret, checked to be `whsec_` + base64 (it is never shown in a message)."""
    secret = env.get("LAZADA_WEBHOOK_SECRET") or None
    path = env.get("LAZADA_WEBHOOK_SECRET_FILE")
    if secret is None and path:
        try:
            secret = Path(path).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise SettingsError(
                f"LAZADA_WEBHOOK_SECRET_FILE {path!r} cannot be read ({exc.strerror})"
            ) from None
    if secret is None:
        if env.get("LAZADA_WEBHOOK_URLS", "").strip():
            raise SettingsError(
                "LAZADA_WEBHOOK_URLS is set but no signing secret: set LAZADA_WEBHOOK_SECRET "
                "or LAZADA_WEBHOOK_SECRET_FILE (whsec_ followed by base64)"
            )
        return None
    body = secret.removeprefix("whsec_")
    try:
        decoded = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not secret.startswith("whsec_") or len(decoded) < 16:
        raise SettingsError(
            "LAZADA_WEBHOOK_SECRET must be whsec_ followed by the base64 of at least 16 "
            "random bytes (e.g. whsec_$(openssl rand -base64 32))"
        )
    return secret


def _read_api_key(env: Mapping[str, str]) -> str | None:
    key = env.get("LAZADA_API_KEY")
    path = env.get("LAZADA_API_KEY_FILE")
    if key:
        return key
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(
            f"LAZADA_API_KEY_FILE {path!r} cannot be read ({exc.strerror})"
        ) from None
    if not text:
        raise SettingsError(f"LAZADA_API_KEY_FILE {path!r} is empty")
    return text


def _seconds(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # nan and inf included: every comparison with nan is False
        raise SettingsError(
            f"{name} must be a number of seconds from {low:g} to {high:g}, got {raw!r}"
        )
    return value


def _ladder(env: Mapping[str, str]) -> tuple[float, ...]:
    raw = env.get("LAZADA_RETRY_LADDER")
    if not raw:
        return Settings.retry_ladder
    try:
        ladder = tuple(float(part) for part in raw.split(","))
    except ValueError:
        ladder = ()
    if not ladder or not all(0 <= step <= 300 for step in ladder):  # nan fails both
        raise SettingsError(
            f"LAZADA_RETRY_LADDER must be comma-separated seconds (0 to 300), got {raw!r}"
        )
    return ladder
