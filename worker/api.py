"""Each account's platform, made once per process and shared by a worker's threads.

Work rows name their account; a service asks `Platforms.for_account(name)` after it has
claimed a row, so the credentials used are that row's account's, never the environment's.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from worker.accounts import Account, get_account
from worker.audit import record_call
from worker.inputs import InvalidInput
from worker.platforms import CallRecord, Platform
from worker.ratelimit import limiter_for
from worker.sellercenter import SellerCenterClient, SellerCenterPlatform
from worker.settings import Settings

# A changed account (a new key, new tokens, another rate) is seen within this many seconds.
ACCOUNT_TTL = 5.0

PlatformFor = Callable[[str], Platform]


def _sellercenter(settings: Settings, account: Account) -> Platform:
    if not (account.user_id and account.api_key):
        raise InvalidInput(f"account {account.name!r} has no UserID or API key")
    limiter = limiter_for(settings, account.name, account.rate_limit)

    def after_call(record: CallRecord) -> None:
        record_call(record)
        limiter.observe(record)

    client = SellerCenterClient(
        account.api_url,
        account.user_id,
        account.api_key,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        before_call=limiter.acquire,
        after_call=after_call,
    )
    return SellerCenterPlatform(client)


# An account's `platform` -> how to make its Platform: a new platform adds one entry.
FACTORIES: dict[str, Callable[[Settings, Account], Platform]] = {"sellercenter": _sellercenter}


def make_platform(settings: Settings, account: Account) -> Platform:
    factory = FACTORIES.get(account.platform)
    if factory is None:
        raise InvalidInput(
            f"account {account.name!r}: platform {account.platform!r} is not supported "
            f"(supported: {', '.join(sorted(FACTORIES))})"
        )
    return factory(settings, account)


def _fingerprint(account: Account) -> str:
    """Tells two versions of an account apart without keeping their secrets in a key."""
    parts = (
        account.platform,
        account.api_url,
        account.user_id,
        account.api_key,
        account.app_key,
        account.app_secret,
        account.access_token,
        str(account.rate_limit),
    )
    return hashlib.sha256("\x00".join(p or "" for p in parts).encode()).hexdigest()


class Platforms:
    """The process's platforms by account name, for the services (a `PlatformFor`)."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
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
        with self._sessions() as session:
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
            platform = make_platform(self._settings, account)
            with self._lock:
                platform = self._platforms.setdefault(key, platform)
        return platform

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
