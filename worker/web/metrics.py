"""`/metrics`: the contract's gauges in the Prometheus text format, computed from the database
at each scrape in one read-only transaction (with a statement time limit on PostgreSQL, so a
slow scrape gives up rather than piles up)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# The text format every Prometheus version reads.
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.wrappers import Response

from worker.accounts.store import EXPIRING_WITHIN, environment_account
from worker.db.models import Account, ApiCallCount, EventDelivery, ImageJob, Order, OrderSync
from worker.settings import Settings
from worker.web import health, listings


def gauges(session: Session, settings: Settings) -> list[Any]:
    """Every metric family, read in the caller's transaction."""
    now = datetime.now(UTC)
    families: list[Any] = []

    def by_account_state(name: str, doc: str, counts: dict[tuple[str, str], int]) -> None:
        family = GaugeMetricFamily(name, doc, labels=["account", "state"])
        for (account, state), count in sorted(counts.items()):
            family.add_metric([account, state], count)
        families.append(family)

    by_account_state(
        "lazada_removal_jobs", "Removal jobs by state.", listings.removal_job_counts(session)
    )
    by_account_state(
        "lazada_removal_skus", "Removal SKUs by state.", listings.removal_sku_counts(session)
    )
    by_account_state("lazada_orders", "Stored orders by state.", listings.grouped(session, Order))
    by_account_state(
        "lazada_image_jobs", "Image jobs by state.", listings.grouped(session, ImageJob)
    )

    deliveries = GaugeMetricFamily(
        "lazada_event_deliveries", "Event deliveries by state.", labels=["state"]
    )
    for state, count in session.execute(
        select(EventDelivery.state, func.count()).group_by(EventDelivery.state)
    ):
        deliveries.add_metric([state], count)
    families.append(deliveries)

    states: dict[str, int] = {"ready": 0, "needs_authorization": 0, "expiring": 0}
    for state, refresh_expires_at, count in session.execute(
        select(Account.state, Account.refresh_expires_at, func.count()).group_by(
            Account.state, Account.refresh_expires_at
        )
    ):
        if (
            state == "ready"
            and refresh_expires_at is not None
            and _aware(refresh_expires_at) - now < EXPIRING_WITHIN
        ):
            state = "expiring"
        states[state] = states.get(state, 0) + count
    if environment_account(settings) is not None:
        states["ready"] += 1
    accounts = GaugeMetricFamily("lazada_accounts", "Accounts by state.", labels=["state"])
    for state, count in states.items():
        accounts.add_metric([state], count)
    families.append(accounts)

    due = listings.due_work(session, now)
    work_due = GaugeMetricFamily(
        "lazada_work_due", "Rows due and not yet served, by kind.", labels=["kind"]
    )
    oldest = GaugeMetricFamily(
        "lazada_oldest_due_seconds",
        "Seconds the oldest row due and not yet served has waited, by kind.",
        labels=["kind"],
    )
    for kind, (count, waited) in due.items():
        work_due.add_metric([kind], count)
        oldest.add_metric([kind], max(waited or 0.0, 0.0))
    families += [work_due, oldest]

    calls = CounterMetricFamily(
        "lazada_api_calls", "API calls recorded, by outcome.", labels=["account", "outcome"]
    )
    # Kept by the transactions that record the calls (worker.db.audit), not counted here.
    for account, outcome, count in session.execute(
        select(ApiCallCount.account, ApiCallCount.outcome, ApiCallCount.calls).order_by(
            ApiCallCount.account, ApiCallCount.outcome
        )
    ):
        calls.add_metric([account, outcome], count)
    families.append(calls)

    lag = GaugeMetricFamily(
        "lazada_order_sync_lag_seconds",
        "Seconds since the account's sync point (every order updated up to it is stored).",
        labels=["account"],
    )
    for account, synced_through in session.execute(
        select(OrderSync.account, OrderSync.synced_through).order_by(OrderSync.account)
    ):
        if synced_through is not None:  # no sync point yet: no lag to say
            lag.add_metric([account], max((now - _aware(synced_through)).total_seconds(), 0.0))
    families.append(lag)

    alive = GaugeMetricFamily(
        "lazada_workers_alive",
        f"Worker processes with a heartbeat within {health.LIVE_WITHIN:.0f} seconds.",
    )
    alive.add_metric([], health.live_workers(session.connection()))
    families.append(alive)
    return families


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class _Families:
    """A collector of metric families read once (prometheus_client's custom collector)."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        yield from self.families


def render(sessions: sessionmaker[Session], settings: Settings) -> bytes:
    """The text exposition of every metric, read in one read-only transaction."""
    with sessions() as session:
        listings.read_only(session)
        families = gauges(session, settings)
        session.rollback()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)  # the 0.0.4 text format


def scrape(sessions: sessionmaker[Session], settings: Settings) -> Response:
    try:
        body = render(sessions, settings)
    except Exception as exc:
        return Response(
            f"the metrics could not be read: {type(exc).__name__}\n", 503, mimetype="text/plain"
        )
    return Response(body, 200, content_type=CONTENT_TYPE_PLAIN_0_0_4)
