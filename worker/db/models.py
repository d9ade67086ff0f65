"""The tables: the database, not the broker, says what is left to do.

Every row carries the account (its name) it belongs to. Work rows carry a
`next_attempt_at` (when the work is due), a `lease_until` (held until then) and a
`lease_holder` (the worker process holding it): a task claims a row with a conditional UPDATE,
and a sweeper re-enqueues due rows whose lease has lapsed or whose holder's heartbeat stopped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


def table_of(model: type[Base]) -> Table:
    """The model's Table, for Core statements on hot paths (no ORM work per execution)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class RemovalJob(Base):
    """One caller's request to remove a set of SKUs, identified by its idempotency key."""

    __tablename__ = "removal_jobs"
    __table_args__ = (
        UniqueConstraint("account", "key"),
        # The few jobs still under way, newest first (the console's running jobs).
        Index(
            "ix_removal_jobs_unfinished",
            "created_at",
            "id",
            postgresql_where=text("finished_at IS NULL"),
            sqlite_where=text("finished_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(255))
    # The id of the account it was made for (None: the environment's): a removed account's
    # work is never sent with the credentials of an account added later under its name.
    account_id: Mapped[int | None]
    key: Mapped[str] = mapped_column(String(255))
    total: Mapped[int] = mapped_column(Integer)  # distinct SKUs; the other counts are derived
    pending_batches: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]  # set when the last SKU became removed or failed
    # The task the shop named to hear of the outcome (contract: "Events"), and its queue.
    callback: Mapped[str | None] = mapped_column(String(255))
    callback_queue: Mapped[str | None] = mapped_column(String(255))
    # sha256 of the sorted SKU set as JSON: the same key with another set is refused
    # (worker.services.job_control); None on jobs recorded before migration 0009.
    sku_set_digest: Mapped[str | None] = mapped_column(String(64))
    cancelled_at: Mapped[datetime | None]  # an operator cancelled its SKUs not yet sent


class RemovalBatch(Base):
    """At most 50 SKUs of a job that travel together in RemoveProduct calls."""

    __tablename__ = "removal_batches"
    __table_args__ = (
        Index("ix_removal_batches_due", "state", "next_attempt_at"),
        Index("ix_removal_batches_job", "job_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[int] = mapped_column(ForeignKey("removal_jobs.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # calls that ended transiently
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]  # a running task holds the row until then
    lease_holder: Mapped[str | None] = mapped_column(String(255))  # its worker (WorkerHeartbeat)
    dispatched_until: Mapped[datetime | None]  # the message sent for it is due by then
    last_error: Mapped[str | None] = mapped_column(Text)
    # The batch's SKUs (a JSON list, the first at `first_position` in the caller's list) for
    # as long as it has no SKU rows: pending while the batch is, removed by one call once it
    # is done. A call that leaves them otherwise (failures, not applied, transient errors)
    # writes their rows and sets this to NULL. A large job then records one row per batch, not
    # per SKU, before its first call, and no more if every call succeeds (migration 0006).
    first_position: Mapped[int | None]
    skus: Mapped[str | None] = mapped_column(Text)


class RemovalSku(Base):
    """One SKU's outcome within a job, for batches whose calls did not simply remove them all
    (the others hold their SKUs in `RemovalBatch.skus`)."""

    __tablename__ = "removal_skus"
    __table_args__ = (
        UniqueConstraint("job_id", "sku"),
        Index("ix_removal_skus_batch", "batch_id", "state"),
        # SKUs not removed are few beside the removed ones: counted from this index alone, the
        # removed ones being each job's total less them (worker.web.listings).
        Index(
            "ix_removal_skus_unremoved",
            "account",
            "state",
            postgresql_where=text("state <> 'removed'"),
            sqlite_where=text("state <> 'removed'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(255))
    # No foreign keys: the rows come from their batch's row (which names its job), and
    # nothing deletes jobs; the checks only cost time (migration 0005).
    job_id: Mapped[int] = mapped_column(Integer)
    batch_id: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)  # order in the caller's list
    sku: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|removed|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # calls that carried this SKU
    error_code: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Order(Base):
    """A GetOrder result as last fetched, or the reason it could not be."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("account", "order_id"),
        Index("ix_orders_due", "next_attempt_at"),
        Index("ix_orders_open", "is_open", "fetched_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[int | None]  # the account it was made for (see RemovalJob.account_id)
    order_id: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|fetched|failed
    order_number: Mapped[str | None] = mapped_column(String(64))
    customer_first_name: Mapped[str | None] = mapped_column(Text)
    customer_last_name: Mapped[str | None] = mapped_column(Text)
    payment_method: Mapped[str | None] = mapped_column(String(255))
    price: Mapped[str | None] = mapped_column(String(32))  # decimal string, exact
    gift_option: Mapped[bool | None]
    items_count: Mapped[int | None]
    statuses: Mapped[list[Any]] = mapped_column(default=list)
    is_open: Mapped[bool] = mapped_column(default=False)  # some item not in a final status
    order_created_at: Mapped[datetime | None]
    order_updated_at: Mapped[datetime | None]
    address_billing: Mapped[dict[str, Any]] = mapped_column(default=dict)
    address_shipping: Mapped[dict[str, Any]] = mapped_column(default=dict)
    extra_attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error_code: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # None: nothing due. Set when a fetch is requested, retried, or the order is due a refresh.
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    lease_holder: Mapped[str | None] = mapped_column(String(255))  # its worker (WorkerHeartbeat)
    dispatched_until: Mapped[datetime | None]
    last_request_id: Mapped[str | None] = mapped_column(String(255))  # task id last served
    fetched_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The task the shop named to hear of the outcome (contract: "Events"), and its queue.
    callback: Mapped[str | None] = mapped_column(String(255))
    callback_queue: Mapped[str | None] = mapped_column(String(255))


class OrderSync(Base):
    """An account's order sync (worker.services.order_sync): its sync point, and the run under
    way, if any, with the position it has read to. One row per account: the lease on it is
    what keeps two syncs of an account from running at once."""

    __tablename__ = "order_syncs"
    __table_args__ = (UniqueConstraint("account"), Index("ix_order_syncs_due", "next_attempt_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(255))
    # Every order updated up to then is stored (null before the first sync), and when that
    # was last moved.
    synced_through: Mapped[datetime | None]
    synced_at: Mapped[datetime | None]
    # The run under way (null: none): it lists up to `run_until`; `follow` asks for another
    # run after it. The position: the second read to (`cursor_at`), the ids read at that
    # second, and, while a second holds more than a page, the offset in it, whether this
    # pass through it found any new id, and the status it is read under when it holds more
    # orders than the offsets reach (null: every status at once).
    run_until: Mapped[datetime | None]
    follow: Mapped[bool] = mapped_column(default=False)
    cursor_at: Mapped[datetime | None]
    cursor_ids: Mapped[list[Any]] = mapped_column(default=list)
    in_second: Mapped[bool] = mapped_column(default=False)
    second_offset: Mapped[int] = mapped_column(Integer, default=0)
    second_found: Mapped[bool] = mapped_column(default=False)
    second_status: Mapped[str | None] = mapped_column(String(64))
    # Listed orders waiting for their items (lazop), and how many ids an items call takes
    # now (smaller after an id the API did not know).
    pending: Mapped[list[Any]] = mapped_column(default=list)
    chunk: Mapped[int] = mapped_column(Integer, default=0)
    # Orders the run stored as new and as changed; those of the last finished run.
    run_new: Mapped[int] = mapped_column(Integer, default=0)
    run_changed: Mapped[int] = mapped_column(Integer, default=0)
    last_new: Mapped[int] = mapped_column(Integer, default=0)
    last_changed: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    lease_holder: Mapped[str | None] = mapped_column(String(255))  # its worker (WorkerHeartbeat)
    dispatched_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ImageMigration(Base):
    """A caller's MigrateImages request: its URLs go out in chunks of at most 8."""

    __tablename__ = "image_migrations"
    __table_args__ = (UniqueConstraint("account", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[int | None]  # the account it was made for (see RemovalJob.account_id)
    key: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImageJob(Base):
    """One asynchronous image job: submitted (for migrations), then polled with GetResponse."""

    __tablename__ = "image_jobs"
    __table_args__ = (
        UniqueConstraint("account", "request_id"),
        Index("ix_image_jobs_due", "state", "next_poll_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[int | None]  # the account it was made for (see RemovalJob.account_id)
    migration_id: Mapped[int | None] = mapped_column(
        ForeignKey("image_migrations.id", ondelete="CASCADE")
    )
    request_id: Mapped[str | None] = mapped_column(String(255))  # None until submitted
    action: Mapped[str] = mapped_column(String(32), default="MigrateImages")
    urls: Mapped[list[Any]] = mapped_column(default=list)  # what a migration submits
    # pending|succeeded|partial|failed|expired|rejected
    state: Mapped[str] = mapped_column(String(16), default="pending")
    polls: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # transient failures in a row
    next_poll_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    lease_holder: Mapped[str | None] = mapped_column(String(255))  # its worker (WorkerHeartbeat)
    dispatched_until: Mapped[datetime | None]
    started_at: Mapped[datetime | None]  # when the job was submitted or first tracked
    deadline_at: Mapped[datetime | None]
    images: Mapped[list[Any]] = mapped_column(default=list)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    error_code: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # The task the shop named to hear of the outcome (contract: "Events"), and its queue.
    callback: Mapped[str | None] = mapped_column(String(255))
    callback_queue: Mapped[str | None] = mapped_column(String(255))


class Failure(Base):
    """A final failure, for operators: what failed, why, after how many attempts."""

    __tablename__ = "failures"
    __table_args__ = (Index("ix_failures_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))  # removal_sku|order|image_job
    subject: Mapped[str] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)


class ApiCall(Base):
    """One HTTP attempt against the account's platform: never the key, never the Signature."""

    __tablename__ = "api_calls"
    __table_args__ = (Index("ix_api_calls_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))  # ok|api_error|transport_error
    duration_ms: Mapped[int] = mapped_column(Integer)
    http_status: Mapped[int | None]
    error_code: Mapped[str | None] = mapped_column(String(64))


class ApiCallCount(Base):
    """API calls recorded for an account with an outcome: added to in the transaction that
    adds their `api_calls` rows (worker.db.audit), so that a scrape reads a row per account and
    outcome instead of counting the audit."""

    __tablename__ = "api_call_counts"

    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    calls: Mapped[int] = mapped_column(BigInteger)


class RateLimit(Base):
    """An account's call slots (worker.ratelimit), when not kept in Redis."""

    __tablename__ = "rate_limits"

    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    next_slot_at: Mapped[datetime]  # no slot before this (a throttle's pause)
    # A throttling answer (E901, E429, ApiCallLimit) halved the rate until then.
    slow_until: Mapped[datetime | None]
    # Each group's reserved slots still to come, JSON {group: [epoch seconds]} (fair shares).
    turns: Mapped[str | None] = mapped_column(Text)


class Account(Base):
    """A seller account stored as data (worker.accounts.store); the environment's legacy account is
    not a row. Secrets are Fernet ciphertext (worker.accounts.secrets), never clear text.

    Platform-neutral: `platform` names an entry of worker.platforms.registry, `credentials` holds
    that platform's credentials but its secret, `secret` the one that signs requests."""

    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("name"),
        CheckConstraint("state IN ('ready', 'needs_authorization')", name="ck_accounts_state"),
        # An id is never given again (SQLite would reuse the highest after a delete): work
        # records it to tell a removed account from one added later under its name.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(16))  # a registered platform's name
    api_url: Mapped[str] = mapped_column(Text)  # the endpoint, or the venture's gateway
    # The platform's credentials but its secret, by the names its registry entry gives them.
    credentials: Mapped[dict[str, Any]] = mapped_column(default=dict)
    seller_id: Mapped[str | None] = mapped_column(String(255))  # once a seller authorized
    rate_limit: Mapped[float | None]  # None: LAZADA_RATE_LIMIT
    # ready|needs_authorization ("expiring" is derived for display from refresh_expires_at)
    state: Mapped[str] = mapped_column(String(32), default="ready")
    secret: Mapped[str | None] = mapped_column(Text)  # the credential that signs requests
    access_token: Mapped[str | None] = mapped_column(Text)
    refresh_token: Mapped[str | None] = mapped_column(Text)
    access_expires_at: Mapped[datetime | None]
    refresh_expires_at: Mapped[datetime | None]
    # lazop: a worker refreshing the tokens holds this lease (one at a time: rotating refresh
    # tokens, decision L3)
    refreshing_until: Mapped[datetime | None]
    # lazop: when the current pair was stored, on the database's clock (the refresh schedule
    # counts the access token's life from it; other writes to the row leave it alone)
    tokens_stored_at: Mapped[datetime | None]
    # lazop: set before a refresh is sent with the stored refresh token and cleared when a
    # pair is stored or the API refuses the call: while set, the server may have rotated the
    # stored refresh token in a refresh whose new pair was lost; it says what became of it
    refresh_unsettled: Mapped[str | None] = mapped_column(Text)
    refreshing_by: Mapped[str | None] = mapped_column(String(255))  # its worker (WorkerHeartbeat)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Event(Base):
    """An outcome for the shop (worker.outbox.events), written in the transaction of the final state
    and delivered after commit, at least once, to each of its targets."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_due", "state", "next_attempt_at"),
        Index("ix_events_at", "at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # receivers dedupe on it
    type: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    callback: Mapped[str | None] = mapped_column(String(255))
    callback_queue: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|dead
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None]
    lease_holder: Mapped[str | None] = mapped_column(String(255))  # its worker (WorkerHeartbeat)
    dispatched_until: Mapped[datetime | None]


class EventDelivery(Base):
    """One event's delivery to one target: `task:NAME` (a callback) or a webhook URL (masked)."""

    __tablename__ = "event_deliveries"
    __table_args__ = (UniqueConstraint("event_id", "target"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[int | None]  # the receiver's HTTP status
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class WorkerHeartbeat(Base):
    """A worker process that is alive: it writes `beat_at` every few seconds
    (worker.db.heartbeats), by the database's clock, so hosts' clocks need not agree. A lease
    whose holder's beat is older than three beats is free: that process is gone. Beat's row
    (worker_id "beat") is written by each sweep it sends."""

    __tablename__ = "worker_heartbeats"

    worker_id: Mapped[str] = mapped_column(String(255), primary_key=True)  # host:pid:random
    kind: Mapped[str] = mapped_column(String(16))  # worker|beat
    started_at: Mapped[datetime]
    beat_at: Mapped[datetime] = mapped_column(index=True)
    last_sweep_at: Mapped[datetime | None]  # beat's row: when a sweep last ran


class OAuthState(Base):
    """A console's Connect: the single-use `state` a seller's consent page hands back to
    /oauth/callback (worker.web.oauth), stored as its SHA-256 so that any `web` process can
    finish it and none can exchange a code twice."""

    __tablename__ = "oauth_states"
    __table_args__ = (Index("ix_oauth_states_expires_at", "expires_at"),)

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]  # consumed: a reload or a second tab finds it used
