"""Seller accounts: the stored ones (table `accounts`) and the environment's legacy account.

Work is done for an account: its platform, endpoint, credentials and rate limit come from here,
never from the environment deep in the call stack. The environment's `LAZADA_API_URL`,
`LAZADA_USER_ID` and `LAZADA_API_KEY[_FILE]` define one `sellercenter` account named by its
UserID, the way a single-account deployment configures it; it is not a row, because its key
lives in the environment. Stored secrets are encrypted (worker.accounts.secrets) and decrypted
only into `Account`, whose secret fields are kept out of its repr.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, Connection, bindparam, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import ScalarSelect

from worker.accounts.secrets import secret_box
from worker.db.audit import record_failure
from worker.db.engine import database_now
from worker.db.models import Account as AccountRow
from worker.db.models import ImageJob, Order, RateLimit, RemovalBatch, table_of
from worker.inputs import InvalidInput
from worker.outbox.events import record_event
from worker.platforms import registry
from worker.platforms.base import PlatformEntry
from worker.platforms.sellercenter.entry import SELLERCENTER
from worker.settings import Settings
from worker.urls import mask_url

STATES = ("ready", "needs_authorization")
NAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")
EXPIRING_WITHIN = timedelta(days=7)  # L4: warn while the refresh token has less left
_HOW_TO_LIST = "see `lazada-worker accounts list`, or add it with `lazada-worker accounts add`"


_accounts = table_of(AccountRow)
log = logging.getLogger(__name__)


class UnknownAccount(InvalidInput):
    """Work or a command named an account that is neither stored nor the environment's."""


@dataclass(frozen=True)
class Account:
    """One seller account, secrets in clear (never in repr): what a platform client needs.

    `credentials` holds the platform's credentials other than its secret (a legacy account's
    UserID, an Open Platform account's app key, country and auth URL: the platform's entry in
    worker.platforms.registry names them); `secret` is the one that signs requests.
    """

    name: str
    platform: str
    api_url: str
    rate_limit: float  # calls per second, LAZADA_RATE_LIMIT unless the account sets one
    credentials: Mapping[str, str] = field(default_factory=dict)
    secret: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    seller_id: str | None = None
    state: str = "ready"
    created_at: datetime | None = None
    source: Literal["stored", "environment"] = "stored"

    @property
    def entry(self) -> PlatformEntry:
        """The account's platform, as the registry describes it."""
        return registry.entry(self.platform)


# --- reading ------------------------------------------------------------------------------


def get_account(session: Session, settings: Settings, name: str | None) -> Account:
    """The named account, or the default one when `name` is None (contract "Accounts"):
    LAZADA_DEFAULT_ACCOUNT, else the environment's account, else the single stored one."""
    if name is None and settings.default_account is not None:
        return _named_default(session, settings, settings.default_account)
    if name is None:
        environment = environment_account(settings)
        if environment is not None:
            return environment
        names = list(session.scalars(select(AccountRow.name).limit(2)))
        if len(names) == 1:
            name = names[0]
        elif not names:
            raise InvalidInput(
                "no account: set LAZADA_API_URL, LAZADA_USER_ID and LAZADA_API_KEY, or add one "
                "with `lazada-worker accounts add` (or run `lazada-worker demo`)"
            )
        else:
            raise InvalidInput(
                "several accounts are stored and none is the default: name one "
                "(--account NAME, or the task's `account`) or set LAZADA_DEFAULT_ACCOUNT"
            )
    if not isinstance(name, str):
        raise InvalidInput(
            f"account must be a string (an account's name), got {type(name).__name__}"
        )
    environment = environment_account(settings)
    if environment is not None and name == environment.name:
        return environment
    row = _row(session, name)
    if row is None:
        raise UnknownAccount(f"no account named {name[:80]!r}: {_HOW_TO_LIST}")
    return _account(row, settings)


def _named_default(session: Session, settings: Settings, name: str) -> Account:
    try:
        return get_account(session, settings, name)
    except UnknownAccount:
        raise UnknownAccount(
            f"LAZADA_DEFAULT_ACCOUNT names no account ({name[:80]!r}): {_HOW_TO_LIST}"
        ) from None


def list_accounts(session: Session, settings: Settings) -> list[Account]:
    """Every account: the environment's first (when set), then the stored ones by name."""
    rows = session.scalars(select(AccountRow).order_by(AccountRow.name))
    stored = [_account(row, settings) for row in rows]
    environment = environment_account(settings)
    return [environment, *stored] if environment is not None else stored


