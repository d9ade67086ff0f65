"""The orders a seller's listing holds (GetOrders, ``/orders/get``), shared by both sandboxes.

A listing needs a known set of orders that change over time. The book holds, per seller, each
listed order's `updated_at` (whole seconds, UTC) and its place in its lifecycle; everything else
about an order is the catalogue's (worker.sandbox.catalogue), so GetOrder and the listing agree.
Knobs: `listed_orders` orders exist when the sandbox starts, their updates spread over the
`listed_days` before it; `order_churn` orders a second are added or changed while it runs.
`add` and `change` do the same on demand, at a given `updated_at`: one in the past is a row
that becomes visible late (replication lag). Rows of one second are served in an order fixed
by a hash of their ids (ties have no documented order; a client must not rely on one).
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from worker.sandbox import catalogue
from worker.sandbox.replies import Node

MAX_LIMIT = 100
MAX_OFFSET = 4500
MAX_ITEMS_IDS = 50
_FIRST_ID = 1_000_001  # listed orders' ids; below them the catalogue's own ids stay as they were
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass
class Listed:
    """One listed order's changing part."""

    order_id: int
    created_at: datetime
    updated_at: datetime
    step: int  # its status: the step of its lifecycle it has reached
    tie: int  # its place among the orders of the same second
    garbled: bool = False  # its updated_at is answered in a shape no decision names


