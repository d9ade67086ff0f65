"""Request signing for the legacy Seller Center API (decision D1).

The server recomputes the HMAC over the query string it receives, so the string we sign must be
the string we send, byte for byte: we encode it ourselves and never let an HTTP library touch it.
"""

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote

__all__ = ["canonical_query", "format_timestamp", "sign", "signed_query"]


def _encode(text: str) -> str:
    # RFC 3986 (PHP rawurlencode): only A-Z a-z 0-9 - _ . ~ stay as they are; space is %20.
    return quote(text, safe="")


def canonical_query(params: Mapping[str, str]) -> str:
    """Return the string to sign: names sorted by code point, ``name=value`` joined by ``&``."""
    return "&".join(f"{_encode(name)}={_encode(params[name])}" for name in sorted(params))


def sign(params: Mapping[str, str], api_key: str) -> str:
    """Return the lowercase hex HMAC-SHA256 of ``canonical_query(params)`` keyed by ``api_key``.

    The key is used as a plain UTF-8 string even though it looks like hex (Falabella docs).
    """
    message = canonical_query(params).encode("utf-8")
    return hmac.new(api_key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signed_query(params: Mapping[str, str], api_key: str) -> str:
    """Return the query string to send: the canonical query plus ``&Signature=<hex>``."""
    if "Signature" in params:
        raise ValueError("Signature is computed here and must not be passed in")
    return f"{canonical_query(params)}&Signature={sign(params, api_key)}"


def format_timestamp(moment: datetime) -> str:
    """Format ``moment`` as ``YYYY-MM-DDTHH:MM:SS+00:00`` in UTC; a naive value is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
