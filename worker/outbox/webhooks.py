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

from sqlalchemy import ColumnElement, and_, insert, or_, select, update
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
# A delivery's lease on an event: its targets' deadlines and this much more. A delivery of
# several events renews the lease of those still to go once less than an event's deadlines
# and RENEW_MARGIN is left of it.
LEASE_SLACK = 10.0
RENEW_MARGIN = 5.0
NO_LONGER_CONFIGURED = "no longer configured: the URL is not in LAZADA_WEBHOOK_URLS"

# (task name, event document, queue): sends the callback task over the worker's broker.
SendCallback = Callable[[str, dict[str, Any], str], None]

_events = table_of(Event)
_deliveries = table_of(EventDelivery)


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
    return deliver_many(sessions, settings, send_callback, [event_id])


def deliver_many(
    sessions: sessionmaker[Session],
    settings: Settings,
    send_callback: SendCallback,
    event_ids: list[str],
) -> list[Message]:
    """`deliver` for several events (those one task recorded together), one after the other,
    in a few transactions: the due ones are claimed together and their targets made together;
    an event's outcome is written as soon as one of its targets was tried (so a crash sends
    again at most the event it was on), those of events with nothing tried together."""
    now = datetime.now(UTC)
    # Held for the calls of one event: each target in turn, each within its deadline, so a
    # live round of one event always ends within it; the events still to go have theirs
    # renewed before it could run out, and a worker killed mid-round lets them go again soon
    # after.
    per_event = (len(settings.webhook_urls) + 1) * settings.webhook_timeout
    lease = timedelta(seconds=per_event + LEASE_SLACK)
    until = now + lease
    me = holder()
    with core_transaction(sessions) as connection:
        claimed = {
            row.id: row
            for row in connection.execute(
                update(_events)
                .where(
                    _events.c.id.in_(list(dict.fromkeys(event_ids))),
                    _events.c.state == "pending",
                    _events.c.next_attempt_at <= now,
                    or_(_events.c.lease_until.is_(None), _events.c.lease_until < now),
                )
                .values(lease_until=until, lease_holder=me)
                .returning(*_events.c)
            )
        }
    rows = [claimed[event_id] for event_id in dict.fromkeys(event_ids) if event_id in claimed]
    if not rows:
        return []
    _ensure_targets(sessions, settings, [(row.id, row.callback) for row in rows], now)
    pending: dict[str, list[Any]] = {row.id: [] for row in rows}
    with core_transaction(sessions) as connection:
        for delivery in connection.execute(
            select(
                _deliveries.c.event_id,
                _deliveries.c.id,
                _deliveries.c.target,
                _deliveries.c.attempts,
                _deliveries.c.next_attempt_at,
            )
            .where(_deliveries.c.event_id.in_(list(pending)), _deliveries.c.state == "pending")
            .order_by(_deliveries.c.id)
        ):
            pending[delivery.event_id].append(delivery)
    urls = _targets_by_row(settings)
    messages: list[Message] = []
    unsettled: list[str] = []  # events gone through whose outcome is not written yet
    tried: list[tuple[int, int, _Outcome]] = []
    lost: set[str] = set()
    for index, row in enumerate(rows):
        if datetime.now(UTC) + timedelta(seconds=per_event + RENEW_MARGIN) > until:
            # The lease would run out during this event: renewed for the events not written
            # yet; one this worker no longer holds (it stalled past it) is another's now.
            rest = [r.id for r in rows[index:] if r.id not in lost] + unsettled
            held, until = until, datetime.now(UTC) + lease
            kept = _renew(sessions, rest, me, held, until)
            lost |= set(rest) - kept
            unsettled = [e for e in unsettled if e in kept]
        if row.id in lost:
            continue
        event = event_document(Event(**row._asdict()))
        # Made storable again: an event recorded before its data was (read back from SQLite's
        # JSON text) may hold a lone surrogate, which no body can carry as UTF-8.
        body = json.dumps(storable.document(event), ensure_ascii=False, separators=(",", ":"))
        for delivery_id, target, attempts, due in (d[1:] for d in pending[row.id]):
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
                outcome = _post(settings, urls[target], row.id, body)
            tried.append((delivery_id, attempts + 1, outcome))
        unsettled.append(row.id)
        if tried:
            messages += _settle(sessions, settings, unsettled, tried)
            unsettled, tried = [], []
    if unsettled:
        messages += _settle(sessions, settings, unsettled, tried)
    return messages


