"""Validation at the task and CLI boundary: one message that says what is wrong and what to do.

One rule for every identifier a caller gives (SellerSkus, keys, RequestIds, image URLs), from
arguments, SKU files and tasks alike: after surrounding spaces and tabs are removed, it holds
only printable characters (``str.isprintable``: letters, marks, digits, punctuation, symbols
and the plain space). Refused: controls (C0, DEL, C1), line and paragraph separators, every
other space, format characters (zero-width, bidi overrides, BOM), surrogates (undecodable bytes
of argv), private-use and unassigned code points (U+FFFE, U+FFFF). A SellerSku is a visible
identifier, and every printable character is one XML can carry, so an accepted value can
always be sent.
"""

from __future__ import annotations

import ipaddress
import math
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import idna

MAX_SKU_LENGTH = 255
MAX_KEY_LENGTH = 255
MAX_SKUS_PER_JOB = 1_000_000
MAX_URLS_PER_MIGRATION = 10_000
IMAGE_ACTIONS = ("MigrateImages", "UploadImages")
_SURROUNDING = " \t"
_ORDER_ID = re.compile(r"[0-9]+")  # ASCII digits: str.isdigit() also takes superscripts


class InvalidInput(ValueError):
    """Bad input from a caller; nothing was recorded."""


def unprintable(text: str) -> str | None:
    """The first character of ``text`` the input rule refuses, or None (the fast path is C)."""
    if text.isprintable():
        return None
    return next(char for char in text if not char.isprintable())


_UNNAMED = {
    "Cc": "a control character",
    "Cs": "a lone surrogate, from bytes that are not UTF-8",
    "Cn": "a non-character or unassigned code point",
    "Co": "a private-use character",
}


def describe_character(char: str) -> str:
    """``U+200B ZERO WIDTH SPACE``: a refused character named, since it may be invisible."""
    category = unicodedata.category(char)
    name = unicodedata.name(char, "") if category != "Cc" else ""
    return f"U+{ord(char):04X} ({name or _UNNAMED.get(category, category)})"


def _refuse_unprintable(what: str, value: str) -> None:
    char = unprintable(value)
    if char is not None:
        raise InvalidInput(
            f"{what} {value!r} holds {describe_character(char)}; only visible characters "
            "and the plain space are accepted (see README, 'What a SKU may hold')"
        )


def clean_skus(skus: Any) -> list[str]:
    """SellerSkus with surrounding spaces and tabs removed and duplicates dropped, in order."""
    if isinstance(skus, str) or not isinstance(skus, list | tuple):
        raise InvalidInput(f"skus must be a list of SellerSku strings, got {type(skus).__name__}")
    cleaned: dict[str, None] = {}
    for position, sku in enumerate(skus, start=1):
        if not isinstance(sku, str):
            raise InvalidInput(f"SKU #{position} must be a string, got {type(sku).__name__}")
        sku = sku.strip(_SURROUNDING)
        if not sku:
            raise InvalidInput(f"SKU #{position} is empty; remove the blank entry")
        if len(sku) > MAX_SKU_LENGTH:
            raise InvalidInput(
                f"SKU #{position} is {len(sku)} characters long; "
                f"a SellerSku has at most {MAX_SKU_LENGTH}"
            )
        _refuse_unprintable(f"SKU #{position}", sku)
        cleaned[sku] = None
    if not cleaned:
        raise InvalidInput("no SKUs given: pass at least one SellerSku")
    if len(cleaned) > MAX_SKUS_PER_JOB:
        raise InvalidInput(
            f"{len(cleaned)} SKUs in one job; split them into jobs of at most {MAX_SKUS_PER_JOB}"
        )
    return list(cleaned)


def sku_lines(text: str) -> list[str]:
    """The SKUs of a file's text: one a ``\\n``-terminated line (``\\r\\n`` too), blank lines
    skipped. Unlike ``str.splitlines`` no other character ends a line: a ``\\x0b``, ``\\x85``
    or ``\\u2028`` stays in its SKU, which ``clean_skus`` then refuses."""
    lines = (line.removesuffix("\r") for line in text.split("\n"))
    return [line for line in lines if line.strip(_SURROUNDING)]


