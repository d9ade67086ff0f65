"""Heartbeats: each worker process writes its row of `worker_heartbeats` every BEAT_SECONDS
from a thread of its own, by the database's clock, so that the clocks of the workers' hosts
need not agree. A process whose beat is older than STALE_AFTER (three beats) is gone: the
sweepers take the rows it leased at once (worker.services.sweepers), instead of waiting for
their leases to end. Each beat of a worker process also renews the leases of its attempts
under way (worker.db.leases.held). Beat's row (`BEAT_ROW`) says when a sweep last ran, for
health checks.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Select, delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from worker.db.engine import core_transaction, get_engine
from worker.db.leases import holder, renew_held
from worker.db.models import UTCDateTime, WorkerHeartbeat, table_of
from worker.settings import Settings

log = logging.getLogger(__name__)

BEAT_SECONDS = 2.0
STALE_AFTER = 3 * BEAT_SECONDS  # a process that missed three beats is gone
FORGET_AFTER = 86400.0  # rows of processes gone this long are deleted (no lease outlives it)
BEAT_ROW = "beat"  # beat's row (one beat a deployment), written by the sweeps it sends

_beats = table_of(WorkerHeartbeat)


class seconds_before(FunctionElement[datetime]):
    """The datetime `seconds` before `moment` (a column or subquery), in the database: on
    SQLite in the text form SQLAlchemy stores datetimes in, so that they compare in order."""

    type = UTCDateTime()
    inherit_cache = True
    name = "seconds_before"

    def __init__(self, moment: Any, seconds: float) -> None:
        super().__init__(moment, literal_column(repr(float(seconds))))


def database_now(seconds_ago: float = 0.0) -> seconds_before:
    """The database's clock, `seconds_ago` before now."""
    return seconds_before(_clock(), seconds_ago)


class _clock(FunctionElement[datetime]):
    type = UTCDateTime()
    inherit_cache = True
    name = "clock"


@compiles(_clock, "postgresql")
def _clock_postgresql(element: _clock, compiler: SQLCompiler, **kw: Any) -> str:
    return "now()"


@compiles(_clock, "sqlite")
def _clock_sqlite(element: _clock, compiler: SQLCompiler, **kw: Any) -> str:
    return "'now'"


@compiles(seconds_before, "postgresql")
def _before_postgresql(element: seconds_before, compiler: SQLCompiler, **kw: Any) -> str:
    moment, seconds = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"({moment} - make_interval(secs => {seconds}))"


@compiles(seconds_before, "sqlite")
def _before_sqlite(element: seconds_before, compiler: SQLCompiler, **kw: Any) -> str:
    moment, seconds = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(strftime('%Y-%m-%d %H:%M:%f', {moment}, '-{seconds} seconds') || '000')"


def stale_holders() -> Select[tuple[str]]:
    """The worker ids of processes whose heartbeat stopped: their leases are void.

    Stale is three beats behind the freshest beat, not behind the clock: after the database
    was away for longer than that, every live worker's beat is as old as the dead ones', and
    none is taken for dead before the live ones have beaten again."""
    freshest = select(func.max(_beats.c.beat_at)).correlate(None).scalar_subquery()
    return select(_beats.c.worker_id).where(
        _beats.c.beat_at < seconds_before(freshest, STALE_AFTER)
    )


def record_sweep(connection: Connection) -> None:
    """A sweep ran: beat's row says when. Beat's sweeps run in the workers, so beat needs no
    thread of its own (embedded, beat is a forked process, where SQLite must not be opened
    again); a sweep within a few seconds is beat's heartbeat."""
    now = database_now()
    _upsert(connection, BEAT_ROW, "beat", beat_at=now, last_sweep_at=now)


def beat(connection: Connection, worker_id: str, kind: str) -> None:
    """Write the process's heartbeat, its row made on the first beat."""
    _upsert(connection, worker_id, kind, beat_at=database_now())


def _upsert(connection: Connection, worker_id: str, kind: str, **values: Any) -> None:
    """One statement, so that two sweeps writing beat's first row at once cannot collide."""
    dialect_insert = sqlite_insert if connection.dialect.name == "sqlite" else postgresql_insert
    statement = dialect_insert(_beats).values(
        worker_id=worker_id, kind=kind, started_at=database_now(), **values
    )
    connection.execute(
        statement.on_conflict_do_update(index_elements=[_beats.c.worker_id], set_=values)
    )


class Heartbeat:
    """A process's heartbeat: a first beat at `start` (before the process takes any work), then
    one every BEAT_SECONDS from a daemon thread until `stop`."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, kind: str) -> None:
        self.sessions = sessions
        self.settings = settings
        self.kind = kind
        self.worker_id = holder()
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> Heartbeat:
        with core_transaction(self.sessions) as connection:
            connection.execute(delete(_beats).where(_beats.c.beat_at < database_now(FORGET_AFTER)))
            beat(connection, self.worker_id, self.kind)
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{self.kind}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=BEAT_SECONDS + 5)

    def beat_once(self) -> None:
        with core_transaction(self.sessions) as connection:
            beat(connection, self.worker_id, self.kind)
            if self.kind == "worker":
                renew_held(connection, datetime.now(UTC), self.settings.lease_seconds)

    def _run(self) -> None:
        while not self._stop.wait(BEAT_SECONDS):
            try:
                self.beat_once()
            except Exception as exc:
                # The database is away: the beat comes back with it. Said once a streak.
                if not self._failing:
                    log.warning("heartbeat not written (%s); trying again", type(exc).__name__)
                self._failing = True
            else:
                self._failing = False


_current: Heartbeat | None = None
_stopping = threading.Event()


def start_heartbeat(settings: Settings, kind: str) -> Heartbeat:
    """Start this process's heartbeat (one a process: a forked child starts its own)."""
    global _current
    if _current is not None and _current.pid == os.getpid():
        return _current
    sessions = sessionmaker(get_engine(settings.database_url), expire_on_commit=False)
    _current = Heartbeat(sessions, settings, kind).start()
    return _current


def stop_heartbeat() -> None:
    """Stop beating: the process is about to exit (its row goes stale, as it should)."""
    if _current is not None and _current.pid == os.getpid():
        _current.stop()


def stop_taking_work() -> None:
    """A shutdown began: tasks under way finish their calls and take no more work."""
    _stopping.set()


def stopping() -> bool:
    """Whether this process is shutting down (see stop_taking_work)."""
    return _stopping.is_set()