def environment_account(settings: Settings) -> Account | None:
    """The legacy account of LAZADA_API_URL, LAZADA_USER_ID and LAZADA_API_KEY[_FILE], named
    by its UserID; None when none of them is set, a SettingsError naming the missing ones
    when only some are."""
    if not (settings.api_url or settings.user_id or settings.api_key):
        return None
    api_url, user_id, api_key = settings.require_api()
    return Account(
        name=user_id,
        platform=SELLERCENTER.name,
        api_url=api_url,
        rate_limit=settings.rate_limit,
        credentials={"user_id": user_id},
        secret=api_key,
        source="environment",
    )


def account_document(account: Account, now: datetime | None = None) -> dict[str, Any]:
    """The contract's Account document; secrets only as "set" or "missing". `credentials`
    holds every credential of the platform but its secret; `user_id`, `country` and
    `auth_url` repeat the shipped platforms' ones at the top level, as the contract has them.
    Every URL in it is masked (`mask_url`): the document is printed and sent in events."""
    now = now or datetime.now(UTC)
    state = account.state
    if (
        state == "ready"
        and account.refresh_expires_at is not None
        and account.refresh_expires_at - now < EXPIRING_WITHIN
    ):
        state = "expiring"
    credentials = {
        name: mask_url(value) if name.endswith("_url") and isinstance(value, str) else value
        for name, value in account.credentials.items()
    }
    return {
        "name": account.name,
        "platform": account.platform,
        "api_url": mask_url(account.api_url),
        "auth_url": credentials.get("auth_url"),
        "country": credentials.get("country"),
        "user_id": credentials.get("user_id"),
        "credentials": credentials,
        "seller_id": account.seller_id,
        "rate_limit": account.rate_limit,
        "state": state,
        "access_expires_at": _iso(account.access_expires_at),
        "refresh_expires_at": _iso(account.refresh_expires_at),
        "secret": "set" if account.secret else "missing",
        "created_at": _iso(account.created_at),
        "source": account.source,
    }


# --- writing ------------------------------------------------------------------------------


def add_account(
    session: Session,
    settings: Settings,
    name: str,
    platform: str,
    credentials: Mapping[str, Any],
    api_url: str | None = None,
    rate_limit: float | None = None,
) -> Account:
    """Store an account of a registered platform (flushed; the caller commits).

    `credentials` holds the values of the platform's credentials by name, its secret among
    them (encrypted before it is stored); an account of a platform whose sellers authorize the
    app starts as needing authorization."""
    if not isinstance(platform, str) or platform not in registry.names():
        raise InvalidInput(
            f"platform {str(platform)[:40]!r} is not supported: use one of "
            f"{', '.join(registry.names())}"
        )
    entry = registry.entry(platform)
    unknown = sorted(set(credentials) - {c.name for c in entry.credentials})
    if unknown:
        raise InvalidInput(f"{', '.join(unknown)}: not a credential of {platform} accounts")
    given: dict[str, str] = {}
    for credential in entry.credentials:
        value = credentials.get(credential.name)
        if value is None:
            if credential.required:
                raise InvalidInput(f"the {credential.label} is required for {platform} accounts")
            continue
        if credential.secret:
            given[credential.name] = _clean_secret(value, credential.label)
        elif credential.url:
            given[credential.name] = clean_url(value, credential.label)
        else:
            given[credential.name] = _clean_text(value, credential.label)
    secret = given.pop(entry.secret.name)
    try:
        settled_url, settled = entry.settle(
            None if api_url is None else clean_url(api_url, "API URL"), given
        )
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    row = AccountRow(
        name=_new_name(session, settings, name),
        platform=platform,
        api_url=settled_url,
        credentials=settled,
        rate_limit=clean_rate_limit(rate_limit),
        state="needs_authorization" if entry.authorized_by_seller else "ready",
    )
    row.secret = secret_box(settings).encrypt(secret)  # last: bad input makes no key file
    return _insert(session, settings, row)


