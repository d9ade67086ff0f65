"""Each account's platform, made once per process and shared by a worker's threads.

Work rows name their account; a service asks `Platforms(name)` for its platform after it has
claimed a row, so the credentials used are that row's account's, never the environment's.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from worker.accounts import tokens
from worker.accounts.store import Account, get_account
from worker.db.audit import record_call
from worker.inputs import InvalidInput
from worker.platforms import (
    AccountParked,
    AuthorizationLostError,
    CallRecord,
    ImageJobStatus,
    ListedOrder,
    Order,
    OrderPage,
    Platform,
    RemovalOutcome,
    registry,
)
from worker.platforms.base import Connection, TokenIssuer, Tokens
from worker.ratelimit import RateLimiter, limiter_for
from worker.settings import Settings

# A changed account (a new key, new tokens, another rate) is seen within this many seconds.
ACCOUNT_TTL = 5.0

PlatformFor = Callable[[str], Platform]


def _audited(limiter: RateLimiter) -> Callable[[CallRecord], None]:
    """A client's after_call hook: the audit row, and the limiter slows down when throttled."""

    def after_call(record: CallRecord) -> None:
        record_call(record)
        limiter.observe(record)

    return after_call


def connection(settings: Settings, account: Account) -> Connection:
    """What the account's platform client needs: its endpoint and credentials, its calls under
    the account's rate limit and recorded in the audit."""
    if not account.secret:
        raise InvalidInput(
            f"account {account.name!r} has no {account.entry.secret.label}: remove it and add "
            "it again with `lazada-worker accounts add`"
        )
    limiter = limiter_for(settings, account.name, account.rate_limit)
    return Connection(
        account=account.name,
        api_url=account.api_url,
        credentials=account.credentials,
        secret=account.secret,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        before_call=limiter.acquire,
        after_call=_audited(limiter),
    )


def token_issuer(settings: Settings, account: Account) -> TokenIssuer:
    """The token endpoints of an account whose sellers authorize the app."""
    issuer = account.entry.issuer
    if issuer is None:
        raise InvalidInput(
            f"account {account.name!r} is a {account.platform} account: its sellers do not "
            "authorize the app"
        )
    return issuer(connection(settings, account))


def _tokens(settings: Settings, account: Account, platforms: Platforms) -> Tokens:
    name = account.name

    def access_token() -> str:
        token = platforms.account(name).access_token
        if not token:
            raise AuthorizationLostError(f"account {name!r} has no access token", action="call")
        return token

    def on_illegal_token(failed: str) -> str:
        # The token endpoints are reached once per token's life: a client for the refresh
        # alone, rather than a second connection pool kept beside the platform's for ever.
        platforms.forget_account(name)
        issuer = token_issuer(settings, account)
        try:
            return tokens.refresh(platforms.sessions, settings, name, issuer, failed)
        finally:
            issuer.close()

    return Tokens(access_token, on_illegal_token)


class _Parked:
    """The platform of an account that needs authorization: its limits, and no calls (L4):
    each call is parked by the attempt routine, nothing sent, nothing failed."""

    def __init__(self, platform: Platform, name: str) -> None:
        self.max_skus_per_call = platform.max_skus_per_call
        self.max_urls_per_call = platform.max_urls_per_call
        self.calls_per_order = platform.calls_per_order
        self._platform = platform
        self.orders_per_page = platform.orders_per_page
        self.ids_per_items_call = platform.ids_per_items_call
        self.order_statuses = platform.order_statuses
        self._name = name

    def _refuse(self, action: str) -> AccountParked:
        return AccountParked(
            f"account {self._name!r} needs authorization "
            f"(`lazada-worker accounts authorize {self._name}`)",
            action=action,
        )

    def remove_skus(self, skus: Sequence[str]) -> RemovalOutcome:
        raise self._refuse("remove")

    def get_order(self, order_id: int) -> Order:
        raise self._refuse("get order")

    def list_orders(
        self, after: datetime, before: datetime, offset: int, status: str | None = None
    ) -> OrderPage:
        raise self._refuse("list orders")

    def order_items(self, order_ids: Sequence[int]) -> Mapping[int, list[dict[str, Any]]]:
        raise self._refuse("order items")

    def listed_order(self, listed: ListedOrder, items: Sequence[Mapping[str, Any]] | None) -> Order:
        return self._platform.listed_order(listed, items)

    def submit_images(self, urls: Sequence[str]) -> str:
        raise self._refuse("submit images")

    def poll_images(self, request_id: str) -> ImageJobStatus:
        raise self._refuse("poll images")


