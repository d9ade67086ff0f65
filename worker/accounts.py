"""PLACEHOLDER on the seam branch (replaced by the accounts branch's module at merge)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker.inputs import InvalidInput
from worker.settings import Settings


class UnknownAccount(InvalidInput):
    pass


@dataclass(frozen=True)
class Account:
    name: str
    platform: str
    api_url: str
    rate_limit: float
    user_id: str | None = None
    api_key: str | None = field(default=None, repr=False)
    country: str | None = None
    auth_url: str | None = None
    app_key: str | None = None
    app_secret: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    access_expires_at: datetime | None = None
    refresh_expires_at: datetime | None = None
    seller_id: str | None = None
    state: str = "ready"
    created_at: datetime | None = None


def get_account(session: Any, settings: Settings, name: str | None) -> Account:
    if settings.api_url and settings.user_id and settings.api_key:
        if name is None or name == settings.user_id:
            return Account(
                name=settings.user_id,
                platform="sellercenter",
                api_url=settings.api_url,
                rate_limit=settings.rate_limit,
                user_id=settings.user_id,
                api_key=settings.api_key,
            )
    raise UnknownAccount(f"unknown account {name!r}")