def read_sku_file(path: str) -> list[str]:
    """``sku_lines`` of a UTF-8 file, or of standard input for ``-``."""
    try:
        # Bytes, not text: text mode would also end lines at a lone \r.
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        return sku_lines(data.decode("utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"SKU file {path!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"SKU file {path!r} cannot be read: {exc}") from None


def clean_key(key: Any) -> str | None:
    """An idempotency key, or None to use the task id."""
    if key is None:
        return None
    if not isinstance(key, str):
        raise InvalidInput(f"key must be a string, got {type(key).__name__}")
    cleaned = key.strip(_SURROUNDING)
    if not cleaned:
        raise InvalidInput("key is empty: give a non-blank key, or none to use the task id")
    if len(cleaned) > MAX_KEY_LENGTH:
        raise InvalidInput(f"key is {len(cleaned)} characters long; at most {MAX_KEY_LENGTH}")
    _refuse_unprintable("key", cleaned)
    return cleaned


def clean_order_id(order_id: Any) -> int:
    """A positive integer order id (a string of ASCII digits is accepted, as the CLI passes)."""
    value = order_id
    if isinstance(value, str) and _ORDER_ID.fullmatch(value.strip(_SURROUNDING)):
        value = int(value.strip(_SURROUNDING))
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(f"order id must be a positive integer, got {order_id!r}")
    if value >= 2**63:
        raise InvalidInput(f"order id {order_id!r} is too large")
    return value


def clean_urls(urls: Any) -> list[str]:
    """Image URLs: http(s), a valid host and port, no spaces; duplicates dropped, order kept."""
    if isinstance(urls, str) or not isinstance(urls, list | tuple):
        raise InvalidInput(f"urls must be a list of http(s) URLs, got {type(urls).__name__}")
    cleaned: dict[str, None] = {}
    for position, url in enumerate(urls, start=1):
        if not isinstance(url, str):
            raise InvalidInput(f"URL #{position} must be a string, got {type(url).__name__}")
        url = url.strip(_SURROUNDING)
        problem = _url_problem(url)
        if problem is not None:
            raise InvalidInput(f"URL #{position} {url!r} {problem}")
        cleaned[url] = None
    if not cleaned:
        raise InvalidInput("no image URLs given: pass at least one http(s) URL")
    if len(cleaned) > MAX_URLS_PER_MIGRATION:
        raise InvalidInput(f"{len(cleaned)} URLs; at most {MAX_URLS_PER_MIGRATION} a migration")
    return list(cleaned)


def _url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as an image URL, or None."""
    char = unprintable(url) or (" " if " " in url else None)
    if char is not None:
        return f"holds {describe_character(char)}; percent-encode it (a space is %20)"
    try:
        parts = urlsplit(url)
        port = parts.port  # parsed on access: "Port out of range 0-65535"
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s) URL with a host"
    if port == 0:
        return "has port 0; give a port from 1 to 65535"
    if not _valid_host(parts.hostname):
        return f"has an invalid host name {parts.hostname!r}"
    return None


def _valid_host(host: str) -> bool:
    """An IP address, or a DNS name (internationalised names included, as IDNA 2008 has it)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        idna.encode(host, uts46=True)
    except idna.IDNAError:
        return False
    return True


def clean_request_id(request_id: Any) -> str:
    if not isinstance(request_id, str) or not request_id.strip(_SURROUNDING):
        raise InvalidInput(f"request id must be a non-empty string, got {request_id!r}")
    cleaned = request_id.strip(_SURROUNDING)
    if len(cleaned) > 255 or unprintable(cleaned) is not None:
        raise InvalidInput(f"request id {cleaned[:40]!r} is not a Seller Center RequestId")
    return cleaned


def clean_action(action: Any) -> str:
    if action not in IMAGE_ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(IMAGE_ACTIONS)}, got {action!r}")
    return str(action)


# A deferral's message runs at its slot (its countdown), so the slot it carries is never
# further ahead of the clock than this when it runs; one that is, is not the worker's own.
SLOT_AHEAD = 1.0


def clean_slot(slot: Any, now: float) -> float | None:
    """A deferred message's reserved call slot (internal, worker.ratelimit, from the worker's
    own message header): a time as seconds since the epoch, or None. Work that carries one
    makes its call then without asking the limiter again, so anything that is not a slot the
    worker could have given (not a number, more than SLOT_AHEAD s ahead of `now`) is None:
    the work takes a new slot from the limiter, as if it had carried none."""
    if isinstance(slot, bool) or not isinstance(slot, int | float) or not math.isfinite(slot):
        return None
    if slot > now + SLOT_AHEAD:
        return None
    return float(slot)