class OrderBook:
    """Every seller's listed orders; thread-safe."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._sellers: dict[str, dict[int, Listed]] = {}
        self._next_id: dict[str, int] = {}
        self._no_items: dict[str, set[int]] = {}
        self._churn_at = time.time()
        self._churn_carry = 0.0
        self._rng = random.Random(f"lazada-sandbox-book:{seed}")

    # -- set up and changed ------------------------------------------------------------------

    def populate(self, seller: str, count: int, days: float) -> None:
        """`count` orders whose last updates are spread over the `days` before now (once)."""
        with self._lock:
            if seller in self._sellers or count <= 0:
                return
            rng = random.Random(f"lazada-sandbox-book:{self._seed}:{seller}")
            now = _second(datetime.now(UTC))
            span = max(1, int(days * 86400))
            for _ in range(count):
                updated = now - timedelta(seconds=rng.randrange(1, span + 1))
                self._insert(seller, updated, rng)

    def add(self, seller: str, count: int, updated_at: datetime | None = None) -> list[int]:
        """`count` new orders updated at `updated_at` (now when None); their ids."""
        with self._lock:
            at = _second(updated_at or datetime.now(UTC))
            return [self._insert(seller, at, self._rng).order_id for _ in range(count)]

    def change(
        self, seller: str, order_ids: list[int], updated_at: datetime | None = None
    ) -> list[int]:
        """Move each order one status on (or back to its first), updated at `updated_at`."""
        with self._lock:
            at = _second(updated_at or datetime.now(UTC))
            book = self._sellers.get(seller, {})
            changed = []
            for order_id in order_ids:
                entry = book.get(order_id)
                if entry is None:
                    continue
                self._bump(entry, at)
                changed.append(order_id)
            return changed

    def churn(self, seller: str, per_second: float) -> None:
        """Apply the `order_churn` knob up to now: new orders and changes, half each, each
        updated at the second it was due."""
        with self._lock:
            now = time.time()
            if per_second <= 0:
                self._churn_at, self._churn_carry = now, 0.0
                return
            due = (now - self._churn_at) * per_second + self._churn_carry
            whole = int(due)
            for index in range(whole):
                at = _second(datetime.fromtimestamp(self._churn_at + (index + 1) / per_second, UTC))
                book = self._sellers.get(seller)
                if book and self._rng.random() < 0.5:
                    entry = book[self._rng.choice(list(book))]
                    self._bump(entry, at)
                else:
                    self._insert(seller, at, self._rng)
            self._churn_at, self._churn_carry = now, due - whole

    # -- read --------------------------------------------------------------------------------

    def listing(
        self,
        seller: str,
        after: datetime,
        before: datetime | None,
        offset: int,
        limit: int,
        keep: Callable[[Listed], bool] | None = None,
    ) -> list[Listed]:
        """Orders with `after` <= updated_at <= `before` (both inclusive), and only those
        `keep` accepts when given (a status filter), by updated_at ascending, ties in the
        book's own order; a copy, so later changes don't show."""
        with self._lock:
            book = self._sellers.get(seller, {})
            rows = [
                entry
                for entry in book.values()
                if entry.updated_at >= after
                and (before is None or entry.updated_at <= before)
                and (keep is None or keep(entry))
            ]
            rows.sort(key=lambda entry: (entry.updated_at, entry.tie))
            return [dataclasses.replace(e) for e in rows[offset : offset + limit]]

    def get(self, seller: str, order_id: int) -> Listed | None:
        with self._lock:
            entry = self._sellers.get(seller, {}).get(order_id)
            if entry is None:
                return None
            return dataclasses.replace(entry)

    def refuse_items(self, seller: str, order_ids: list[int]) -> None:
        """The items call answers these listed orders as unknown (37), as the API does now
        and then for an id it listed; GetOrder still knows them."""
        with self._lock:
            self._no_items.setdefault(seller, set()).update(order_ids)

    def garble(self, seller: str, order_ids: list[int]) -> None:
        """These orders' `updated_at` is answered as text no decision names (a bad row)."""
        with self._lock:
            for order_id in order_ids:
                entry = self._sellers.get(seller, {}).get(order_id)
                if entry is not None:
                    entry.garbled = True

    def items_refused(self, seller: str, order_id: int) -> bool:
        with self._lock:
            return order_id in self._no_items.get(seller, set())

    def ids(self, seller: str) -> list[int]:
        with self._lock:
            return sorted(self._sellers.get(seller, {}))

    def count(self, seller: str) -> int:
        with self._lock:
            return len(self._sellers.get(seller, {}))

    def statuses(self, entry: Listed, seed: int) -> list[str]:
        """The statuses the order's document shows (a status filter keeps it under each)."""
        return catalogue.listed_statuses(entry.order_id, seed, entry.step)

    def document(self, entry: Listed, seed: int, zone: tzinfo) -> Node:
        """The order as GetOrder writes it (legacy field names), its times in `zone`."""
        updated = entry.updated_at.astimezone(zone).strftime(_DATE_FORMAT)
        return catalogue.listed_order(
            entry.order_id,
            seed,
            entry.created_at.astimezone(zone).strftime(_DATE_FORMAT),
            f"{updated[8:10]}/{updated[5:7]}/{updated[:4]} noon" if entry.garbled else updated,
            entry.step,
        )

    # -- inside the lock ---------------------------------------------------------------------

    def _insert(self, seller: str, updated_at: datetime, rng: random.Random) -> Listed:
        book = self._sellers.setdefault(seller, {})
        order_id = self._next_id.get(seller, _FIRST_ID)
        self._next_id[seller] = order_id + 1
        created = updated_at - timedelta(seconds=rng.randrange(0, 3 * 86400))
        tie = zlib.crc32(f"{self._seed}:{seller}:{order_id}".encode())
        entry = Listed(order_id, created, updated_at, 0, tie)
        book[order_id] = entry
        return entry

    def _bump(self, entry: Listed, at: datetime) -> None:
        # A change never moves an order back in time: a second change in the same second
        # keeps the second.
        entry.updated_at = max(entry.updated_at, at)
        entry.step += 1


def order_control(
    method: str,
    query: Mapping[str, str],
    add: Callable[[int, float], list[int]],
    change: Callable[[list[int], float], list[int]],
) -> tuple[int, Any]:
    """``POST /_sandbox/orders?count=N[&ago=S]`` adds orders, ``?change=ID,ID[&ago=S]``
    changes them (for observers in other processes): the ids, or 400 with what is wrong."""
    if method != "POST":
        return 405, {"error": f"{method} not allowed on /_sandbox/orders"}
    try:
        ago = float(query.get("ago", "0") or "0")
        if "change" in query:
            ids = [int(part) for part in query["change"].split(",") if part.strip()]
            return 200, {"changed": change(ids, ago)}
        return 200, {"added": add(int(query.get("count", "1")), ago)}
    except ValueError as error:
        return 400, {"error": str(error)}


def _second(moment: datetime) -> datetime:
    """Whole seconds, in UTC, as the API's times are."""
    return moment.astimezone(UTC).replace(microsecond=0)


def parse_api_time(text: str) -> datetime | None:
    """A filter time in the API's own shape, ``2024-03-01T10:00:00+08:00``; None otherwise
    (no ``Z``, no fraction, a numeric offset with a colon)."""
    if len(text) != 25 or text[10] != "T" or text[19] not in "+-" or text[22] != ":":
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None