def store_tokens(
    session: Session,
    settings: Settings,
    name: str,
    access_token: str,
    refresh_token: str,
    access_expires_at: datetime,
    refresh_expires_at: datetime,
    seller_id: str | None = None,
    *,
    stored_at: datetime | None = None,
    replacing: str | None = None,
) -> Account | None:
    """Store an authorized account's new tokens (encrypted) and mark it ready (the caller
    commits); `stored_at` (the database's clock unless given) is when the pair's life began.

    A pair a refresh got is stored only if the account still holds `replacing`, the refresh
    token that refresh used: a pair stored meanwhile (an operator's `accounts authorize`) is
    newer and is kept, and None is returned. The check is made in the UPDATE itself."""
    row = _stored_row(session, settings, name, authorized_by_seller=True)
    box = secret_box(settings)
    access = box.encrypt(_clean_secret(access_token, "access token"))
    refresh = box.encrypt(_clean_secret(refresh_token, "refresh token"))
    connection = session.connection()
    values: dict[str, Any] = {
        "access_token": access,
        "refresh_token": refresh,
        "access_expires_at": access_expires_at,
        "refresh_expires_at": refresh_expires_at,
        "tokens_stored_at": stored_at or database_now(connection),
        "refresh_unsettled": None,
        "state": "ready",
    }
    if seller_id is not None:
        values["seller_id"] = seller_id
    while True:
        held = connection.execute(
            select(_accounts.c.refresh_token).where(_accounts.c.name == name)
        ).scalar_one()
        statement = update(_accounts).where(_accounts.c.name == name)
        if replacing is not None:
            # Compared in clear: `secrets rotate` may have encrypted the same token again.
            what = f"the refresh token of account {name!r}"
            if held is None or box.decrypt(held, what) != replacing:
                return None
            statement = statement.where(_accounts.c.refresh_token == held)
        if connection.execute(statement.values(values)).rowcount == 1:
            break
        # The token was encrypted again between the read and the write: read it again.
    session.refresh(row)
    return _account(row, settings)


def mark_needs_authorization(
    connection: Connection,
    name: str,
    reason: str,
    now: datetime,
    *only_if: ColumnElement[bool],
) -> bool:
    """L4: the account's authorization is lost; mark it (where `only_if` holds too), and tell
    operators once (a failure row and a log line) when this changes its state. True if it did."""
    changed = connection.execute(
        update(_accounts)
        .where(_accounts.c.name == name, _accounts.c.state != "needs_authorization", *only_if)
        .values(state="needs_authorization", updated_at=now)
    ).rowcount
    if changed != 1:
        return False
    message = f"needs authorization: {reason}; run `lazada-worker accounts authorize {name}`"
    record_failure(connection, name, "account", name, None, message, 1, now)
    row = connection.execute(select(_accounts).where(_accounts.c.name == name)).one()
    # The Account document without decrypting anything: secrets only as set or missing.
    document = account_document(
        Account(
            name=row.name,
            platform=row.platform,
            api_url=row.api_url,
            rate_limit=row.rate_limit,
            credentials=row.credentials or {},
            access_expires_at=row.access_expires_at,
            refresh_expires_at=row.refresh_expires_at,
            seller_id=row.seller_id,
            state=row.state,
            created_at=row.created_at,
        )
    )
    document["secret"] = "set" if row.secret else "missing"
    record_event(connection, "account.needs_authorization", name, document)
    log.warning("account %s %s", name, message, extra={"account": name, "outcome": "parked"})
    return True


def rotate_secrets(session: Session, settings: Settings) -> int:
    """Encrypt every stored secret (signing secrets, tokens) again with the first key of
    LAZADA_SECRET_KEY, so that the keys after it can be retired; the number of values
    rotated (the caller commits). Each value is replaced only if it is still the one read:
    a token stored meanwhile by a refresh is encrypted with the first key already, and is
    kept. `updated_at` is left as it was: nothing about the account changed."""
    box = secret_box(settings)
    columns = ("secret", "access_token", "refresh_token")
    rotated = 0
    rows = session.execute(
        select(
            _accounts.c.id,
            _accounts.c.name,
            _accounts.c.updated_at,
            *(_accounts.c[c] for c in columns),
        )
    )
    for row in rows.all():
        for column in columns:
            old = getattr(row, column)
            if old is None:
                continue
            new = box.rotate(old, f"the {column.replace('_', ' ')} of account {row.name!r}")
            result = session.connection().execute(
                update(_accounts)
                .where(_accounts.c.id == row.id, _accounts.c[column] == old)
                .values({column: new, "updated_at": row.updated_at})
            )
            rotated += result.rowcount
    return rotated


def set_state(session: Session, settings: Settings, name: str, state: str) -> Account:
    """Mark a stored account ready or needing authorization (L4; the caller commits)."""
    if state not in STATES:
        raise InvalidInput(f"account state must be one of {', '.join(STATES)}, got {state!r}")
    row = _stored_row(session, settings, name)
    row.state = state
    session.flush()
    return _account(row, settings)


