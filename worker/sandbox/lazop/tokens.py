"""Seller authorization: codes, access tokens and rotating refresh tokens (decisions L3, L4).

A code is single-use and lives 30 minutes. A refresh answers a new access token and a new
refresh token and makes the old refresh token invalid at once (the old access token lives on
until it expires); the refresh token's lifetime is absolute, counted from the code's exchange.
Tokens are random, so no two sandboxes (or runs) share one.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, replace

from worker.sandbox.lazop.errors import LazopErrorAnswer

CODE_SECONDS = 1800.0


@dataclass(frozen=True)
class Grant:
    """One seller's current token pair and when each part expires (time.monotonic())."""

    seller: str
    access_token: str
    refresh_token: str
    access_expires: float
    refresh_expires: float


class Authority:
    """Thread-safe store of codes and tokens for every seller of the app."""

    def __init__(self) -> None:
        self._codes: dict[str, tuple[str, float]] = {}
        self._by_access: dict[str, Grant] = {}
        self._by_refresh: dict[str, Grant] = {}
        self._lock = threading.Lock()

    def authorization_code(self, seller: str) -> str:
        """A fresh code, as the consent page would redirect with after the seller said yes."""
        code = "0_" + secrets.token_hex(16)
        with self._lock:
            self._codes[code] = (seller, time.monotonic() + CODE_SECONDS)
        return code

    def create(self, code: str, access_seconds: float, refresh_seconds: float) -> Grant:
        now = time.monotonic()
        with self._lock:
            seller, expires = self._codes.pop(code, ("", 0.0))
            if not seller or expires < now:
                raise LazopErrorAnswer("InvalidCode")
            return self._issue(seller, now + access_seconds, now + refresh_seconds)

    def refresh(self, refresh_token: str, access_seconds: float) -> Grant:
        now = time.monotonic()
        with self._lock:
            grant = self._by_refresh.pop(refresh_token, None)
            if grant is None or grant.refresh_expires <= now:
                raise LazopErrorAnswer("IllegalRefreshToken")
            return self._issue(grant.seller, now + access_seconds, grant.refresh_expires)

    def seller_for(self, access_token: str) -> str:
        """The seller an access token was issued to; IllegalAccessToken if it is not valid."""
        with self._lock:
            grant = self._by_access.get(access_token)
        if grant is None or grant.access_expires <= time.monotonic():
            raise LazopErrorAnswer("IllegalAccessToken")
        return grant.seller

    def revoke(self, seller: str) -> None:
        """The seller withdrew the app's authorization: every token of theirs stops working."""
        with self._lock:
            for table in (self._by_access, self._by_refresh):
                for token in [token for token, grant in table.items() if grant.seller == seller]:
                    del table[token]

    def expire_access_tokens(self, seller: str) -> None:
        """Make the seller's access tokens expired now (the refresh token still works)."""
        now = time.monotonic()
        with self._lock:
            for token, grant in list(self._by_access.items()):
                if grant.seller == seller:
                    self._by_access[token] = replace(grant, access_expires=now)

    def _issue(self, seller: str, access_expires: float, refresh_expires: float) -> Grant:
        grant = Grant(
            seller=seller,
            access_token="50000" + secrets.token_hex(20),
            refresh_token="50001" + secrets.token_hex(20),
            access_expires=access_expires,
            refresh_expires=refresh_expires,
        )
        self._by_access[grant.access_token] = grant
        self._by_refresh[grant.refresh_token] = grant
        return grant
