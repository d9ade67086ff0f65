"""Engines and sessions, one engine per URL and process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc, func, select
from sqlalchemy.orm import Session, sessionmaker

_lock = threading.Lock()

# A pooled connection back from use more recently than this is taken as it is; one idle for
# longer is pinged first. A connection that was working a moment ago still is unless the server
# went away meanwhile, and then its first statement fails and SQLAlchemy's disconnect handling
# replaces every connection of the pool; a ping on every checkout would cost a round trip per
# transaction, and the API path makes one or two a call.
PING_AFTER_IDLE = 1.0
_engines: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """The process's engine for `url`, created on first use.

    SQLite gets WAL (readers never wait for the writer), a long busy timeout (several
    threads and processes write the same file) and foreign keys switched on.
    """
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create(url)
            _engines[url] = engine
        return engine


def _create(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # pysqlite's own transaction handling would defer BEGIN; let SQLAlchemy emit it.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Take the write lock at BEGIN: a read-then-write transaction that upgrades later
            # can fail with "database is locked" without waiting for the busy timeout.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_size=20, max_overflow=20)

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # A new connection has no "returned" (the pool clears `info` when it replaces one).
        returned = record.info.get("returned")
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool closes this connection and checks out another (a new one if need be).
            raise exc.DisconnectionError(type(error).__name__) from error

    return engine


def dispose_engines() -> None:
    """Forget inherited connections in a forked child (they belong to the parent)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back when it raises."""
    session = sessionmaker(get_engine(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def core_transaction(sessions: sessionmaker[Session]) -> Iterator[Connection]:
    """A transaction on a bare Connection of the sessions' engine, committed when the block ends.

    The services' one kind of transaction: they run prebuilt Core statements, and a Session
    around them cost more CPU than the statements (bench/RESULTS.md).
    """
    engine: Engine = sessions.kw["bind"]
    with engine.begin() as connection:
        yield connection


def database_now(connection: Connection) -> datetime:
    """The database's clock, aware UTC: what leases and schedules shared by several machines
    are reckoned on, so that they need not agree on the time. SQLite's is the clock of the one
    machine its file lives on, read to the millisecond (CURRENT_TIMESTAMP has whole seconds);
    PostgreSQL's is its transaction's start."""
    if connection.dialect.name == "sqlite":
        text = connection.execute(select(func.strftime("%Y-%m-%d %H:%M:%f", "now"))).scalar_one()
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    moment: datetime = connection.execute(select(func.now())).scalar_one()
    return moment.astimezone(UTC)
