"""Request authentication as the legacy API does it (decisions D1, D2).

Written independently of ``worker.platforms.sellercenter`` on purpose: the sandbox is the check of
the client's signing, so the two must not share code.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl, quote

from worker.sandbox.sellercenter.errors import ErrorDetail, SellerCenterErrorAnswer

MANDATORY = ("Action", "Timestamp", "UserID", "Version", "Signature")
API_VERSION = "1.0"

# ISO 8601 as the SDKs send it: seconds and fractions optional; Z, +HH:MM or +HHMM required.
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?"
    r"(?:(Z)|([+-])(\d{2}):?(\d{2}))"
)


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """The query's name/value pairs, decoded as PHP would (``+`` is a space); E005 if malformed."""
    try:
        return parse_qsl(raw_query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise SellerCenterErrorAnswer(
            5, details=[ErrorDetail("QueryString", "Malformed query string")]
        ) from None


def string_to_sign(pairs: Iterable[tuple[str, str]]) -> str:
    """Every pair but Signature, sorted by name (code points), RFC 3986-encoded, joined by ``&``."""
    kept = sorted((pair for pair in pairs if pair[0] != "Signature"), key=lambda pair: pair[0])
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in kept)


def signature(pairs: Iterable[tuple[str, str]], api_key: str) -> str:
    """Lowercase hex HMAC-SHA256 of :func:`string_to_sign` with the API key as plain text."""
    message = string_to_sign(pairs).encode("utf-8")
    return hmac.new(api_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def parse_timestamp(text: str) -> datetime:
    """An aware datetime from the API's ISO 8601 flavours; ValueError for anything else."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"not an ISO 8601 timestamp with an offset: {text!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    if zulu:
        zone = UTC
    else:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        zone = timezone(-offset if sign == "-" else offset)
    return datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute),
        int(second or 0),
        int((fraction or "0").ljust(6, "0")),
        tzinfo=zone,
    )


def authenticate(
    pairs: list[tuple[str, str]],
    params: Mapping[str, str],
    *,
    user_id: str,
    api_key: str,
    max_clock_skew: float,
    now: datetime,
) -> None:
    """Raise the error answer the real API would give for this request's common parameters.

    Checked in this order: E001 (mandatory, in the order of :data:`MANDATORY`), E002, E004,
    E003, E007 (unknown UserID, then signature). The signature must be lowercase hex, as every
    SDK sends it; an uppercase one is a mismatch here so the client's bug shows.
    """
    for name in MANDATORY:
        if not params.get(name):
            raise SellerCenterErrorAnswer(1, name)
    if params["Version"] != API_VERSION:
        raise SellerCenterErrorAnswer(2)
    try:
        sent_at = parse_timestamp(params["Timestamp"])
    except ValueError:
        raise SellerCenterErrorAnswer(4) from None
    if abs((now - sent_at).total_seconds()) > max_clock_skew:
        raise SellerCenterErrorAnswer(3)
    if not hmac.compare_digest(params["UserID"].encode("utf-8"), user_id.encode("utf-8")):
        raise SellerCenterErrorAnswer(7)
    expected = signature(pairs, api_key).encode("ascii")
    if not hmac.compare_digest(expected, params["Signature"].encode("utf-8")):
        raise SellerCenterErrorAnswer(7)
