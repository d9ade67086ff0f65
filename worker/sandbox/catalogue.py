"""Deterministic sample orders, as both Lazada sandboxes serve them.

Orders are written in the legacy API's field names (GetOrder's); the LAZOP sandbox rewrites them
in its own. Order 190 is the GetOrder doc page's sample, field for field (its ``?`` runs and the
``[email protected]`` text are in the page as published). Every other positive id gets an order
drawn from ``random.Random`` seeded with the sandbox seed and the id, so the same id always
answers the same order. About half the orders are in a final status; the others move one step
along their lifecycle every ``advance_seconds`` since the sandbox started, so a scheduled
refresh of open orders has something to find.
"""

from __future__ import annotations

import copy
import json
import random
import re
from datetime import datetime, timedelta
from functools import lru_cache

from worker.sandbox.replies import Node

OPEN_STATUSES = frozenset({"pending", "ready_to_ship", "shipped"})
FINAL_STATUSES = frozenset({"delivered", "canceled", "returned", "failed"})

# Lifecycles with their weights: most orders are delivered, some end another way.
_LIFECYCLES: tuple[tuple[tuple[str, ...], int], ...] = (
    (("pending", "ready_to_ship", "shipped", "delivered"), 6),
    (("pending", "canceled"), 2),
    (("pending", "ready_to_ship", "shipped", "returned"), 1),
    (("pending", "ready_to_ship", "shipped", "failed"), 1),
)

# Per country: first names, last names, (city, post code) pairs, streets, phone prefix.
_COUNTRIES: dict[
    str, tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...], tuple[str, ...], str]
] = {
    "Thailand": (
        ("ภัทรนิดา", "สมชาย", "วิไลวรรณ", "ณัฐพล", "กมลชนก"),
        ("แสนสุข", "ใจดี", "ศรีสวัสดิ์", "วงศ์ใหญ่"),
        (("กรุงเทพมหานคร", "10400"), ("เชียงใหม่", "50200"), ("ขอนแก่น", "40000")),
        ("ถนนพหลโยธิน", "ซอยสุขุมวิท 21", "ถนนนิมมานเหมินท์"),
        "08",
    ),
    "Vietnam": (
        ("Phương", "Đức", "Thảo", "Quỳnh", "Hưng"),
        ("Nguyễn", "Trần", "Lê", "Phạm"),
        (("Hà Nội", "100000"), ("Hồ Chí Minh", "700000"), ("Đà Nẵng", "550000")),
        ("Đường Lê Lợi", "Phố Huế", "Đường Nguyễn Trãi"),
        "09",
    ),
    "Malaysia": (
        ("Siti Nurhaliza", "Ahmad Zulkifli", "Mei Ling 美玲", "Kavitha"),
        ("binti Ismail", "bin Abdullah", "陈", "Raman"),
        (("Kuala Lumpur", "50450"), ("George Town", "10200"), ("Johor Bahru", "80000")),
        ("Jalan Bukit Bintang", "Lebuh Chulia", "Jalan Tebrau"),
        "01",
    ),
    "Philippines": (
        ("José", "María Cristina", "Niño", "Zoë"),
        ("Dela Cruz", "Peñaflor", "Santos", "Ibáñez"),
        (("Quezon City", "1100"), ("Parañaque", "1700"), ("Cebu City", "6000")),
        ("Calle Real", "Rizal Avenue", "Osmeña Boulevard"),
        "09",
    ),
    "Indonesia": (
        ("Dewi", "Budi", "Ayu", "Ñoman"),
        ("Santoso", "Wijaya", "Hartono", "Siregar"),
        (("Jakarta", "10110"), ("Surabaya", "60111"), ("Bandung", "40111")),
        ("Jalan Sudirman", "Jalan Malioboro", "Jalan Asia Afrika"),
        "08",
    ),
    "Singapore": (
        ("伟明", "Siobhán", "Zhì Qiáng", "Aisyah"),
        ("陈", "Tan", "Lim", "Ng"),
        (("Singapore", "238859"), ("Singapore", "018989"), ("Singapore", "560123")),
        ("Orchard Road", "Marina Boulevard", "Ang Mo Kio Avenue 3"),
        "9",
    ),
}
_PAYMENT_METHODS = ("CashOnDelivery", "CreditCard", "MixedPayment", "Paypal")
_GIFT_MESSAGES = ("สุขสันต์วันเกิด", "Chúc mừng sinh nhật!", "Selamat Hari Raya", "Happy birthday ❤")
_ORDER_ID = re.compile(r"[0-9]{1,18}")
_EPOCH = datetime(2015, 1, 1)
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def _address(
    first: str, last: str, phone: str, street: str, city: str, post: str, country: str, email: str
) -> Node:
    return {
        "FirstName": first,
        "LastName": last,
        "Phone": phone,
        "Phone2": "",
        "Address1": street,
        "Address2": "",
        "Address3": "",
        "Address4": "",
        "Address5": "",
        "CustomerEmail": email,
        "City": city,
        "Ward": "",
        "Region": "",
        "PostCode": post,
        "Country": country,
    }


