"""Results of platform calls, in the services' neutral terms.

Frozen so a result can be passed between layers without anyone editing it on the way. Mapping
fields hold plain dicts on purpose: callers store them as JSON, and a read-only proxy would not
serialise.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

__all__ = [
    "CallRecord",
    "ImageError",
    "ImageJobStatus",
    "ImageResult",
    "ListedOrder",
    "Order",
    "OrderPage",
    "RemovalOutcome",
    "SkuFailure",
    "TokenGrant",
]


@dataclass(frozen=True)
class CallRecord:
    """One HTTP attempt, as handed to the ``after_call`` audit hook (never holds secrets)."""

    action: str
    outcome: Literal["ok", "api_error", "transport_error"]
    duration_s: float
    http_status: int | None
    error_code: str | None  # the platform's spelling, e.g. "E901"
    message: str
    throttled: bool = False  # the API asked for fewer calls (the rate limiter slows down)


@dataclass(frozen=True)
class SkuFailure:
    """Why the API refused one SKU: final for that SKU."""

    code: str | None
    message: str


@dataclass(frozen=True)
class RemovalOutcome:
    """What one removal call did to each SKU it sent.

    ``removed`` are gone, ``failed`` were refused for good (with the reason), ``not_applied``
    were left untouched and go again in a new call. Every SKU sent is in exactly one of them.
    ``called`` is False when the platform refused some SKUs before making any call: the others
    were not carried by a call, so it is no attempt of theirs.
    """

    removed: tuple[str, ...]
    failed: Mapping[str, SkuFailure]
    not_applied: tuple[str, ...]
    called: bool = True


@dataclass(frozen=True)
class Order:
    """One order from GetOrder; datetimes are aware and in UTC, ``raw`` keeps every field."""

    order_id: int
    order_number: str
    customer_first_name: str
    customer_last_name: str
    payment_method: str
    remarks: str
    delivery_info: str
    price: Decimal
    gift_option: bool
    gift_message: str
    voucher_code: str
    created_at: datetime | None
    updated_at: datetime | None
    address_billing: Mapping[str, str]
    address_shipping: Mapping[str, str]
    national_registration_number: str
    items_count: int
    promised_shipping_time: str
    extra_attributes: Mapping[str, Any]
    statuses: tuple[str, ...]
    tax_code: str
    branch_number: str
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class ListedOrder:
    """One row of an order listing (order sync). ``updated_at`` is aware UTC, None when the
    answer's time could not be read (``problem`` says why: the order cannot be stored).
    ``raw`` is the row as the platform's ``listed_order`` reads it back (JSON-able: a page
    waiting for its items is kept in the database); ``order`` is the order itself when the
    listing alone makes it (no items call)."""

    order_id: int
    updated_at: datetime | None
    raw: Mapping[str, Any]
    order: Order | None = None
    problem: str | None = None


@dataclass(frozen=True)
class OrderPage:
    """One page of an account's orders by ``updated_at`` ascending; ``rows`` is how many rows
    the answer held (every one, readable or not): fewer than asked ends the listing."""

    orders: tuple[ListedOrder, ...]
    rows: int


@dataclass(frozen=True)
class ImageResult:
    """An image the API finished migrating: its new Lazada ``url`` and hash ``code``."""

    url: str
    code: str
    original_url: str


@dataclass(frozen=True)
class ImageError:
    """An image the API could not migrate; final for that image."""

    original_url: str
    message: str


@dataclass(frozen=True)
class ImageJobStatus:
    """GetResponse for a MigrateImages job (decision D6); ``finished=False`` means poll again."""

    finished: bool
    images: tuple[ImageResult, ...]
    errors: tuple[ImageError, ...]


@dataclass(frozen=True)
class TokenGrant:
    """A seller's authorization as a platform's token endpoints answer it (an authorization
    code exchanged, or a refresh); the repr hides the tokens."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int
    """Seconds the access token lives from now."""
    refresh_expires_in: int
    """Seconds the refresh token lives from now (absolute: refreshing does not extend it)."""
    country: str
    account: str
    seller_id: str
    country_user_info: tuple[Mapping[str, str], ...]
