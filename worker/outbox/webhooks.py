"""Delivering events (worker.outbox.events): to the work's callback task, and as webhooks signed per
the Standard Webhooks scheme (the `standardwebhooks` package) to every configured URL.

Each target is a delivery row with its own attempts. A failed one is due again after a delay
that doubles from RETRY_FIRST up to RETRY_CAP, jittered; once the delays add up to the
settings' `webhook_give_up_after` (three days by default) it is `dead`. A delivery to a URL no
longer configured is `dead` at once, and the event's state follows its other deliveries.

A webhook call has a deadline for the whole of it (`webhook_timeout`) and reads at most
RESPONSE_MAX_BYTES of the answer, however slowly the receiver sends. No database transaction is
open while a receiver is called, and the calls run on the events queue, which `lazada-worker
run` serves from a pool of its own (worker.cli.run), apart from API work.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from worker.broker.dispatch import Message, countdown_deadline
from worker.db import storable
from worker.db.engine import core_transaction
from worker.db.leases import holder
from worker.db.models import Event, EventDelivery, table_of
from worker.outbox.events import deliver_message, event_document
from worker.platforms import http
from worker.settings import Settings
from worker.urls import mask_url

log = logging.getLogger(__name__)

RETRY_FIRST = 1.0  # seconds before the first retry of a delivery
RETRY_CAP = 3600.0  # the longest wait between two attempts
COUNTDOWN_MOST = 60.0  # a longer wait is left to the sweeper, not held as a countdown
TASK_PREFIX = "task:"
# A receiver's answer is read no further: only its status counts, and a body without end must
# not hold the call or fill memory.
RESPONSE_MAX_BYTES = 64 * 1024
NO_LONGER_CONFIGURED = "no longer configured: the URL is not in LAZADA_WEBHOOK_URLS"

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
) -> list[Message]:
    """Try each due, undelivered target of the event once; returns the message that comes
    back for the next retry when it is near, else nothing (the sweeper sends it when due)."""
    now = datetime.now(UTC)
    # Held for the calls of one round: each target in turn, each within its deadline, so a
    # live round always ends within it; a worker killed mid-round lets the event go again soon
    # after.
    targets = len(settings.webhook_urls) + 1
    lease = targets * settings.webhook_timeout + 10.0
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
        pending = connection.execute(
            select(
                _deliveries.c.id,
                _deliveries.c.target,
                _deliveries.c.attempts,
                _deliveries.c.next_attempt_at,
            ).where(_deliveries.c.event_id == event_id, _deliveries.c.state == "pending")
        ).all()
    # Made storable again: an event recorded before its data was (read back from SQLite's
    # JSON text) may hold a lone surrogate, which no body can carry as UTF-8.
    body = json.dumps(storable.document(event), ensure_ascii=False, separators=(",", ":"))
    urls = _targets_by_row(settings)
    for delivery_id, target, attempts, due in pending:
        if _removed(target, urls):
            # Nowhere to send it, now or later: dead at once, due or not.
            _give_up_removed(sessions, delivery_id)
            continue
        if due > now:
            continue
        if target.startswith(TASK_PREFIX):
            queue = row.callback_queue or settings.callback_queue or "celery"
            outcome = _send_task(send_callback, target.removeprefix(TASK_PREFIX), event, queue)
        else:
            outcome = _post(settings, urls[target], event_id, body)
        _record(sessions, settings, delivery_id, attempts + 1, outcome)
    return _settle(sessions, settings, event_id)


def deliver_many(
    sessions: sessionmaker[Session],
    settings: Settings,
    send_callback: SendCallback,
    event_ids: list[str],
) -> list[Message]:
    """`deliver` for each event in turn (the events one task recorded together). An event
    this task has not reached when its dispatch deadline passes is sent again by the sweeper
    on its own, and whichever delivery claims it first sends it: never both at once."""
    messages: list[Message] = []
    for event_id in event_ids:
        messages += deliver(sessions, settings, send_callback, event_id)
    return messages


def removed_targets_pending(settings: Settings) -> ColumnElement[bool]:
    """A condition on delivery rows: pending, to a URL no longer configured (for the sweeper,
    which makes their events due at once)."""
    return and_(
        _deliveries.c.state == "pending",
        _deliveries.c.target.not_like(f"{TASK_PREFIX}%"),
        _deliveries.c.target.not_in(list(_targets_by_row(settings))),
    )


def _removed(target: str, urls: dict[str, str]) -> bool:
    return not target.startswith(TASK_PREFIX) and target not in urls


def _give_up_removed(sessions: sessionmaker[Session], delivery_id: int) -> None:
    with core_transaction(sessions) as connection:
        connection.execute(
            update(_deliveries)
            .where(_deliveries.c.id == delivery_id, _deliveries.c.state == "pending")
            .values(state="dead", last_error=NO_LONGER_CONFIGURED)
        )
    log.warning("event delivery %s is dead: its URL is no longer configured", delivery_id)


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


def _post(settings: Settings, url: str, event_id: str, body: str) -> _Outcome:
    assert settings.webhook_secret is not None  # Settings refuses URLs without one
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(settings.webhook_secret).sign(event_id, now, body),
    }
    started = time.monotonic()
    limit = settings.webhook_timeout
    try:
        with http.session_for(url) as session:
            status, _, _ = http.send(
                session,
                "POST",
                url,
                data=body.encode(),
                headers=headers,
                timeouts=(min(settings.connect_timeout, limit), limit),
                max_bytes=RESPONSE_MAX_BYTES,
                started=started,
                deadline=started + limit,
                scrub=_scrubber(url),
            )
    except http.NoAnswer as exc:
        if exc.http_status is not None and 200 <= exc.http_status < 300:
            # The receiver said 2xx: delivered, whatever body it then sent too slowly or too
            # long (a body is never read for anything).
            return _Outcome(True, exc.http_status, None)
        return _Outcome(False, exc.http_status, str(exc)[:500])
    if 200 <= status < 300:
        return _Outcome(True, status, None)
    return _Outcome(False, status, f"HTTP {status}")


def _scrubber(url: str) -> Callable[[str], str]:
    """An error's text may quote the URL, whose password or token must not be stored."""
    masked = mask_url(url)

    def scrub(text: str) -> str:
        if masked == url:
            return text
        parts = urlsplit(url)
        for secret in (url, parts.netloc, parts.query, parts.path + "?" + parts.query):
            if secret:
                text = text.replace(secret, "***")
        return text

    return scrub


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
    """The event's state from its deliveries; its lease released, due at the next retry.

    A delivery to a URL no longer configured is dead but does not count: the event follows its
    other deliveries (with none left, nothing is owed: delivered).
    """
    now = datetime.now(UTC)
    urls = _targets_by_row(settings)
    with core_transaction(sessions) as connection:
        rows = [
            (state, due)
            for state, due, target in connection.execute(
                select(
                    _deliveries.c.state, _deliveries.c.next_attempt_at, _deliveries.c.target
                ).where(_deliveries.c.event_id == event_id)
            ).all()
            if not (state == "dead" and _removed(target, urls))
        ]
        pending = [due for state, due in rows if state == "pending"]
        if pending:
            state, due = "pending", min(pending)
        else:
            state = "dead" if any(s == "dead" for s, _ in rows) else "delivered"
            due = now
        delay = max(0.0, (due - now).total_seconds())
        countdown = state == "pending" and delay <= COUNTDOWN_MOST
        connection.execute(
            update(_events)
            .where(_events.c.id == event_id)
            .values(
                state=state,
                next_attempt_at=due,
                lease_until=None,
                # A near retry comes back as a countdown message, replaced by the sweeper if
                # lost; a later one is the sweeper's to send as soon as it is due.
                dispatched_until=countdown_deadline(due, settings.redispatch_after)
                if countdown
                else None,
            )
        )
    if countdown:
        message = deliver_message(event_id)
        return [Message(message.task, message.args, countdown=delay)]
    return []
