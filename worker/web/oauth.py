"""Connecting a seller from the console: a single-use `state` per Connect, stored so that the
callback may reach any `web` process, consumed before the code is exchanged (a reload or a
second tab never exchanges a code twice), expiring after STATE_LIFETIME."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import delete, insert, update
from sqlalchemy.orm import Session, sessionmaker

from worker.db.engine import core_transaction
from worker.db.models import OAuthState, table_of

STATE_LIFETIME = timedelta(minutes=15)
_states = table_of(OAuthState)


def _digest(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def new_state(sessions: sessionmaker[Session], account: str) -> str:
    """A fresh random state for `account`, stored as its digest; lapsed ones are dropped."""
    state = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        connection.execute(delete(_states).where(_states.c.expires_at < now - STATE_LIFETIME))
        connection.execute(
            insert(_states).values(
                state_hash=_digest(state),
                account=account,
                created_at=now,
                expires_at=now + STATE_LIFETIME,
            )
        )
    return state


def consume_state(sessions: sessionmaker[Session], state: str) -> str | None:
    """The account a state was made for, if it is known, unused and unexpired: it is used
    from now on (one conditional UPDATE, so two requests with it cannot both get it)."""
    if not state or len(state) > 200:
        return None
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        found = connection.execute(
            update(_states)
            .where(
                _states.c.state_hash == _digest(state),
                _states.c.used_at.is_(None),
                _states.c.expires_at > now,
            )
            .values(used_at=now)
            .returning(_states.c.account)
        ).scalar_one_or_none()
    return found


def with_state(consent_url: str, state: str) -> str:
    """The consent URL with `state` added to its query."""
    parts = urlsplit(consent_url)
    query = f"{parts.query}&{urlencode({'state': state})}".lstrip("&")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
