"""The process's Seller Center client, shared by the threads of a worker (pooled HTTP)."""

from __future__ import annotations

import threading

from worker.audit import record_call
from worker.ratelimit import limiter_for
from worker.sellercenter import CallRecord, SellerCenterClient
from worker.settings import Settings

_lock = threading.Lock()
_clients: dict[tuple[str, str], SellerCenterClient] = {}


def get_client(settings: Settings) -> SellerCenterClient:
    """One client per account and process, created on first use; every call waits for its
    slot under the account's rate limit and is audited."""
    api_url, user_id, api_key = settings.require_api()
    with _lock:
        client = _clients.get((api_url, user_id))
        if client is None:
            limiter = limiter_for(settings)

            def after_call(record: CallRecord) -> None:
                record_call(record)
                limiter.observe(record)

            client = SellerCenterClient(
                api_url,
                user_id,
                api_key,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
                before_call=limiter.acquire,
                after_call=after_call,
            )
            _clients[(api_url, user_id)] = client
        return client


def forget_clients() -> None:
    """Drop inherited clients in a forked child: their sockets belong to the parent."""
    with _lock:
        _clients.clear()
