"""Leases name their worker process, whose heartbeat keeps them: an attempt of several calls
holds its row however long it takes while its worker lives. Real LAZOP sandbox over HTTP, real
databases, the worker's own heartbeat thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import wait_for
from worker.accounts import tokens
from worker.accounts.platforms import Platforms
from worker.accounts.store import add_account
from worker.db.heartbeats import BEAT_ROW, BEAT_SECONDS, STALE_AFTER, Heartbeat, stale_holders
from worker.db.leases import holder
from worker.db.models import Account as AccountRow
from worker.db.models import RemovalBatch, WorkerHeartbeat
from worker.platforms.lazop.client import LazopClient
from worker.sandbox.lazop import LazopSandbox
from worker.sandbox.lazop.config import LazopSandboxConfig
from worker.services import removal
from worker.services.sweepers import sweep_removal_batches
from worker.settings import Settings

SELLER = "seller-a"
LEASE = 5.0  # seconds: shorter than the attempt below (three calls of 3 s)


@pytest.fixture
def lazop() -> Iterator[LazopSandbox]:
    sandbox = LazopSandbox(LazopSandboxConfig(latency=3.0), port=0).start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(
        settings,
        secret_key=Fernet.generate_key().decode(),
        lease_seconds=LEASE,
        rate_limit=1000.0,
    )


def _lazop_account(
    sessions: sessionmaker[Session], settings: Settings, lazop: LazopSandbox, name: str
) -> None:
    with sessions.begin() as session:
        add_account(
            session,
            settings,
            name,
            "lazop",
            {"app_key": lazop.app_key, "app_secret": lazop.app_secret, "auth_url": lazop.auth_url},
            api_url=lazop.api_url,
        )
    with LazopClient(
        lazop.api_url, lazop.app_key, lazop.app_secret, auth_url=lazop.auth_url
    ) as client:
        grant = client.create_token(lazop.authorization_code(SELLER))
    tokens.store_grant(sessions, settings, name, grant)


def test_an_attempt_longer_than_its_lease_keeps_its_row_from_other_workers(
    sessions: sessionmaker[Session], settings: Settings, lazop: LazopSandbox
) -> None:
    """The call is refused for its expired token, the tokens are refreshed and the call made
    again: three slow calls, longer than the lease. Past the lease's first end, another worker
    finds the row still held (the heartbeat renewed it), and the batch is removed by one
    attempt."""
    _lazop_account(sessions, settings, lazop, "shop-th")
    lazop.expire_access_tokens(SELLER)
    skus = [f"LONG-{n}" for n in range(10)]
    _, messages = removal.create_job(sessions, settings, "shop-th", "long", skus, 50)
    batch_id = messages[0].args[0]
    heartbeat = Heartbeat(sessions, settings, "worker").start()
    platforms = Platforms(sessions, settings)
    worker = threading.Thread(
        target=removal.process_batch, args=(sessions, platforms, settings, batch_id)
    )
    try:
        worker.start()
        query = select(RemovalBatch.lease_until, RemovalBatch.lease_holder).where(
            RemovalBatch.id == batch_id
        )

        def leased() -> tuple[datetime, str] | None:
            with sessions() as session:
                row = session.execute(query).one()
            return (row.lease_until, row.lease_holder) if row.lease_until else None

        first_end, lease_holder = wait_for(leased, 30, "the batch leased")
        assert lease_holder == holder()
        wait_for(lambda: datetime.now(UTC) > first_end, 30, "the lease's first end", 0.1)
        assert worker.is_alive(), "the attempt ended within its lease: the test proves nothing"
        taken = removal._claim(sessions, settings, batch_id)  # another worker's claim
        worker.join(60)
    finally:
        heartbeat.stop()
    assert taken is None, "another worker took the row in the middle of its attempt"
    assert not worker.is_alive()
    with sessions() as session:
        batch = session.execute(
            select(RemovalBatch).where(RemovalBatch.id == batch_id)
        ).scalar_one()
        assert (batch.state, batch.lease_until) == ("done", None)
    removals = [c for c in lazop.calls() if c.action == "/product/remove"]
    refreshes = [c for c in lazop.calls() if c.action == "/auth/token/refresh"]
    assert (len(removals), len(refreshes)) == (2, 1)  # refused for its token, then again


def test_a_heartbeat_that_stops_goes_stale_while_the_others_beat(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    live = Heartbeat(sessions, settings, "worker").start()
    dead = Heartbeat(sessions, settings, "worker")
    dead.worker_id = "gone-host:2:dead"  # another process, as far as the table can tell
    dead.start()
    dead.stop()
    try:
        with sessions() as session:
            row = session.execute(
                select(WorkerHeartbeat).where(WorkerHeartbeat.worker_id == dead.worker_id)
            ).scalar_one()
            assert row.kind == "worker" and row.beat_at.tzinfo is not None
            assert dead.worker_id not in set(session.scalars(stale_holders()))
        time.sleep(STALE_AFTER + 2 * BEAT_SECONDS)  # three beats missed: a scenario's step
        with sessions() as session:
            stale = set(session.scalars(stale_holders()))
    finally:
        live.stop()
    assert dead.worker_id in stale and holder() not in stale


def test_after_the_database_was_away_no_worker_is_taken_for_dead_before_the_others_beat(
    sessions: sessionmaker[Session],
) -> None:
    """Every beat missed for a minute alike (nobody could write): none is stale, since none
    is three beats behind the freshest."""
    long_ago = datetime(2026, 1, 1, tzinfo=UTC)
    with sessions.begin() as session:
        for worker_id in ("host-a:1:x", "host-b:2:y"):
            session.add(
                WorkerHeartbeat(
                    worker_id=worker_id, kind="worker", started_at=long_ago, beat_at=long_ago
                )
            )
    with sessions() as session:
        assert set(session.scalars(stale_holders())) == set()


def test_a_token_refresh_lease_held_by_a_worker_whose_heartbeat_stopped_is_taken_at_once(
    sessions: sessionmaker[Session], settings: Settings, lazop: LazopSandbox
) -> None:
    """A worker killed mid-refresh held the account's refresh lease for a minute more: its
    account's calls were told to come back until then. Its stopped heartbeat frees it."""
    _lazop_account(sessions, settings, lazop, "shop-th")
    dead = "gone-host:1:dead"
    live = Heartbeat(sessions, settings, "worker").start()  # the worker refreshing now
    live.stop()
    with sessions.begin() as session:
        session.execute(
            insert(WorkerHeartbeat).values(
                worker_id=dead,
                kind="worker",
                started_at=datetime(2026, 1, 1, tzinfo=UTC),
                beat_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )
        session.execute(
            update(AccountRow)
            .where(AccountRow.name == "shop-th")
            .values(refreshing_until=datetime.now(UTC) + timedelta(seconds=60), refreshing_by=dead)
        )
    with LazopClient(
        lazop.api_url, lazop.app_key, lazop.app_secret, auth_url=lazop.auth_url
    ) as client:
        fresh = tokens.refresh(sessions, settings, "shop-th", client)  # not RateLimited
    assert fresh
    assert len([c for c in lazop.calls() if c.action == "/auth/token/refresh"]) == 1


def test_each_sweep_writes_beats_row_with_when_it_ran(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    query = select(WorkerHeartbeat.kind, WorkerHeartbeat.last_sweep_at).where(
        WorkerHeartbeat.worker_id == BEAT_ROW
    )
    seen = []
    for _ in range(2):  # the first sweep makes the row, the next ones move it on
        sweep_removal_batches(sessions, settings)
        with sessions() as session:
            seen.append(session.execute(query).one())
    assert [kind for kind, _ in seen] == ["beat", "beat"]
    assert seen[0].last_sweep_at is not None and seen[1].last_sweep_at >= seen[0].last_sweep_at
