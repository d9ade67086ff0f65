"""Product removal as both Lazada sandboxes simulate it: the rules of a call, and the record.

A call names at most :data:`MAX_SKUS_PER_CALL` SellerSkus and is all or nothing: one SKU matching
a ``failing_skus`` pattern fails the whole call, naming each such SKU once. Each SellerSku
occurrence of a successful call counts as one removal, so a SKU sent twice (in one call or in two)
shows up in the counts; removing a removed SKU again succeeds.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

MAX_SKUS_PER_CALL = 50


def failing_skus(skus: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """The SKUs (each once, in order) matching one of the fnmatch `patterns` (case-sensitive)."""
    patterns = tuple(patterns)
    return [
        sku for sku in dict.fromkeys(skus) if any(fnmatchcase(sku, pattern) for pattern in patterns)
    ]


class Removals:
    """Thread-safe count of removals per account and SellerSku."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def record(self, skus: Iterable[str], account: str = "") -> None:
        with self._lock:
            self._counts.update((account, sku) for sku in skus)

    def counts(self, account: str | None = None) -> Counter[str]:
        """How many times each SellerSku was removed, for one account or all of them."""
        with self._lock:
            counts: Counter[str] = Counter()
            for (owner, sku), count in self._counts.items():
                if account is None or owner == account:
                    counts[sku] += count
            return counts

    def stats(self) -> dict[str, Any]:
        """stats()'s removal counters, over every account."""
        counts = self.counts()
        return {
            "skus_removed": len(counts),
            "removals": sum(counts.values()),
            "skus_removed_more_than_once": sum(1 for count in counts.values() if count > 1),
        }
