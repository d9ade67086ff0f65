"""Tokens of the accounts whose sellers authorize the app (the Open Platform), kept alive by
the worker (L3, L4).

Refresh tokens rotate: a refresh may make the old one invalid at once, so one worker at a time
refreshes an account. It takes the account row's `refreshing_until` lease with a conditional
UPDATE reckoned on the database's clock (workers' machines need not agree on the time), makes
the call outside any transaction, and stores the new pair (encrypted) before anything uses it,
only if the account still holds the refresh token the call used (an operator's `accounts
authorize` meanwhile is newer, and kept). A worker that finds the lease taken is told to come
back (a deferral, no held thread). A refresh refused for good (IllegalRefreshToken, an expired
refresh token) marks the account `needs_authorization`: its work is parked until `accounts
authorize`.

A pair the server issued can still be lost: its answer may never arrive, or not be readable,
or the worker may die or lose its database before storing it; the refresh token it replaced
is then dead. Nothing can get such a pair back, so the account's `refresh_unsettled` is set
before each call and cleared when a pair is stored or the API refuses the call. When the
refresh token is refused while it is set, the account is parked saying what happened.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from worker.accounts.secrets import secret_box
from worker.accounts.store import Account, get_account, mark_needs_authorization, store_tokens
from worker.db.engine import core_transaction, database_now
from worker.db.heartbeats import stale_holders
from worker.db.leases import holder
from worker.db.models import Account as AccountRow
from worker.db.models import table_of
from worker.platforms import AccountParked, ApiError, AuthorizationLostError, registry
from worker.platforms.base import TokenIssuer
from worker.platforms.errors import TransportError
from worker.platforms.models import TokenGrant
from worker.ratelimit import RateLimited
from worker.settings import Settings

log = logging.getLogger(__name__)

REFRESH_LEASE = 60.0  # seconds: a refresh call's timeouts and more; a dead refresher's lapses
# L3: refresh ahead of expiry when less than this share of the access token's life is left.
REFRESH_AHEAD = 0.25
COME_BACK = 1.0  # seconds a caller waits for another worker's refresh (a deferral)
# A new pair the database failed to take is written again after these pauses (seconds): the
# refresh token it replaced is dead, so it is the only pair left.
STORE_AGAIN_AFTER = (0.5, 1.0, 2.0, 4.0)

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
    lease = _take_lease(sessions, name)
    if lease is None:
        raise RateLimited("/auth/token/refresh", COME_BACK)  # another worker is refreshing
    account: Account | None = None
    sent: _Sent | None = None
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
        sent = _mark_sent(sessions, name)
        grant = client.refresh_token(account.refresh_token)
    except AuthorizationLostError as exc:
        return _refused(sessions, settings, name, lease, account, sent, exc)
    except ApiError as exc:
        with core_transaction(sessions) as connection:
            if sent is not None:
                _settle(connection, name, sent, _unsettled_story(sent, exc))
            _release(connection, name, lease)
        if isinstance(exc, TransportError) and getattr(exc, "http_status", None) == 200:
            log.warning(
                "account %s: the token refresh was answered, but the answer holds no pair that "
                "can be read: the server may have rotated the refresh token. The next refresh "
                "tells: if it is refused, the account is parked and must be authorized again "
                "(`lazada-worker accounts authorize %s`)",
                name,
                name,
                extra={"account": name, "outcome": "unreadable"},
            )
        raise
    except BaseException:
        with core_transaction(sessions) as connection:
            _release(connection, name, lease)
        raise
    stored = _store_refreshed(sessions, settings, name, grant, lease, account.refresh_token, sent)
    if stored.access_token != grant.access_token:
        log.info(
            "account %s: tokens stored meanwhile (an authorization) kept over the refreshed ones",
            name,
            extra={"account": name, "outcome": "kept"},
        )
    else:
        log.info(
            "account %s: tokens refreshed", name, extra={"account": name, "outcome": "refreshed"}
        )
    assert stored.access_token is not None  # a pair was stored, this one or a newer one
    return stored.access_token


@dataclass
class _Sent:
    """A refresh call about to be sent: when, and whether it set the account's
    `refresh_unsettled` (`story`) or found an earlier refresh's there (`earlier`)."""

    at: datetime
    story: str | None = None
    earlier: str | None = None

    @property
    def when(self) -> str:
        return f"a token refresh sent at {self.at:%Y-%m-%d %H:%M:%S} UTC"


