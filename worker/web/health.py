"""Readiness of a `web` process (`/healthz`): the database answers at the latest migration,
and the broker takes a connection."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Response

from worker.db.schema import current_revision, head_revision
from worker.settings import Settings
from worker.urls import mask_url

BROKER_TIMEOUT = 3.0  # seconds: a probe must answer well within a load balancer's patience


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
