"""Tokens of the accounts whose sellers authorize the app (the Open Platform), kept alive by
the worker (L3, L4).

Refresh tokens rotate: a refresh may make the old one invalid at once, so one worker at a time
refreshes an account. It takes the account row's `refreshing_until` lease with a conditional
UPDATE, makes the call outside any transaction, and stores the new pair (encrypted) before
anything uses it; a worker that finds the lease taken is told to come back (a deferral, no
held thread). A refresh refused for good (IllegalRefreshToken, an expired refresh token)
marks the account `needs_authorization`: its work is parked until `accounts authorize`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.accounts.store import Account, get_account, mark_needs_authorization, store_tokens
from worker.db.engine import core_transaction
from worker.db.heartbeats import stale_holders
from worker.db.leases import holder
from worker.db.models import Account as AccountRow
from worker.db.models import table_of
from worker.platforms import AccountParked, AuthorizationLostError, registry
from worker.platforms.base import TokenIssuer
from worker.platforms.models import TokenGrant
from worker.ratelimit import RateLimited
from worker.settings import Settings

log = logging.getLogger(__name__)

REFRESH_LEASE = 60.0  # seconds: a refresh call's timeouts and more; a dead refresher's lapses
# L3: refresh ahead of expiry when less than this share of the access token's life is left.
REFRESH_AHEAD = 0.25
COME_BACK = 1.0  # seconds a caller waits for another worker's refresh (a deferral)

_accounts = table_of(AccountRow)


def refresh(
    sessions: sessionmaker[Session],
    settings: Settings,
    name: str,
    client: TokenIssuer,
    failed_token: str | None = None,
) -> str:
    """A fresh access token for the account: its stored one when another worker has refreshed
    since `failed_token` was read, else a new pair from the auth URL, stored first."""
    newer = _newer_token(_read(sessions, settings, name), failed_token)
    if newer is not None:
        return newer
    lease = _take_lease(sessions, name, datetime.now(UTC))
    if lease is None:
        raise RateLimited("/auth/token/refresh", COME_BACK)  # another worker is refreshing
    account: Account | None = None
    try:
        # Read again under the lease: another worker may have refreshed, stored and let go
        # since the read above, and its refresh made the refresh token read then invalid.
        account = _read(sessions, settings, name)
        newer = _newer_token(account, failed_token)
        if newer is not None:
            with core_transaction(sessions) as connection:
                _release(connection, name, lease)
            return newer
        if not account.refresh_token:
            raise AuthorizationLostError(f"account {name!r} has no refresh token", action="token")
        grant = client.refresh_token(account.refresh_token)
    except AuthorizationLostError as exc:
        # Parked already: marked once. An operator's `accounts authorize` may have stored a
        # new pair while this call was made with the old one (the refusal's cause): the
        # account is marked only if its tokens are still the ones read, and the new ones serve.
        read = None if isinstance(exc, AccountParked) else account
        with core_transaction(sessions) as connection:
            if read is not None:
                same_tokens = _accounts.c.access_expires_at == read.access_expires_at
                mark_needs_authorization(connection, name, str(exc), datetime.now(UTC), same_tokens)
            _release(connection, name, lease)
        if read is not None:
            with sessions() as session:
                stored = get_account(session, settings, name)
            if stored.state == "ready" and stored.access_expires_at != read.access_expires_at:
                assert stored.access_token is not None  # stored with its expiry
                return stored.access_token
        raise
    except BaseException:
        with core_transaction(sessions) as connection:
            _release(connection, name, lease)
        raise
    store_grant(sessions, settings, name, grant, lease)
    log.info("account %s: tokens refreshed", name, extra={"account": name, "outcome": "refreshed"})
    return grant.access_token


def _read(sessions: sessionmaker[Session], settings: Settings, name: str) -> Account:
    """The stored account; AccountParked when it needs authorization."""
    with sessions() as session:
        account = get_account(session, settings, name)
    if account.state == "needs_authorization":
        raise AccountParked(f"account {name!r} needs authorization", action="token")
    return account


def _newer_token(account: Account, failed_token: str | None) -> str | None:
    """The access token another worker stored since `failed_token` was read, if one did."""
    if failed_token is None or account.access_token in (None, failed_token):
        return None
    return account.access_token


def store_grant(
    sessions: sessionmaker[Session],
    settings: Settings,
    name: str,
    grant: TokenGrant,
    lease: datetime | None = None,
) -> Account:
    """Store a new token pair (encrypted), the account ready, and let go of the refresh
    `lease` that made it, if one did (an operator's authorization holds none, and leaves a
    refresh under way its own lease)."""
    now = datetime.now(UTC)
    with sessions.begin() as session:
        account = store_tokens(
            session,
            settings,
            name,
            grant.access_token,
            grant.refresh_token,
            now + timedelta(seconds=grant.expires_in),
            now + timedelta(seconds=grant.refresh_expires_in),
            seller_id=grant.seller_id or None,
        )
        if lease is not None:
            _release(session.connection(), name, lease)
    return account


def due_for_refresh(sessions: sessionmaker[Session], settings: Settings) -> list[str]:
    """The ready accounts (of platforms whose sellers authorize the app) whose access token
    has less than REFRESH_AHEAD of its life left (its life: from when it was stored to when it
    expires)."""
    now = datetime.now(UTC)
    with sessions() as session:
        rows = session.execute(
            select(_accounts.c.name, _accounts.c.updated_at, _accounts.c.access_expires_at).where(
                _accounts.c.platform.in_(_authorized_by_seller()),
                _accounts.c.state == "ready",
                _accounts.c.access_expires_at.is_not(None),
            )
        ).all()
    due = []
    for name, stored_at, expires_at in rows:
        life = (expires_at - stored_at).total_seconds()
        if (expires_at - now).total_seconds() < REFRESH_AHEAD * max(life, 0.0):
            due.append(name)
    return due


def refresh_due(
    sessions: sessionmaker[Session], settings: Settings, client_for: Callable[[str], TokenIssuer]
) -> list[str]:
    """Beat's refresh: every due account once; returns those refreshed. One that another
    worker is refreshing, or whose refresh fails for now, is tried again on the next beat."""
    refreshed = []
    for name in due_for_refresh(sessions, settings):
        try:
            refresh(sessions, settings, name, client_for(name))
        except RateLimited:
            continue
        except AuthorizationLostError:
            continue  # marked; its work is parked
        except Exception:
            log.exception("account %s: the token refresh failed; tried again later", name)
            continue
        refreshed.append(name)
    return refreshed


def _take_lease(sessions: sessionmaker[Session], name: str, now: datetime) -> datetime | None:
    """The account's refresh lease, taken when free or lapsed: its end, which tells this
    holder's lease from the next one's (None: another worker holds it)."""
    until = now + timedelta(seconds=REFRESH_LEASE)
    with core_transaction(sessions) as connection:
        taken = (
            connection.execute(
                update(_accounts)
                .where(
                    _accounts.c.name == name,
                    or_(
                        _accounts.c.refreshing_until.is_(None),
                        _accounts.c.refreshing_until < now,
                        # its holder stopped beating: killed mid-refresh, the lease is void
                        _accounts.c.refreshing_by.in_(stale_holders()),
                    ),
                )
                .values(refreshing_until=until, refreshing_by=holder())
            ).rowcount
            == 1
        )
    return until if taken else None


def _release(connection: Connection, name: str, lease: datetime) -> None:
    """Let go of `lease` if it is still the account's: a holder whose lease lapsed (a refresh
    slower than REFRESH_LEASE) must not clear the next holder's, or a third worker could
    refresh alongside it with the same rotating refresh token, and one of them be refused."""
    connection.execute(
        update(_accounts)
        .where(_accounts.c.name == name, _accounts.c.refreshing_until == lease)
        .values(refreshing_until=None)
    )


def _authorized_by_seller() -> list[str]:
    return [entry.name for entry in registry.registered() if entry.authorized_by_seller]