def _mark_sent(sessions: sessionmaker[Session], name: str) -> _Sent:
    """Record, before the call, that a refresh is under way with the stored refresh token; if
    its worker dies or loses the database before the answer is stored, this is what is known.
    An earlier unsettled refresh's record is kept: that is the refresh that may have rotated
    the token."""
    with core_transaction(sessions) as connection:
        at = database_now(connection)
        sent = _Sent(at)
        story = (
            f"{sent.when} has no recorded outcome (its worker stopped, or lost its database, "
            "before the answer was stored)"
        )
        marked = connection.execute(
            update(_accounts)
            .where(_accounts.c.name == name, _accounts.c.refresh_unsettled.is_(None))
            .values(refresh_unsettled=story)
        ).rowcount
        if marked == 1:
            sent.story = story
        else:
            sent.earlier = connection.execute(
                select(_accounts.c.refresh_unsettled).where(_accounts.c.name == name)
            ).scalar_one()
    return sent


def _unsettled_story(sent: _Sent, exc: BaseException) -> str | None:
    """What is known of a refresh that ended with `exc`; None if the server surely did not
    rotate the refresh token (it answered an error, or nothing was sent)."""
    if isinstance(exc, TransportError):
        # An answer with HTTP 200 that is no token pair (not JSON, no token in it) came from
        # the token endpoint: the pair may well have been issued, and it cannot be read.
        if getattr(exc, "http_status", None) == 200:
            return f"{sent.when} was answered but the answer could not be read ({exc})"
        return f"{sent.when} got no answer ({exc})"
    if isinstance(exc, ApiError):
        return None
    # The text of a database error may quote the statement's parameters: its kind only.
    return f"{sent.when} was answered, but the new pair could not be stored ({type(exc).__name__})"


def _settle(connection: Connection, name: str, sent: _Sent, story: str | None) -> None:
    """Put what is now known of this refresh in the record it set (if it set one)."""
    if sent.story is None:
        return
    connection.execute(
        update(_accounts)
        .where(_accounts.c.name == name, _accounts.c.refresh_unsettled == sent.story)
        .values(refresh_unsettled=story)
    )


def _refused(
    sessions: sessionmaker[Session],
    settings: Settings,
    name: str,
    lease: datetime,
    account: Account | None,
    sent: _Sent | None,
    exc: AuthorizationLostError,
) -> str:
    """The refresh was refused for good (or the account is parked already: raised as is).

    An operator's `accounts authorize` may have stored a new pair while the call was made with
    the old one (the refusal's cause): the account is marked only if it still holds the
    refresh token used, and the new pair serves. When an earlier refresh with that token never
    had its pair stored, the mark says so: that refresh most likely rotated it."""
    used = None if isinstance(exc, AccountParked) or account is None else account.refresh_token
    with core_transaction(sessions) as connection:
        if used is not None:
            held = _held_refresh_token(connection, settings, name)
            if held is not None and held[1] == used:
                reason = str(exc)
                if sent is not None and sent.earlier is not None:
                    reason = (
                        f"{sent.earlier}; the refresh token it used is now refused ({exc}): the "
                        "server most likely rotated it in that refresh, and the new pair it "
                        "issued was lost"
                    )
                mark_needs_authorization(
                    connection,
                    name,
                    reason,
                    datetime.now(UTC),
                    _accounts.c.refresh_token == held[0],
                )
        if sent is not None:
            _settle(connection, name, sent, None)  # answered: this call rotated nothing
        _release(connection, name, lease)
    if used is not None:
        with sessions() as session:
            stored = get_account(session, settings, name)
        if stored.state == "ready" and stored.refresh_token != used:
            assert stored.access_token is not None  # stored with its refresh token
            return stored.access_token
        # Marked here, under the check above: raised as parked, so that the caller does not
        # mark it again, unchecked, over an authorization stored since.
        raise AccountParked(exc.message, action=exc.action, code=exc.code) from None
    raise exc


def _held_refresh_token(
    connection: Connection, settings: Settings, name: str
) -> tuple[str, str] | None:
    """The account's refresh token as stored (ciphertext) and in clear; None if it has none."""
    held = connection.execute(
        select(_accounts.c.refresh_token).where(_accounts.c.name == name).with_for_update()
    ).scalar_one_or_none()
    if held is None:
        return None
    return held, secret_box(settings).decrypt(held, f"the refresh token of account {name!r}")


