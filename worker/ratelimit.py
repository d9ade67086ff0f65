"""One rate limit for all workers of an account, on every machine.

The limiter hands out call slots spaced 1/rate seconds apart (GCRA, the "theoretical arrival
time" form of a token bucket with a burst of one): a caller reserves the next free slot in
shared state and waits until it comes. Reserving instead of retrying keeps callers in order and
the rate exact, and the state is one value per account. Time comes from the shared store's
clock, so workers on machines with skewed clocks still agree.

The state lives in Redis when the broker is Redis, else in the results database. An E901 or
E429 answer pushes the next slot out and halves the rate for a while.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from worker.db.engine import get_engine
from worker.db.models import RateLimit
from worker.platforms import CallRecord, ThrottledApiError
from worker.settings import Settings

log = logging.getLogger(__name__)

PAUSE_AFTER_THROTTLE = 1.0  # seconds no call is made after the API said "too frequent"
SLOW_FOR = 30.0  # seconds the rate stays halved after that
# Slots 3% further apart than 1/rate: calls leave a few ms late or early (threads, GIL), and
# exact spacing let rate+1 calls land in one second at the API (bench/RESULTS.md, ratelimit).
SPACING = 1.03


class RateLimited(ThrottledApiError):
    """No call slot soon enough: nothing was sent; retried like the API's own E901."""

    def __init__(self, action: str, wait: float) -> None:
        super().__init__(f"local rate limit: next call slot in {wait:.0f}s", action=action)
        self.wait = wait


class SlotStore(Protocol):
    def reserve(self, account: str, interval: float, max_wait: float) -> float:
        """Reserve the next slot; return seconds until it comes (0 if it is now). A slot more
        than `max_wait` s away is not reserved (the caller gives up)."""

    def throttled(self, account: str, pause: float, slow_for: float) -> None:
        """The API said "too frequent": no slot for `pause` s, half the rate for `slow_for` s."""


class RateLimiter:
    """The client's before_call and after_call hooks for one account."""

    def __init__(self, store: SlotStore, account: str, rate: float, max_wait: float) -> None:
        self.store = store
        self.account = account
        self.interval = SPACING / rate
        # The wait happens while the caller holds a row's lease: it must end well before it.
        self.max_wait = max_wait

    def acquire(self, action: str) -> None:
        wait = self.store.reserve(self.account, self.interval, self.max_wait)
        if wait > self.max_wait:
            raise RateLimited(action, wait)
        if wait > 0:
            time.sleep(wait)

    def observe(self, record: CallRecord) -> None:
        if record.throttled:
            log.warning("%s throttled (%s): slowing down", record.action, record.error_code)
            self.store.throttled(self.account, PAUSE_AFTER_THROTTLE, SLOW_FOR)


class DatabaseSlots:
    """Slots in the results database: one row per account, locked while a slot is taken.

    Core statements on a plain connection: this runs once per API call, so it stays small.
    """

    def __init__(self, database_url: str) -> None:
        self.engine = get_engine(database_url)

    def _state(self, conn: Connection, account: str) -> tuple[datetime, datetime | None, datetime]:
        """The account's next free slot and slow_until, locked, and the store's time."""
        now = _now(conn)
        row = conn.execute(
            select(RateLimit.next_slot_at, RateLimit.slow_until)
            .where(RateLimit.account == account)
            .with_for_update()
        ).one_or_none()
        if row is None:
            conn.execute(insert(RateLimit).values(account=account, next_slot_at=now))
            return now, None, now
        return row.next_slot_at, row.slow_until, now

    def _save(self, conn: Connection, account: str, **values: datetime | None) -> None:
        conn.execute(update(RateLimit).where(RateLimit.account == account).values(**values))

    def reserve(self, account: str, interval: float, max_wait: float) -> float:
        try:
            return self._reserve(account, interval, max_wait)
        except IntegrityError:  # another worker created the account's row at the same moment
            return self._reserve(account, interval, max_wait)

    def _reserve(self, account: str, interval: float, max_wait: float) -> float:
        with self.engine.begin() as conn:
            next_slot, slow_until, now = self._state(conn, account)
            if slow_until is not None and now < slow_until:
                interval *= 2
            slot = max(next_slot, now)
            wait = (slot - now).total_seconds()
            if wait <= max_wait:
                self._save(conn, account, next_slot_at=slot + timedelta(seconds=interval))
            return wait

    def throttled(self, account: str, pause: float, slow_for: float) -> None:
        with self.engine.begin() as conn:
            next_slot, _, now = self._state(conn, account)
            self._save(
                conn,
                account,
                next_slot_at=max(next_slot, now + timedelta(seconds=pause)),
                slow_until=now + timedelta(seconds=slow_for),
            )


def _now(conn: Connection) -> datetime:
    """The database's clock on PostgreSQL (shared by all machines); this machine's on SQLite."""
    if conn.dialect.name == "postgresql":
        value = conn.scalar(select(func.clock_timestamp()))
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
    return datetime.now(UTC)


# Redis: the same algorithm in one Lua script, atomic on the server, on the server's clock.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local slow_until = tonumber(redis.call('HGET', KEYS[1], 'slow_until') or '0')
if now < slow_until then interval = interval * 2 end
local slot = math.max(tonumber(redis.call('HGET', KEYS[1], 'next_slot') or '0'), now)
if slot - now <= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'next_slot', tostring(slot + interval))
  redis.call('EXPIRE', KEYS[1], 3600)
end
return tostring(slot - now)
"""
_THROTTLED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local next_slot = tonumber(redis.call('HGET', KEYS[1], 'next_slot') or '0')
redis.call('HSET', KEYS[1], 'next_slot', tostring(math.max(next_slot, now + tonumber(ARGV[1]))))
redis.call('HSET', KEYS[1], 'slow_until', tostring(now + tonumber(ARGV[2])))
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""


class RedisSlots:
    """Slots in Redis (the broker's server), one hash per account."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self._reserve = self.client.register_script(_RESERVE)
        self._throttled = self.client.register_script(_THROTTLED)

    def reserve(self, account: str, interval: float, max_wait: float) -> float:
        return float(self._reserve(keys=[_key(account)], args=[interval, max_wait]))

    def throttled(self, account: str, pause: float, slow_for: float) -> None:
        self._throttled(keys=[_key(account)], args=[pause, slow_for])


def _key(account: str) -> str:
    return f"lazada-worker:rate:{account}"


_lock = threading.Lock()
_limiters: dict[tuple[str, str, float], RateLimiter] = {}


def limiter_for(settings: Settings, account: str, rate: float) -> RateLimiter:
    """The process's limiter for `account` at `rate` calls a second: its slots in Redis when
    the broker is Redis, else in the database, shared by every worker of the deployment."""
    redis_broker = settings.broker_url.startswith(("redis://", "rediss://"))
    store_url = settings.broker_url if redis_broker else settings.database_url
    key = (store_url, account, rate)
    with _lock:
        limiter = _limiters.get(key)
        if limiter is None:
            store: SlotStore = RedisSlots(store_url) if redis_broker else DatabaseSlots(store_url)
            limiter = RateLimiter(store, account, rate, settings.max_rate_wait)
            _limiters[key] = limiter
        return limiter