SAMPLE_ORDER_ID = 190
SAMPLE_ORDER: Node = {
    "OrderId": "190",
    "CustomerFirstName": "ภัทรนิดา แสนสุข",
    "CustomerLastName": "",
    "OrderNumber": "300125759",
    "PaymentMethod": "CashOnDelivery",
    "Remarks": "",
    "DeliveryInfo": "",
    "Price": "100.00",
    "GiftOption": "0",
    "GiftMessage": "",
    "VoucherCode": "",
    "CreatedAt": "2015-03-24 16:09:22",
    "UpdatedAt": "2015-03-24 16:09:22",
    "AddressBilling": _address(
        "First Name 3 Test",
        "First Name 3 Test",
        "0925090880",
        "Configure this street and number",
        "Configure city",
        "33333",
        "Thailand",
        "[email protected]",
    ),
    "AddressShipping": {
        **_address(
            "??????? ???????????",
            "",
            "0925090880",
            "121 ???? 4 ",
            "?????????????-??????-10400",
            "10400",
            "Thailand",
            "[email protected]",
        ),
        "Address2": "?????????????????",
    },
    "NationalRegistrationNumber": "",
    "ItemsCount": "12",
    "ExtraAttributes": '{"TaxInvoiceRequested":"true"}',
    "Statuses": {
        "Status": [
            "shipped",
            "returned",
            "return_waiting_for_approval",
            "return_shipped_by_customer",
            "return_rejected",
            "ready_to_ship",
            "processing",
            "pending",
            "failed",
            "delivered",
            "canceled",
        ]
    },
    "TaxCode": "1234",
    "BranchNumber": "2222",
}


def parse_order_id(raw: str) -> int | None:
    """The order id a request names, or None if it is not a positive number of 1-18 digits."""
    if not _ORDER_ID.fullmatch(raw) or int(raw) <= 0:
        return None
    return int(raw)


def order(order_id: int, seed: int, elapsed: float, advance_seconds: float) -> Node:
    """The order as GetOrder shows it ``elapsed`` seconds after the sandbox started."""
    if order_id == SAMPLE_ORDER_ID:
        return SAMPLE_ORDER
    plan = _plan(order_id, seed)
    steps = int(elapsed / advance_seconds + plan.phase) if advance_seconds > 0 else 0
    position = min(plan.start + steps, len(plan.lifecycle) - 1)
    statuses = _statuses(plan, position)
    document = dict(plan.document)  # shallow: only the changing fields are replaced
    updated = plan.created + timedelta(hours=plan.hours_per_step * (position + 1))
    document["UpdatedAt"] = updated.strftime(_DATE_FORMAT)
    document["Statuses"] = {"Status": statuses}
    return document


def listed_order(order_id: int, seed: int, created: str, updated: str, step: int) -> Node:
    """An order of a seller's listing (worker.sandbox.order_book): the catalogue's order for
    its id, with the listing's times and the status its `step` has reached."""
    plan = _plan(order_id, seed)
    document = dict(plan.document)
    document["OrderId"] = str(order_id)
    document["CreatedAt"] = created
    document["UpdatedAt"] = updated
    document["Statuses"] = {"Status": listed_statuses(order_id, seed, step)}
    return document


def listed_statuses(order_id: int, seed: int, step: int) -> list[str]:
    """The statuses of a listed order's items at its `step` (what its document shows)."""
    plan = _plan(order_id, seed)
    return _statuses(plan, step % len(plan.lifecycle))


