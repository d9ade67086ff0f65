"""Delivering events (worker.outbox.events): to the work's callback task, and as webhooks signed per
the Standard Webhooks scheme (the `standardwebhooks` package) to every configured URL.

Each target is a delivery row with its own attempts. A failed one is due again after a delay
that doubles from RETRY_FIRST up to RETRY_CAP, jittered; once the delays add up to the
settings' `webhook_give_up_after` (three days by default) it is `dead`. No database
transaction is open while a receiver is called, and the calls run on the events queue, apart
from API work.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import requests
from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from worker.broker.dispatch import Message, dispatch_deadline
from worker.db.engine import core_transaction
from worker.db.leases import holder
from worker.db.models import Event, EventDelivery, table_of
from worker.outbox.events import deliver_message, event_document
from worker.settings import Settings, mask_url

log = logging.getLogger(__name__)

RETRY_FIRST = 1.0  # seconds before the first retry of a delivery
RETRY_CAP = 3600.0  # the longest wait between two attempts
COUNTDOWN_MOST = 60.0  # a longer wait is left to the sweeper, not held as a countdown
TASK_PREFIX = "task:"

# (task name, event document, queue): sends the callback task over the worker's broker.
SendCallback = Callable[[str, dict[str, Any], str], None]

_events = table_of(Event)
_deliveries = table_of(EventDelivery)
_CLAIM = (
    update(_events)
    .where(
        _events.c.id == bindparam("row"),
        _events.c.state == "pending",
        _events.c.next_attempt_at <= bindparam("now"),
        or_(_events.c.lease_until.is_(None), _events.c.lease_until < bindparam("now")),
    )
    .values(lease_until=bindparam("until"), lease_holder=bindparam("holder"))
    .returning(*_events.c)
)


class _Outcome(NamedTuple):
    delivered: bool
    status: int | None
    error: str | None


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """The wait after failed attempt number `attempts`: doubling, capped, jittered +-25%."""
    base = min(RETRY_FIRST * 2.0 ** min(attempts - 1, 30), RETRY_CAP)
    return float(base * (rng or random).uniform(0.75, 1.25))


def gives_up(settings: Settings, attempts: int) -> bool:
    """True once the waits of `attempts` failed attempts add up to the give-up time."""
    waited = sum(min(RETRY_FIRST * 2.0 ** min(n, 30), RETRY_CAP) for n in range(attempts))
    return bool(waited >= settings.webhook_give_up_after)


def deliver(
    sessions: sessionmaker[Session],
    settings: Settings,
    send_callback: SendCallback,
    event_id: str,
    http: requests.Session | None = None,
) -> list[Message]:
    """Try each due, undelivered target of the event once; returns the message that comes
    back for the next retry when it is near, else nothing (the sweeper sends it when due)."""
    now = datetime.now(UTC)
    # Held for the calls of one round (each target in turn, each within its timeouts): a
    # worker killed mid-round lets the event go again soon after.
    targets = len(settings.webhook_urls) + 1
    lease = targets * (settings.connect_timeout + settings.webhook_timeout) + 10.0
    params = {
        "row": event_id,
        "now": now,
        "until": now + timedelta(seconds=lease),
        "holder": holder(),
    }
    with core_transaction(sessions) as connection:
        row = connection.execute(_CLAIM, params).one_or_none()
    if row is None:
        return []
    event = event_document(Event(**row._asdict()))
    _ensure_targets(sessions, settings, event_id, row.callback, now)
    with core_transaction(sessions) as connection:
        due = connection.execute(
            select(_deliveries.c.id, _deliveries.c.target, _deliveries.c.attempts).where(
                _deliveries.c.event_id == event_id,
                _deliveries.c.state == "pending",
                _deliveries.c.next_attempt_at <= now,
            )
        ).all()
    body = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    urls = _targets_by_row(settings)
    for delivery_id, target, attempts in due:
        if target.startswith(TASK_PREFIX):
            queue = row.callback_queue or settings.callback_queue or "celery"
            outcome = _send_task(send_callback, target.removeprefix(TASK_PREFIX), event, queue)
        elif target in urls:
            outcome = _post(settings, http, urls[target], event_id, body)
        else:  # a URL no longer configured: nowhere to send it
            outcome = _Outcome(False, None, "the URL is no longer in LAZADA_WEBHOOK_URLS")
        _record(sessions, settings, delivery_id, attempts + 1, outcome)
    return _settle(sessions, settings, event_id)


def _ensure_targets(
    sessions: sessionmaker[Session],
    settings: Settings,
    event_id: str,
    callback: str | None,
    now: datetime,
) -> None:
    """A delivery row for the callback and each configured URL (stored masked)."""
    targets = [f"{TASK_PREFIX}{callback}"] if callback else []
    targets += [delivery_target(settings, url) for url in settings.webhook_urls]
    with core_transaction(sessions) as connection:
        known = set(
            connection.execute(
                select(_deliveries.c.target).where(_deliveries.c.event_id == event_id)
            ).scalars()
        )
    legacy = _legacy_targets(settings)  # rows written before targets had a fingerprint
    covered = {legacy[t] for t in known if t in legacy}
    urls = _fingerprinted(settings)
    missing = [t for t in dict.fromkeys(targets) if t not in known and urls.get(t) not in covered]
    if not missing:
        return
    try:
        with core_transaction(sessions) as connection:
            connection.execute(
                insert(_deliveries),
                [
                    {
                        "event_id": event_id,
                        "target": target,
                        "state": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                    }
                    for target in missing
                ],
            )
    except IntegrityError:  # written by a duplicate delivery task at the same moment
        pass


def delivery_target(settings: Settings, url: str) -> str:
    """A URL's delivery target: the URL as shown (masked), and when masking hid something,
    a fingerprint of the whole URL, so that two URLs differing only in a password or a
    `token=` get a delivery each. The fingerprint is an HMAC keyed with the webhook signing
    secret, which the database does not hold: a plain hash of the URL would let anyone who
    reads the table try passwords against it offline."""
    masked = mask_url(url)
    if masked == url:
        return url  # nothing hidden: the URL is its own identity (rows stored so far too)
    assert settings.webhook_secret is not None  # Settings refuses URLs without one
    key = hashlib.sha256(b"lazada-worker delivery target\0" + settings.webhook_secret.encode())
    mark = hmac.new(key.digest(), url.encode(), hashlib.sha256).hexdigest()[:16]
    return f"{masked} #{mark}"


def _fingerprinted(settings: Settings) -> dict[str, str]:
    return {delivery_target(settings, url): url for url in settings.webhook_urls}


def _legacy_targets(settings: Settings) -> dict[str, str]:
    """Masked targets stored before fingerprints, for the one URL each can only mean."""
    masked: dict[str, list[str]] = {}
    for url in settings.webhook_urls:
        if mask_url(url) != url:
            masked.setdefault(mask_url(url), []).append(url)
    return {target: urls[0] for target, urls in masked.items() if len(urls) == 1}


def _targets_by_row(settings: Settings) -> dict[str, str]:
    return {**_legacy_targets(settings), **_fingerprinted(settings)}


def _send_task(send: SendCallback, name: str, event: dict[str, Any], queue: str) -> _Outcome:
    try:
        send(name, event, queue)
    except Exception as exc:  # the broker did not take it: retried like a failed webhook
        return _Outcome(False, None, f"{type(exc).__name__}: {exc}"[:500])
    return _Outcome(True, None, None)


def _post(
    settings: Settings, http: requests.Session | None, url: str, event_id: str, body: str
) -> _Outcome:
    assert settings.webhook_secret is not None  # Settings refuses URLs without one
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(settings.webhook_secret).sign(event_id, now, body),
    }
    timeout = (settings.connect_timeout, settings.webhook_timeout)
    try:
        response = (http or requests).post(
            url, data=body.encode(), headers=headers, timeout=timeout, allow_redirects=False
        )
    except requests.RequestException as exc:
        # The exception's text may repeat the URL: only its kind is kept.
        return _Outcome(False, None, f"{type(exc).__name__} from {mask_url(url)}")
    if 200 <= response.status_code < 300:
        return _Outcome(True, response.status_code, None)
    return _Outcome(False, response.status_code, f"HTTP {response.status_code}")


def _record(
    sessions: sessionmaker[Session],
    settings: Settings,
    delivery_id: int,
    attempts: int,
    outcome: _Outcome,
) -> None:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_status": outcome.status,
        "last_error": outcome.error,
    }
    if outcome.delivered:
        values.update(state="delivered", delivered_at=now)
    elif gives_up(settings, attempts):
        values.update(state="dead")
        log.warning("event delivery %s is dead after %s attempts", delivery_id, attempts)
    else:
        values["next_attempt_at"] = now + timedelta(seconds=retry_delay(attempts))
    with core_transaction(sessions) as connection:
        connection.execute(
            update(_deliveries).where(_deliveries.c.id == delivery_id).values(values)
        )


def _settle(sessions: sessionmaker[Session], settings: Settings, event_id: str) -> list[Message]:
    """The event's state from its deliveries; its lease released, due at the next retry."""
    now = datetime.now(UTC)
    with core_transaction(sessions) as connection:
        rows = connection.execute(
            select(_deliveries.c.state, _deliveries.c.next_attempt_at).where(
                _deliveries.c.event_id == event_id
            )
        ).all()
        pending = [due for state, due in rows if state == "pending"]
        if pending:
            state, due = "pending", min(pending)
        else:
            state = "dead" if any(s == "dead" for s, _ in rows) else "delivered"
            due = now
        delay = max(0.0, (due - now).total_seconds())
        connection.execute(
            update(_events)
            .where(_events.c.id == event_id)
            .values(
                state=state,
                next_attempt_at=due,
                lease_until=None,
                # The retry's message (below, or the sweeper's) is due then; a lost one is
                # replaced by the sweeper after that.
                dispatched_until=dispatch_deadline(due, settings.redispatch_after)
                if pending
                else None,
            )
        )
    if state == "pending" and delay <= COUNTDOWN_MOST:
        message = deliver_message(event_id)
        return [Message(message.task, message.args, countdown=delay)]
    return []
