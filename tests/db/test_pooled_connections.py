"""PostgreSQL connections from the pool: one back from use a moment ago is taken as it is, one
idle for longer is pinged first and replaced if the server closed it, and one the server closed
right after its use fails once and leaves a renewed pool behind it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from tests.support.databases import migrated_postgres
from worker.db import engine as engines


@pytest.fixture
def engine() -> Iterator[Engine]:
    with migrated_postgres() as url:
        yield engines.get_engine(url)


@pytest.fixture
def pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The connections the pool pinged, in order (the dialect's own ping still runs)."""
    pinged: list[Any] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pinged.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    return pinged


def _backend_pid(engine: Engine) -> int:
    with engine.begin() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(engine: Engine, *pids: int) -> None:
    """Close those server processes' connections, from a connection outside the pool."""
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as other:
        for pid in pids:
            other.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_connection_back_from_use_a_moment_ago_is_not_pinged(
    engine: Engine, pings: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend_pid(engine)
    assert _backend_pid(engine) == first  # the same connection, again
    assert pings == []

    monkeypatch.setattr(engines, "PING_AFTER_IDLE", 0.0)  # now every one has been idle longer
    assert _backend_pid(engine) == first
    assert len(pings) == 1


def test_a_connection_the_server_closed_while_it_was_idle_is_replaced_before_use(
    engine: Engine, pings: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engines, "PING_AFTER_IDLE", 0.0)
    closed = _backend_pid(engine)
    pings.clear()
    _terminate(engine, closed)

    replaced = _backend_pid(engine)  # no error: the ping found it closed
    assert replaced != closed
    assert len(pings) >= 1


def test_a_connection_the_server_closed_right_after_use_fails_once_and_the_pool_is_renewed(
    engine: Engine, pings: list[Any]
) -> None:
    # Two connections in the pool, both closed by the server a moment after their use.
    with engine.connect() as one, engine.connect() as two:
        pids = [int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in (one, two)]
    _terminate(engine, *pids)

    with pytest.raises(OperationalError) as failed:
        _backend_pid(engine)
    assert failed.value.connection_invalidated

    # The failure invalidated the pool's other connection too: the next one is new.
    assert _backend_pid(engine) not in pids
    assert pings == []