def remove_account(session: Session, settings: Settings, name: str) -> None:
    """Delete a stored account that has no unfinished work (the caller commits); its finished
    work's rows stay, as history under its name and id (work made for it is never sent with
    the credentials of an account added later under the name: `account_change`).

    The account's row is locked first (FOR UPDATE on PostgreSQL; SQLite's writer lock holds
    the database), and work is recorded under a share lock of it (`work_account_id`): no work
    recorded between the count and the delete is left without its account.
    """
    row = _stored_row(session, settings, name, lock=True)
    waiting = {
        "removal batch(es)": _count(
            session, RemovalBatch, RemovalBatch.account == name, RemovalBatch.state == "pending"
        ),
        "order fetch(es)": _count(
            session, Order, Order.account == name, Order.next_attempt_at.is_not(None)
        ),
        "image job(s)": _count(
            session, ImageJob, ImageJob.account == name, ImageJob.state == "pending"
        ),
    }
    if any(waiting.values()):
        counts = ", ".join(f"{count} {what}" for what, count in waiting.items() if count)
        raise InvalidInput(
            f"account {name!r} has unfinished work ({counts} waiting): let it finish, or cancel "
            "its removal jobs (`lazada-worker cancel KEY`), then remove the account"
        )
    session.delete(row)
    session.execute(delete(RateLimit).where(RateLimit.account == name))
    session.flush()


# --- the account work was made for ----------------------------------------------------------


ACCOUNT_REMOVED = "account_removed"
ACCOUNT_REPLACED = "account_replaced"


class AccountChange(NamedTuple):
    """Why work may not be sent: its account is gone, or another account has its name now."""

    code: str  # ACCOUNT_REMOVED or ACCOUNT_REPLACED
    message: str


def work_account_id(connection: Connection, settings: Settings, name: str) -> int | None:
    """The id work recorded now for account `name` keeps (None: the environment's account),
    read in the transaction that records it. A stored account's row stays share-locked until
    that transaction ends (PostgreSQL; SQLite's writer lock holds the database), so a
    removal cannot pass between this check and the insert; UnknownAccount if there is no
    such account (any more)."""
    if _environment_name(settings) == name:
        return None
    query = select(_accounts.c.id).where(_accounts.c.name == name)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    found = connection.execute(query).scalar()
    if found is None:
        raise UnknownAccount(f"no account named {name[:80]!r}: {_HOW_TO_LIST}")
    return int(found)


_ACCOUNT_ID_NAMED = select(_accounts.c.id).where(_accounts.c.name == bindparam("name"))


def account_id_of(name: ColumnElement[str]) -> ScalarSelect[int]:
    """The id of the account named as `name` says now (None: there is none), as a subquery
    a caller reads beside its work row's columns: its check then costs no statement of its own."""
    return select(_accounts.c.id).where(_accounts.c.name == name).scalar_subquery()


def account_change(
    connection: Connection, settings: Settings, name: str, account_id: int | None
) -> AccountChange | None:
    """None when work made for account id `account_id` (None: the environment's account)
    under the name `name` belongs to the account of that name now; else what happened to
    its account. Such work is never sent with another account's credentials."""
    current = None
    if _environment_name(settings) != name:  # the environment's account has no row
        current = connection.execute(_ACCOUNT_ID_NAMED, {"name": name}).scalar()
    return change_of_account(settings, name, account_id, current)


def change_of_account(
    settings: Settings, name: str, account_id: int | None, current: int | None
) -> AccountChange | None:
    """account_change, given the id of the stored account named `name` now (`current`, read
    with account_id_of; None: there is none)."""
    if _environment_name(settings) == name:
        current, exists = None, True
    else:
        exists = current is not None
    if exists and current == account_id:
        return None
    if not exists:
        return AccountChange(
            ACCOUNT_REMOVED,
            f"account {name!r} was removed after this work was created; nothing more is sent "
            "for it",
        )
    return AccountChange(
        ACCOUNT_REPLACED,
        f"account {name!r} was removed and added again (another account has the name now) "
        "after this work was created; it is not sent with the new account's credentials",
    )


def _environment_name(settings: Settings) -> str | None:
    environment = environment_account(settings)
    return environment.name if environment is not None else None


# --- validation ---------------------------------------------------------------------------