def _statuses(plan: _Plan, position: int) -> list[str]:
    """The statuses of an order's items at a `position` of its lifecycle: one, or two when
    its items part ways."""
    status = plan.lifecycle[position]
    if plan.split and status in OPEN_STATUSES and position > 0:
        return [plan.lifecycle[position - 1], status]  # some items lag one step behind
    if plan.split and status == "delivered":
        return [status, "returned"]  # and some come back
    return [status]


class _Plan:
    """The parts of an order fixed by its id and the seed (cached: GetOrder is hot)."""

    __slots__ = ("created", "document", "hours_per_step", "lifecycle", "phase", "split", "start")

    def __init__(self, order_id: int, seed: int) -> None:
        rng = random.Random(f"lazada-sandbox-order:{seed}:{order_id}")
        lifecycles = [lifecycle for lifecycle, _weight in _LIFECYCLES]
        weights = [weight for _lifecycle, weight in _LIFECYCLES]
        self.lifecycle: tuple[str, ...] = rng.choices(lifecycles, weights)[0]
        final = rng.random() < 0.5
        last = len(self.lifecycle) - 1
        self.start = last if final else rng.randrange(last)
        self.phase = rng.random()  # so open orders don't all advance at the same moment
        self.hours_per_step = rng.randint(2, 48)
        self.created = _EPOCH + timedelta(seconds=rng.randrange(3 * 365 * 86400))
        items = rng.choice((1, 1, 1, 2, 3, 5, 12))
        self.split = items > 1 and rng.random() < 0.3

        country = rng.choice(sorted(_COUNTRIES))
        firsts, lasts, cities, streets, phone_prefix = _COUNTRIES[country]
        first, last_name = rng.choice(firsts), rng.choice(lasts)
        city, post = rng.choice(cities)
        phone = phone_prefix + "".join(rng.choice("0123456789") for _ in range(8))
        street = f"{rng.randint(1, 999)} {rng.choice(streets)}"
        email = f"customer{order_id}@example.com"
        shipping = _address(first, last_name, phone, street, city, post, country, email)
        if rng.random() < 0.8:
            billing = dict(shipping)
        else:
            other_city, other_post = rng.choice(cities)
            billing = _address(
                rng.choice(firsts),
                rng.choice(lasts),
                phone,
                f"{rng.randint(1, 999)} {rng.choice(streets)}",
                other_city,
                other_post,
                country,
                email,
            )
        gift = rng.random() < 0.1
        taxed = country in ("Thailand", "Vietnam")
        self.document: Node = {
            "OrderId": str(order_id),
            "CustomerFirstName": first,
            "CustomerLastName": last_name,
            "OrderNumber": str(300_000_000 + rng.randrange(100_000_000)),
            "PaymentMethod": rng.choice(_PAYMENT_METHODS),
            "Remarks": "",
            "DeliveryInfo": "",
            "Price": f"{rng.randint(100, 2_500_000) / 100:.2f}",
            "GiftOption": "1" if gift else "0",
            "GiftMessage": rng.choice(_GIFT_MESSAGES) if gift else "",
            "VoucherCode": f"VOUCHER{rng.randint(100, 999)}" if rng.random() < 0.15 else "",
            "CreatedAt": self.created.strftime(_DATE_FORMAT),
            "UpdatedAt": "",
            "AddressBilling": billing,
            "AddressShipping": shipping,
            "NationalRegistrationNumber": "",
            "ItemsCount": str(items),
            "ExtraAttributes": json.dumps(
                {"TaxInvoiceRequested": "true" if rng.random() < 0.3 else "false"},
                separators=(",", ":"),
            ),
            "Statuses": {"Status": []},
            "TaxCode": str(rng.randint(1000, 9999)) if taxed else "",
            "BranchNumber": str(rng.randint(1000, 9999)) if country == "Thailand" else "",
        }


@lru_cache(maxsize=8192)
def _plan(order_id: int, seed: int) -> _Plan:
    return _Plan(order_id, seed)


def sample_order() -> Node:
    """A deep copy of order 190, for tests that compare against the doc page."""
    return copy.deepcopy(SAMPLE_ORDER)
