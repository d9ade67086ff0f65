"""The legacy Seller Center's entry in the registry of platforms (worker.platforms.registry)."""

from __future__ import annotations

from worker.platforms.base import Connection, Credential, Platform, PlatformEntry, Tokens
from worker.platforms.sellercenter.client import SellerCenterClient
from worker.platforms.sellercenter.platform import SellerCenterPlatform

__all__ = ["SELLERCENTER"]


def _connect(connection: Connection, tokens: Tokens | None) -> Platform:
    client = SellerCenterClient(
        connection.api_url,
        connection.credentials["user_id"],
        connection.secret,
        connect_timeout=connection.connect_timeout,
        read_timeout=connection.read_timeout,
        before_call=connection.before_call,
        after_call=connection.after_call,
    )
    return SellerCenterPlatform(client)


SELLERCENTER = PlatformEntry(
    name="sellercenter",
    description="the legacy Seller Center API",
    credentials=(
        Credential("user_id", "UserID", "the UserID that signs", metavar="ID"),
        Credential("api_key", "API key", "the API key's file", secret=True),
    ),
    connect=_connect,
)
