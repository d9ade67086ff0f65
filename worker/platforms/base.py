"""The seam: `Platform`, the interface the services call (one object per account, shared by
a worker's threads), and `PlatformEntry`, what the rest of the worker knows of a platform
(its name, credentials, how to connect an account, its token endpoints)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from worker.platforms.errors import UnsendableRequest
from worker.platforms.models import (
    CallRecord,
    ImageJobStatus,
    ListedOrder,
    Order,
    OrderPage,
    RemovalOutcome,
    SkuFailure,
    TokenGrant,
)


class Platform(Protocol):
    """One account's API. Each method is one call (`get_order`: `calls_per_order`; a platform
    may re-sign and resend a call once); failures raise worker.platforms.errors, retries belong
    to the caller."""

    @property
    def max_skus_per_call(self) -> int:
        """How many SKUs one `remove_skus` call takes."""

    @property
    def max_urls_per_call(self) -> int:
        """How many image URLs one `submit_images` call takes."""

    @property
    def calls_per_order(self) -> int:
        """How many calls one `get_order` makes: the rate limit reserves them together."""

    @property
    def orders_per_page(self) -> int:
        """How many orders one `list_orders` call asks for."""

    @property
    def ids_per_items_call(self) -> int:
        """How many orders' items one `order_items` call takes; 0: the listing holds whole
        orders (no items call)."""

    @property
    def order_statuses(self) -> tuple[str, ...]:
        """The values `list_orders`'s `status` takes, in the order a crowded second is read
        under them: between them they hold every order (one with items in several statuses
        is under each of them)."""

    def list_orders(
        self, after: datetime, before: datetime, offset: int, status: str | None = None
    ) -> OrderPage:
        """The account's orders with `after` <= updated_at <= `before` (whole seconds, both
        inclusive), by updated_at ascending, `offset` rows in; only those under `status` (one
        of `order_statuses`) when it is given; one call."""

    def order_items(self, order_ids: Sequence[int]) -> Mapping[int, list[dict[str, Any]]]:
        """The items of up to `ids_per_items_call` listed orders, by order id (matched by the
        id the answer names, never by position); `UnknownInBatch` when one id is unknown."""

    def listed_order(self, listed: ListedOrder, items: Sequence[Mapping[str, Any]] | None) -> Order:
        """The order a listing row (and its items) make; `UnusableOrder` if it cannot be
        stored. No call."""

    def remove_skus(self, skus: Sequence[str]) -> RemovalOutcome:
        """Remove up to `max_skus_per_call` distinct SKUs; the outcome says which went."""

    def get_order(self, order_id: int) -> Order:
        """One order; a `PermanentApiError` when the API does not know it."""

    def submit_images(self, urls: Sequence[str]) -> str:
        """Start migrating up to `max_urls_per_call` images; returns the job's request id."""

    def poll_images(self, request_id: str) -> ImageJobStatus:
        """An image job's state; `finished=False` (or a `TransientApiError`) means later."""


def remove_or_refuse(
    skus: Sequence[str], remove: Callable[[Sequence[str]], RemovalOutcome]
) -> RemovalOutcome:
    """`remove(skus)`; when the request cannot be built because of some SKUs (a SellerSku no
    request can carry), those fail for good before any call and the others are left for the
    next one, so one bad SKU never holds back its batch. Every platform's `remove_skus` goes
    through here."""
    try:
        return remove(skus)
    except UnsendableRequest as exc:
        refused = {sku: why for sku, why in exc.refused.items() if sku in skus}
        if not refused:
            raise
        return RemovalOutcome(
            removed=(),
            failed={sku: SkuFailure(None, f"never sent: {why}") for sku, why in refused.items()},
            not_applied=tuple(sku for sku in dict.fromkeys(skus) if sku not in refused),
            called=False,
        )


@dataclass(frozen=True)
class Credential:
    """One value an account of the platform holds. The CLI option is `--NAME` with dashes,
    `--NAME-file` for the secret (read from a file or standard input, never an argument)."""

    name: str  # the key in an account's credentials, e.g. "user_id"
    label: str  # how messages name it, e.g. "UserID"
    help: str
    secret: bool = False  # the signing secret: encrypted at rest, never shown
    required: bool = True
    url: bool = False  # an http(s) URL, checked as one
    metavar: str = "VALUE"  # how `--help` shows its value

    @property
    def option(self) -> str:
        """The `accounts add` option that gives it."""
        return "--" + self.name.replace("_", "-") + ("-file" if self.secret else "")


@dataclass(frozen=True)
class Connection:
    """What a platform's client needs for one account: its endpoint, credentials and secret,
    the timeouts, and the hooks around each HTTP attempt (the rate limit before, the audit
    after)."""

    account: str
    api_url: str
    credentials: Mapping[str, str]
    secret: str = field(repr=False)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    before_call: Callable[[str], None] | None = None
    after_call: Callable[[CallRecord], None] | None = None


@dataclass(frozen=True)
class Tokens:
    """An authorized account's access token, and what to do when the API refuses it: given
    the token that failed, return a fresh one (after a refresh, or the one another worker
    just stored)."""

    access_token: Callable[[], str]
    on_illegal_token: Callable[[str], str]


class TokenIssuer(Protocol):
    """A platform's token endpoints for one app."""

    def create_token(self, code: str) -> TokenGrant:
        """Exchange the code the seller's consent page gave."""

    def refresh_token(self, refresh_token: str) -> TokenGrant:
        """A new pair for a refresh token (which may be rotated by the call)."""

    def close(self) -> None:
        """Let go of the connection pool."""


def _given_url(api_url: str | None, credentials: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    if api_url is None:
        raise ValueError("the account's API URL is required (--api-url)")
    return api_url, dict(credentials)


@dataclass(frozen=True)
class PlatformEntry:
    """One platform, as accounts, tokens, the CLI and the database see it."""

    name: str
    description: str  # one line, for `--help`
    credentials: tuple[Credential, ...]
    connect: Callable[[Connection, Tokens | None], Platform]
    # The account's endpoint and credentials as stored, from what was given at `accounts add`
    # (after each credential's own check): a platform may derive its gateway from a country.
    # A ValueError says what is wrong with what was given.
    settle: Callable[[str | None, Mapping[str, str]], tuple[str, dict[str, str]]] = _given_url
    # Sellers authorize the app (OAuth): accounts start as needing authorization, work waits
    # until they are authorized, and the worker keeps their tokens alive.
    issuer: Callable[[Connection], TokenIssuer] | None = None
    # The seller's consent page for an app and a redirect URI (OAuth platforms).
    consent_url: Callable[[Connection, str], str] | None = None

    def __post_init__(self) -> None:
        secrets = [c for c in self.credentials if c.secret]
        if len(secrets) != 1:
            raise ValueError(f"platform {self.name!r} must have exactly one secret credential")
        if (self.issuer is None) != (self.consent_url is None):
            raise ValueError(f"platform {self.name!r}: issuer and consent_url go together")

    @property
    def secret(self) -> Credential:
        """The credential that signs requests (stored encrypted)."""
        return next(c for c in self.credentials if c.secret)

    @property
    def authorized_by_seller(self) -> bool:
        return self.issuer is not None