def _renew(
    sessions: sessionmaker[Session],
    event_ids: list[str],
    me: str,
    held: datetime,
    until: datetime,
) -> set[str]:
    """The events' leases this delivery still holds (as it took them, to `held`), taken on to
    `until`; their ids."""
    with core_transaction(sessions) as connection:
        return set(
            connection.execute(
                update(_events)
                .where(
                    _events.c.id.in_(event_ids),
                    _events.c.lease_holder == me,
                    _events.c.lease_until == held,
                )
                .values(lease_until=until)
                .returning(_events.c.id)
            ).scalars()
        )


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
    events: list[tuple[str, str | None]],
    now: datetime,
) -> None:
    """A delivery row for each event's callback and each configured URL (stored masked)."""
    urls = [delivery_target(settings, url) for url in settings.webhook_urls]
    with core_transaction(sessions) as connection:
        known: dict[str, set[str]] = {event_id: set() for event_id, _ in events}
        for event_id, target in connection.execute(
            select(_deliveries.c.event_id, _deliveries.c.target).where(
                _deliveries.c.event_id.in_(list(known))
            )
        ):
            known[event_id].add(target)
    legacy = _legacy_targets(settings)  # rows written before targets had a fingerprint
    fingerprinted = _fingerprinted(settings)
    missing: list[dict[str, Any]] = []
    for event_id, callback in events:
        targets = [f"{TASK_PREFIX}{callback}"] if callback else []
        have = known[event_id]
        covered = {legacy[t] for t in have if t in legacy}
        missing += [
            {
                "event_id": event_id,
                "target": target,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
            }
            for target in dict.fromkeys([*targets, *urls])
            if target not in have and fingerprinted.get(target) not in covered
        ]
    if not missing:
        return
    try:
        with core_transaction(sessions) as connection:
            connection.execute(insert(_deliveries), missing)
    except IntegrityError:
        # Some written by a duplicate delivery task at the same moment: the others one event
        # at a time.
        for event_id in dict.fromkeys(row["event_id"] for row in missing):
            try:
                with core_transaction(sessions) as connection:
                    connection.execute(
                        insert(_deliveries), [r for r in missing if r["event_id"] == event_id]
                    )
            except IntegrityError:
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


def _recorded_values(settings: Settings, attempts: int, outcome: _Outcome) -> dict[str, Any]:
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
    else:
        values["next_attempt_at"] = now + timedelta(seconds=retry_delay(attempts))
    return values


def _settle(
    sessions: sessionmaker[Session],
    settings: Settings,
    event_ids: list[str],
    tried: list[tuple[int, int, _Outcome]],
) -> list[Message]:
    """The outcomes of the deliveries tried written, then each event's state from its
    deliveries, its lease released, due at the next retry; in one transaction.

    A delivery to a URL no longer configured is dead but does not count: the event follows its
    other deliveries (with none left, nothing is owed: delivered).
    """
    urls = _targets_by_row(settings)
    messages: list[Message] = []
    with core_transaction(sessions) as connection:
        for delivery_id, attempts, outcome in tried:
            values = _recorded_values(settings, attempts, outcome)
            if values.get("state") == "dead":
                log.warning("event delivery %s is dead after %s attempts", delivery_id, attempts)
            connection.execute(
                update(_deliveries).where(_deliveries.c.id == delivery_id).values(values)
            )
        now = datetime.now(UTC)
        deliveries: dict[str, list[tuple[str, datetime]]] = {e: [] for e in event_ids}
        for event_id, state, due, target in connection.execute(
            select(
                _deliveries.c.event_id,
                _deliveries.c.state,
                _deliveries.c.next_attempt_at,
                _deliveries.c.target,
            ).where(_deliveries.c.event_id.in_(event_ids))
        ):
            if not (state == "dead" and _removed(target, urls)):
                deliveries[event_id].append((state, due))
        for event_id in event_ids:
            rows = deliveries[event_id]
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
                    # A near retry comes back as a countdown message, replaced by the sweeper
                    # if lost; a later one is the sweeper's to send as soon as it is due.
                    dispatched_until=countdown_deadline(due, settings.redispatch_after)
                    if countdown
                    else None,
                )
            )
            if countdown:
                message = deliver_message(event_id)
                messages.append(Message(message.task, message.args, countdown=delay))
    return messages