def clean_account_name(name: Any) -> str:
    """A new account's name: 1-64 characters of A-Z a-z 0-9 . _ @ -."""
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        shown = name[:80] if isinstance(name, str) else name
        raise InvalidInput(f"account name {shown!r} is not 1-64 characters of A-Z a-z 0-9 . _ @ -")
    return name


def clean_url(url: Any, what: str) -> str:
    """An http(s) URL with a host, without surrounding white space."""
    cleaned = url.strip() if isinstance(url, str) else ""
    try:
        parts = urlsplit(cleaned)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unclosed [ of an IPv6 host
        usable = False
    if not usable or not cleaned.isprintable():
        shown = mask_url(url[:120]) if isinstance(url, str) else url
        raise InvalidInput(f"{what} {shown!r} is not an http(s) URL with a host")
    return cleaned


def clean_rate_limit(rate_limit: Any) -> float | None:
    """None (use LAZADA_RATE_LIMIT), or a finite number of calls per second above 0."""
    if rate_limit is None:
        return None
    try:
        value = float(rate_limit)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(rate_limit, bool) or not (value > 0 and math.isfinite(value)):
        raise InvalidInput(
            f"rate limit must be a finite number of calls per second above 0, got {rate_limit!r}"
        )
    return value


def _clean_text(value: Any, what: str) -> str:
    cleaned = value.strip() if isinstance(value, str) else ""
    if not cleaned or len(cleaned) > 255 or not cleaned.isprintable():
        raise InvalidInput(f"{what} must be 1-255 printable characters")
    return cleaned


def _clean_secret(value: Any, what: str) -> str:
    # The value itself is never shown: it is a secret.
    cleaned = value.strip() if isinstance(value, str) else ""
    if not cleaned:
        raise InvalidInput(f"the {what} is empty")
    if not cleaned.isprintable():
        raise InvalidInput(f"the {what} holds control characters or line breaks")
    return cleaned


def _new_name(session: Session, settings: Settings, name: Any) -> str:
    cleaned = clean_account_name(name)
    if settings.user_id == cleaned or _row(session, cleaned) is not None:
        raise InvalidInput(
            f"an account named {cleaned!r} exists already: choose another name, or remove it "
            "first with `lazada-worker accounts remove`"
        )
    return cleaned


# --- rows ---------------------------------------------------------------------------------


def _row(session: Session, name: str, lock: bool = False) -> AccountRow | None:
    query = select(AccountRow).where(AccountRow.name == name)
    if lock:  # FOR UPDATE on PostgreSQL; SQLite's writer lock is held from BEGIN already
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def _stored_row(
    session: Session,
    settings: Settings,
    name: str,
    *,
    authorized_by_seller: bool = False,
    lock: bool = False,
) -> AccountRow:
    row = _row(session, name, lock)
    if row is None:
        environment = environment_account(settings)
        if environment is not None and environment.name == name:
            raise InvalidInput(
                f"account {name!r} is the environment's (LAZADA_API_URL, LAZADA_USER_ID, "
                "LAZADA_API_KEY): change or unset those variables instead"
            )
        raise UnknownAccount(f"no account named {name[:80]!r}: {_HOW_TO_LIST}")
    if authorized_by_seller and not registry.entry(row.platform).authorized_by_seller:
        raise InvalidInput(
            f"account {name!r} is a {row.platform} account: its sellers do not authorize the "
            "app, it has no tokens"
        )
    return row


def _insert(session: Session, settings: Settings, row: AccountRow) -> Account:
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        # Another process stored the same name between our check and this insert.
        raise InvalidInput(
            f"an account named {row.name!r} exists already: choose another name"
        ) from None
    return _account(row, settings)


def _account(row: AccountRow, settings: Settings) -> Account:
    box = secret_box(settings) if row.secret or row.access_token or row.refresh_token else None

    def clear(token: str | None, what: str) -> str | None:
        if token is None:
            return None
        assert box is not None
        return box.decrypt(token, f"the {what} of account {row.name!r}")

    return Account(
        name=row.name,
        platform=row.platform,
        api_url=row.api_url,
        rate_limit=row.rate_limit if row.rate_limit is not None else settings.rate_limit,
        credentials=dict(row.credentials or {}),
        secret=clear(row.secret, "secret"),
        access_token=clear(row.access_token, "access token"),
        refresh_token=clear(row.refresh_token, "refresh token"),
        access_expires_at=row.access_expires_at,
        refresh_expires_at=row.refresh_expires_at,
        seller_id=row.seller_id,
        state=row.state,
        created_at=row.created_at,
    )


def _count(session: Session, model: Any, *where: Any) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
