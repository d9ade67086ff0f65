"""Validation at the task and CLI boundary: one message that says what is wrong and what to do."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

MAX_SKU_LENGTH = 255
MAX_KEY_LENGTH = 255
MAX_SKUS_PER_JOB = 1_000_000
MAX_URLS_PER_MIGRATION = 10_000
IMAGE_ACTIONS = ("MigrateImages", "UploadImages")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f]")  # a regex: a loop over characters took 2 us a SKU


class InvalidInput(ValueError):
    """Bad input from a caller; nothing was recorded."""


def clean_skus(skus: Any) -> list[str]:
    """SellerSkus with surrounding white space removed and duplicates dropped, in order."""
    if isinstance(skus, str) or not isinstance(skus, list | tuple):
        raise InvalidInput(f"skus must be a list of SellerSku strings, got {type(skus).__name__}")
    cleaned: dict[str, None] = {}
    for position, sku in enumerate(skus, start=1):
        if not isinstance(sku, str):
            raise InvalidInput(f"SKU #{position} must be a string, got {type(sku).__name__}")
        sku = sku.strip()
        if not sku:
            raise InvalidInput(f"SKU #{position} is empty; remove the blank entry")
        if len(sku) > MAX_SKU_LENGTH:
            raise InvalidInput(
                f"SKU #{position} is {len(sku)} characters long; "
                f"a SellerSku has at most {MAX_SKU_LENGTH}"
            )
        if _CONTROL_CHARACTER.search(sku):
            raise InvalidInput(f"SKU #{position} {sku!r} contains control characters")
        cleaned[sku] = None
    if not cleaned:
        raise InvalidInput("no SKUs given: pass at least one SellerSku")
    if len(cleaned) > MAX_SKUS_PER_JOB:
        raise InvalidInput(
            f"{len(cleaned)} SKUs in one job; split them into jobs of at most {MAX_SKUS_PER_JOB}"
        )
    return list(cleaned)


def clean_key(key: Any) -> str | None:
    """An idempotency key, or None to use the task id."""
    if key is None:
        return None
    if not isinstance(key, str):
        raise InvalidInput(f"key must be a string, got {type(key).__name__}")
    cleaned = key.strip()
    if not cleaned:
        raise InvalidInput("key is empty: give a non-blank key, or none to use the task id")
    if len(cleaned) > MAX_KEY_LENGTH:
        raise InvalidInput(f"key is {len(cleaned)} characters long; at most {MAX_KEY_LENGTH}")
    return cleaned


def clean_order_id(order_id: Any) -> int:
    """A positive integer order id (a numeric string is accepted, as the CLI passes them)."""
    value = order_id
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(f"order id must be a positive integer, got {order_id!r}")
    if value >= 2**63:
        raise InvalidInput(f"order id {order_id!r} is too large")
    return value


def clean_urls(urls: Any) -> list[str]:
    """Image URLs: http(s) with a host; duplicates dropped, order kept."""
    if isinstance(urls, str) or not isinstance(urls, list | tuple):
        raise InvalidInput(f"urls must be a list of http(s) URLs, got {type(urls).__name__}")
    cleaned: dict[str, None] = {}
    for position, url in enumerate(urls, start=1):
        if not isinstance(url, str):
            raise InvalidInput(f"URL #{position} must be a string, got {type(url).__name__}")
        url = url.strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"URL #{position} {url!r} is not an http(s) URL with a host")
        cleaned[url] = None
    if not cleaned:
        raise InvalidInput("no image URLs given: pass at least one http(s) URL")
    if len(cleaned) > MAX_URLS_PER_MIGRATION:
        raise InvalidInput(f"{len(cleaned)} URLs; at most {MAX_URLS_PER_MIGRATION} a migration")
    return list(cleaned)


def clean_request_id(request_id: Any) -> str:
    if not isinstance(request_id, str) or not request_id.strip():
        raise InvalidInput(f"request id must be a non-empty string, got {request_id!r}")
    cleaned = request_id.strip()
    if len(cleaned) > 255 or not cleaned.isprintable():
        raise InvalidInput(f"request id {cleaned[:40]!r} is not a Seller Center RequestId")
    return cleaned


def clean_action(action: Any) -> str:
    if action not in IMAGE_ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(IMAGE_ACTIONS)}, got {action!r}")
    return str(action)
