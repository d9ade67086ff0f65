"""Each account's platform, made once per process and shared by a worker's threads.

Work rows name their account; a service asks `Platforms.for_account(name)` after it has
claimed a row, so the credentials used are that row's account's, never the environment's.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session, sessionmaker

from worker.accounts.store import LAZOP_AUTH_URL, Account, get_account
from worker.db.audit import record_call
from worker.inputs import InvalidInput
from worker.platforms import (
    AccountParked,
    AuthorizationLostError,
    CallRecord,
    ImageJobStatus,
    Order,
    Platform,
    RemovalOutcome,
)
from worker.platforms.lazop.client import LazopClient
from worker.platforms.lazop.platform import LazopPlatform
from worker.platforms.sellercenter import SellerCenterClient, SellerCenterPlatform
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


def _sellercenter(settings: Settings, account: Account, platforms: Platforms) -> Platform:
    if not (account.user_id and account.api_key):
        raise InvalidInput(f"account {account.name!r} has no UserID or API key")
    limiter = limiter_for(settings, account.name, account.rate_limit)
    client = SellerCenterClient(
        account.api_url,
        account.user_id,
        account.api_key,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        before_call=limiter.acquire,
        after_call=_audited(limiter),
    )
    return SellerCenterPlatform(client)


def lazop_client(settings: Settings, account: Account) -> LazopClient:
    """A LAZOP client for the account's app, its calls under the account's rate limit."""
    if not (account.app_key and account.app_secret):
        raise InvalidInput(f"account {account.name!r} has no app key or app secret")
    limiter = limiter_for(settings, account.name, account.rate_limit)
    return LazopClient(
        account.api_url,
        account.app_key,
        account.app_secret,
        auth_url=account.auth_url or LAZOP_AUTH_URL,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        before_call=limiter.acquire,
        after_call=_audited(limiter),
    )


def _lazop(settings: Settings, account: Account, platforms: Platforms) -> Platform:
    from worker.accounts import tokens

    client = lazop_client(settings, account)
    name = account.name

    def access_token() -> str:
        token = platforms.account(name).access_token
        if not token:
            raise AuthorizationLostError(f"account {name!r} has no access token", action="call")
        return token

    def on_illegal_token(failed: str) -> str:
        platforms.forget_account(name)
        return tokens.refresh(platforms.sessions, settings, name, client, failed)

    return LazopPlatform(client, access_token, on_illegal_token)


# An account's `platform` -> how to make its Platform: a new platform adds one entry.
FACTORIES: dict[str, Callable[[Settings, Account, Platforms], Platform]] = {
    "sellercenter": _sellercenter,
    "lazop": _lazop,
}


class _Parked:
    """The platform of an account that needs authorization: its limits, and no calls (L4):
    each call is parked by the attempt routine, nothing sent, nothing failed."""

    def __init__(self, platform: Platform, name: str) -> None:
        self.max_skus_per_call = platform.max_skus_per_call
        self.max_urls_per_call = platform.max_urls_per_call
        self.calls_per_order = platform.calls_per_order
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

    def submit_images(self, urls: Sequence[str]) -> str:
        raise self._refuse("submit images")

    def poll_images(self, request_id: str) -> ImageJobStatus:
        raise self._refuse("poll images")


def make_platform(settings: Settings, account: Account, platforms: Platforms) -> Platform:
    factory = FACTORIES.get(account.platform)
    if factory is None:
        raise InvalidInput(
            f"account {account.name!r}: platform {account.platform!r} is not supported "
            f"(supported: {', '.join(sorted(FACTORIES))})"
        )
    return factory(settings, account, platforms)


def _fingerprint(account: Account) -> str:
    """Tells two versions of an account apart without keeping their secrets in a key."""
    parts = (
        account.platform,
        account.api_url,
        account.auth_url,
        account.user_id,
        account.api_key,
        account.app_key,
        account.app_secret,
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
        self._accounts: dict[str | None, tuple[float, Account]] = {}
        self._platforms: dict[tuple[str, str], Platform] = {}

    def account(self, name: str | None) -> Account:
        """The named account (None: the default), read again after ACCOUNT_TTL seconds."""
        now = time.monotonic()
        with self._lock:
            cached = self._accounts.get(name)
        if cached is not None and now - cached[0] < ACCOUNT_TTL:
            return cached[1]
        with self.sessions() as session:
            account = get_account(session, self._settings, name)
        with self._lock:
            self._accounts[name] = (now, account)
        return account

    def __call__(self, name: str) -> Platform:
        account = self.account(name)
        key = (account.name, _fingerprint(account))
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