def _store_refreshed(
    sessions: sessionmaker[Session],
    settings: Settings,
    name: str,
    grant: TokenGrant,
    lease: datetime,
    used: str,
    sent: _Sent,
) -> Account:
    """Store a refresh's pair (the account's stored pair, if a newer one was stored meanwhile).
    The refresh token used is dead: a database that fails to take the pair is tried again a
    few times; if it still fails, the refresh's record says the pair was lost."""
    for pause in (*STORE_AGAIN_AFTER, None):
        try:
            stored = _store(sessions, settings, name, grant, lease, used)
        except SQLAlchemyError as exc:
            if pause is None:
                log.error(
                    "account %s: a refreshed token pair could not be stored (%s): the refresh "
                    "token it replaced is dead; if the next refresh is refused, the account "
                    "must be authorized again (`lazada-worker accounts authorize %s`)",
                    name,
                    type(exc).__name__,
                    name,
                    extra={"account": name, "outcome": "lost"},
                )
                try:
                    with core_transaction(sessions) as connection:
                        _settle(connection, name, sent, _unsettled_story(sent, exc))
                        _release(connection, name, lease)
                except SQLAlchemyError:
                    pass  # the record set before the call stays: it says as much
                raise
            log.warning(
                "account %s: storing a refreshed token pair failed (%s); trying again",
                name,
                type(exc).__name__,
                extra={"account": name, "outcome": "retried"},
            )
            time.sleep(pause)
            continue
        if stored is not None:
            return stored
        break
    # An operator's authorization stored a newer pair meanwhile: it is kept, this one dropped.
    with sessions() as session:
        return get_account(session, settings, name)


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
) -> Account:
    """Store an operator's new token pair (encrypted), the account ready. A refresh under way
    keeps its own lease, and will not store its pair over this one."""
    account = _store(sessions, settings, name, grant, None, None)
    assert account is not None  # stored whatever the account held
    return account


def _store(
    sessions: sessionmaker[Session],
    settings: Settings,
    name: str,
    grant: TokenGrant,
    lease: datetime | None,
    replacing: str | None,
) -> Account | None:
    """Store a pair and let go of the refresh `lease` that made it, if one did, in one
    transaction. A refresh's pair is stored only while the account holds `replacing`, the
    refresh token that refresh used (None when it no longer does). Lifetimes count from the
    database's clock, as the refresh schedule does."""
    with sessions.begin() as session:
        now = database_now(session.connection())
        account = store_tokens(
            session,
            settings,
            name,
            grant.access_token,
            grant.refresh_token,
            now + timedelta(seconds=grant.expires_in),
            now + timedelta(seconds=grant.refresh_expires_in),
            seller_id=grant.seller_id or None,
            stored_at=now,
            replacing=replacing,
        )
        if lease is not None:
            _release(session.connection(), name, lease)
    return account


def due_for_refresh(sessions: sessionmaker[Session], settings: Settings) -> list[str]:
    """The ready accounts (of platforms whose sellers authorize the app) whose access token
    has less than REFRESH_AHEAD of its life left (its life: from when it was stored to when it
    expires), on the database's clock."""
    stored_at = func.coalesce(_accounts.c.tokens_stored_at, _accounts.c.updated_at)
    with core_transaction(sessions) as connection:
        now = database_now(connection)
        rows = connection.execute(
            select(
                _accounts.c.name,
                stored_at.label("stored_at"),
                _accounts.c.access_expires_at,
            ).where(
                _accounts.c.platform.in_(_authorized_by_seller()),
                _accounts.c.state == "ready",
                _accounts.c.access_expires_at.is_not(None),
            )
        ).all()
    due = []
    for name, stored, expires_at in rows:
        life = (expires_at - stored).total_seconds()
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


def _take_lease(sessions: sessionmaker[Session], name: str) -> datetime | None:
    """The account's refresh lease, taken when free or lapsed: its end, which tells this
    holder's lease from the next one's (None: another worker holds it). Reckoned on the
    database's clock: a worker whose machine's clock runs ahead would see a live lease as
    lapsed, and refresh alongside its holder with the same rotating refresh token."""
    with core_transaction(sessions) as connection:
        now = database_now(connection)
        until = now + timedelta(seconds=REFRESH_LEASE)
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
