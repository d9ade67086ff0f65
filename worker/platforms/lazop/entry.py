"""The Lazada Open Platform's entry in the registry of platforms (worker.platforms.registry).

Its sellers authorize the app (L3): an account starts as needing authorization, and its
gateway is the venture's (L9), given as a country or, for Daraz and sandboxes, as a URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit, urlunsplit

from worker.platforms.base import Connection, Credential, Platform, PlatformEntry, Tokens
from worker.platforms.lazop.client import AUTH_URL, GATEWAYS, VENTURE_OFFSETS, LazopClient
from worker.platforms.lazop.platform import LazopPlatform

__all__ = ["LAZOP"]


def _settle(api_url: str | None, credentials: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    settled = dict(credentials)
    country = settled.pop("country", None)
    if (country is None) == (api_url is None):
        raise ValueError(
            "give the account's gateway as a country (--country sg|my|th|vn|ph|id) or as a URL "
            "(--api-url, for Daraz and sandboxes), one of the two"
        )
    if country is not None:
        cleaned = country.strip().lower()
        if cleaned not in GATEWAYS:
            raise ValueError(
                f"country {country[:20]!r} has no Lazada gateway: use one of "
                f"{', '.join(GATEWAYS)}, or give --api-url for Daraz or a sandbox"
            )
        api_url, settled["country"] = GATEWAYS[cleaned], cleaned
    settled.setdefault("auth_url", AUTH_URL)
    assert api_url is not None
    return api_url, settled


def _client(connection: Connection) -> LazopClient:
    return LazopClient(
        connection.api_url,
        connection.credentials["app_key"],
        connection.secret,
        auth_url=connection.credentials.get("auth_url") or AUTH_URL,
        connect_timeout=connection.connect_timeout,
        read_timeout=connection.read_timeout,
        before_call=connection.before_call,
        after_call=connection.after_call,
    )


def _connect(connection: Connection, tokens: Tokens | None) -> Platform:
    if tokens is None:
        raise ValueError(
            f"account {connection.account!r} is an Open Platform account: it needs tokens"
        )
    country = connection.credentials.get("country") or ""
    return LazopPlatform(
        _client(connection),
        tokens.access_token,
        tokens.on_illegal_token,
        VENTURE_OFFSETS.get(country, 8),  # a gateway given as a URL: sg's offset (L11)
    )


def _consent_url(connection: Connection, redirect_uri: str) -> str:
    # The seller's browser opens it: the auth URL's user, password and query are for the
    # token calls, not for the seller to see.
    auth = urlsplit(connection.credentials.get("auth_url") or AUTH_URL)
    path = auth.path.rstrip("/").removesuffix("/rest") + "/oauth/authorize"
    query = {
        "response_type": "code",
        "force_auth": "true",
        "redirect_uri": redirect_uri,
        "client_id": connection.credentials["app_key"],
    }
    return urlunsplit((auth.scheme, auth.netloc.rpartition("@")[2], path, urlencode(query), ""))


LAZOP = PlatformEntry(
    name="lazop",
    description="the Lazada Open Platform (Daraz too)",
    credentials=(
        Credential("country", "country", "sg, my, th, vn, ph or id", required=False, metavar="CC"),
        Credential("app_key", "app key", "the app key", metavar="KEY"),
        Credential("app_secret", "app secret", "the app secret's file", secret=True),
        Credential(
            "auth_url", "auth URL", "where tokens are made", required=False, url=True, metavar="URL"
        ),
    ),
    connect=_connect,
    settle=_settle,
    issuer=_client,
    consent_url=_consent_url,
)