def make_platform(settings: Settings, account: Account, platforms: Platforms) -> Platform:
    """The account's platform, its calls under the account's rate limit, audited; an account
    whose sellers authorize the app gets its tokens kept alive (worker.accounts.tokens)."""
    if account.platform not in registry.names():
        raise InvalidInput(
            f"account {account.name!r}: platform {account.platform!r} is not supported "
            f"(supported: {', '.join(registry.names())})"
        )
    entry = account.entry
    tokens = _tokens(settings, account, platforms) if entry.authorized_by_seller else None
    return entry.connect(connection(settings, account), tokens)


def _fingerprint(account: Account) -> str:
    """Tells two versions of an account apart without keeping their secrets in a key."""
    parts = (
        account.platform,
        account.api_url,
        *(f"{key}={value}" for key, value in sorted(account.credentials.items())),
        account.secret,
        account.state,
        str(account.rate_limit),
    )
    return hashlib.sha256("\x00".join(p or "" for p in parts).encode()).hexdigest()


class Platforms:
    """The process's platforms by account name, for the services (a `PlatformFor`)."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self.sessions = sessions
        self._settings = settings
        self._lock = threading.Lock()
        # By name: when it was read, the account, and its fingerprint (hashed once a read:
        # every call looks its platform up).
        self._accounts: dict[str | None, tuple[float, Account, str]] = {}
        self._platforms: dict[tuple[str, str], Platform] = {}

    def account(self, name: str | None) -> Account:
        """The named account (None: the default), read again after ACCOUNT_TTL seconds."""
        return self._read(name)[0]

    def _read(self, name: str | None) -> tuple[Account, str]:
        """The named account and its fingerprint, read again after ACCOUNT_TTL seconds."""
        now = time.monotonic()
        with self._lock:
            cached = self._accounts.get(name)
        if cached is not None and now - cached[0] < ACCOUNT_TTL:
            return cached[1], cached[2]
        with self.sessions() as session:
            account = get_account(session, self._settings, name)
        fingerprint = _fingerprint(account)
        with self._lock:
            self._accounts[name] = (now, account, fingerprint)
        return account, fingerprint

    def __call__(self, name: str) -> Platform:
        account, fingerprint = self._read(name)
        key = (account.name, fingerprint)
        with self._lock:
            platform = self._platforms.get(key)
        if platform is None:
            platform = make_platform(self._settings, account, self)
            if account.state == "needs_authorization":
                platform = _Parked(platform, account.name)
            with self._lock:
                platform = self._platforms.setdefault(key, platform)
        return platform

    def forget_account(self, name: str) -> None:
        """Read the account again on next use (its tokens or state just changed)."""
        with self._lock:
            self._accounts.pop(name, None)

    def forget(self) -> None:
        with self._lock:
            self._accounts.clear()
            self._platforms.clear()


_registry_lock = threading.Lock()
_registry: dict[str, Platforms] = {}


def platforms(sessions: sessionmaker[Session], settings: Settings) -> Platforms:
    """The process's `Platforms` for the settings' database, made on first use."""
    with _registry_lock:
        found = _registry.get(settings.database_url)
        if found is None:
            found = _registry[settings.database_url] = Platforms(sessions, settings)
        return found


def forget_platforms() -> None:
    """Drop inherited clients in a forked child: their sockets belong to the parent."""
    with _registry_lock:
        for found in _registry.values():
            found.forget()
        _registry.clear()
