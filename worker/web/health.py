"""Readiness of a `web` process (`/healthz`): the database answers at the latest migration,
and the broker takes a connection. `lazada-worker health` adds the heartbeats: a live worker
and beat's sweeps (worker.db.heartbeats), both read by the database's clock."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, func, select
from werkzeug.wrappers import Response

from worker.db.engine import get_engine
from worker.db.heartbeats import BEAT_ROW, database_now
from worker.db.models import WorkerHeartbeat
from worker.db.schema import current_revision, head_revision
from worker.settings import Settings
from worker.urls import mask_url

BROKER_TIMEOUT = 3.0  # seconds: a probe must answer well within a load balancer's patience
# A worker or beat is live with a heartbeat or sweep this recent (contract "Command line"): far
# more than a beat or a sweep apart, so that a slow database does not read as a dead worker.
LIVE_WITHIN = 60.0


def check_database(settings: Settings) -> dict[str, Any]:
    try:
        current = current_revision(settings.database_url)
    except Exception as exc:
        return {"ok": False, "reason": f"the database does not answer: {type(exc).__name__}"}
    head = head_revision()
    if current != head:
        return {"ok": False, "reason": f"the database is at migration {current}, not {head}"}
    return {"ok": True, "reason": f"at migration {head}"}


def check_broker(settings: Settings) -> dict[str, Any]:
    from kombu.connection import Connection

    try:
        with Connection(  # type: ignore[no-untyped-call]
            settings.broker_url,
            connect_timeout=BROKER_TIMEOUT,
            transport_options=settings.broker_transport_options(),
        ) as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
    except Exception as exc:
        return {
            "ok": False,
            "reason": f"the broker {mask_url(settings.broker_url)} does not answer: "
            f"{type(exc).__name__}",
        }
    return {"ok": True, "reason": "takes a connection"}


def checks(settings: Settings) -> dict[str, dict[str, Any]]:
    return {"database": check_database(settings), "broker": check_broker(settings)}


def live_workers(connection: Connection) -> int:
    """How many worker processes beat within LIVE_WITHIN (also `lazada_workers_alive`)."""
    beats = WorkerHeartbeat.__table__.c
    found = connection.execute(
        select(func.count()).where(
            beats.kind == "worker", beats.beat_at >= database_now(LIVE_WITHIN)
        )
    ).scalar_one()
    return int(found)


def beat_running(connection: Connection) -> bool:
    """Whether beat's sweeps ran within LIVE_WITHIN."""
    beats = WorkerHeartbeat.__table__.c
    found = connection.execute(
        select(beats.worker_id).where(
            beats.worker_id == BEAT_ROW, beats.last_sweep_at >= database_now(LIVE_WITHIN)
        )
    ).first()
    return found is not None


def check_heartbeats(settings: Settings) -> dict[str, dict[str, Any]]:
    """The `workers` and `beat` checks of `lazada-worker health`."""
    try:
        with get_engine(settings.database_url).connect() as connection:
            workers = live_workers(connection)
            beat = beat_running(connection)
    except Exception as exc:
        reason = f"not read: the database does not answer: {type(exc).__name__}"
        return {"workers": {"ok": False, "reason": reason}, "beat": {"ok": False, "reason": reason}}
    return {
        "workers": (
            {"ok": True, "reason": f"{workers} live (a heartbeat within {LIVE_WITHIN:.0f} s)"}
            if workers
            else {"ok": False, "reason": "no live worker"}
        ),
        "beat": (
            {"ok": True, "reason": f"a sweep within {LIVE_WITHIN:.0f} s"}
            if beat
            else {"ok": False, "reason": "beat not running"}
        ),
    }


def healthz(settings: Settings) -> Response:
    found = checks(settings)
    ok = all(check["ok"] for check in found.values())
    body = {"status": "ok" if ok else "failing", "checks": found}
    return Response(
        json.dumps(body),
        200 if ok else 503,
        mimetype="application/json",
        headers={"Cache-Control": "no-store"},
    )
