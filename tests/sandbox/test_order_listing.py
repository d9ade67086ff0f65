"""Both sandboxes' order listings (GetOrders, /orders/get, /orders/items/get): their limits and
errors, times in each API's shape, the status filter, and the knobs that add and change
orders."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from lxml import etree

from tests.sandbox.test_sellercenter_sandbox import call, error_code, xml
from tests.support.lazop import raw_call, started
from worker.sandbox.lazop import LazopSandbox, LazopSandboxConfig
from worker.sandbox.sellercenter import Sandbox, SandboxConfig

SG = timezone(timedelta(hours=8))


def lazop_time(moment: datetime) -> str:
    return moment.astimezone(SG).strftime("%Y-%m-%dT%H:%M:%S+08:00")


@pytest.fixture
def lazop() -> Iterator[LazopSandbox]:
    config = LazopSandboxConfig(sellers=("alice",), listed_orders=250, listed_days=1.0)
    yield from started(LazopSandbox(config))


@pytest.fixture
def legacy() -> Iterator[Sandbox]:
    sandbox = Sandbox(SandboxConfig(listed_orders=120, listed_days=1.0))
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def token(sandbox: LazopSandbox) -> str:
    answer = raw_call(
        sandbox, "/auth/token/create", {"code": sandbox.authorization_code("alice")}, auth=True
    )
    return str(answer["access_token"])


def orders_get(sandbox: LazopSandbox, access: str, **params: str) -> dict[str, Any]:
    base = {
        "access_token": access,
        "update_after": lazop_time(datetime.now(UTC) - timedelta(days=2)),
        "sort_by": "updated_at",
        "sort_direction": "ASC",
        "limit": "100",
    }
    return raw_call(sandbox, "/orders/get", {**base, **params})


def test_lazop_listing_pages_by_updated_at_in_the_ventures_offset(lazop: LazopSandbox) -> None:
    access = token(lazop)
    seen: list[tuple[str, str]] = []
    for offset in (0, 100, 200):
        answer = orders_get(lazop, access, offset=str(offset))
        assert answer["code"] == "0", answer
        data: Any = answer["data"]
        seen += [(o["updated_at"], o["order_id"]) for o in data["orders"]]
    assert len(seen) == 250 and len({order_id for _, order_id in seen}) == 250
    assert all(stamp.endswith(" +0800") for stamp, _ in seen)
    moments = [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S %z") for stamp, _ in seen]
    assert moments == sorted(moments)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"update_after": "2024-03-01T10:00:00Z"}, "17"),
        ({"update_after": "2024-03-01 10:00:00+08:00"}, "17"),
        ({"update_after": "2024-03-01T10:00:00.5+08:00"}, "17"),
        ({"limit": "101"}, "19"),
        ({"offset": "4501"}, "14"),
        ({"sort_direction": "DESC"}, "75"),
        ({"status": "all"}, "36"),
        ({"status": "PENDING"}, "36"),
    ],
)
def test_lazop_listing_refuses_what_the_api_refuses(
    lazop: LazopSandbox, params: dict[str, str], code: str
) -> None:
    assert orders_get(lazop, token(lazop), **params)["code"] == code


def lazop_listed(sandbox: LazopSandbox, access: str, **params: str) -> dict[int, list[str]]:
    """Every order the listing holds, paged to its end: each one's statuses by its id."""
    found: dict[int, list[str]] = {}
    offset = 0
    while True:
        answer = orders_get(sandbox, access, offset=str(offset), **params)
        assert answer["code"] == "0", answer
        data: Any = answer["data"]
        found.update({int(o["order_id"]): list(o["statuses"]) for o in data["orders"]})
        if len(data["orders"]) < 100:
            return found
        offset += 100


def test_lazop_listing_under_a_status_holds_each_order_whose_items_have_it(
    lazop: LazopSandbox,
) -> None:
    access = token(lazop)
    ids = lazop.listed_order_ids("alice")
    lazop.change_orders("alice", ids[:180])  # orders reach several steps of their lifecycles
    lazop.change_orders("alice", ids[:70])
    everything = lazop_listed(lazop, access)
    statuses = {status for found in everything.values() for status in found}
    assert len(everything) == 250 and len(statuses) >= 3
    assert any(len(found) > 1 for found in everything.values())  # items in two statuses

    for status in statuses:
        under = lazop_listed(lazop, access, status=status)
        assert under == {i: found for i, found in everything.items() if status in found}
    assert lazop_listed(lazop, access, status="unpaid") == {}  # documented, and no order has it


def test_lazop_items_answer_by_order_id_in_no_promised_order(lazop: LazopSandbox) -> None:
    access = token(lazop)
    ids = lazop.listed_order_ids("alice")[:50]
    answer = raw_call(lazop, "/orders/items/get", {"access_token": access, "order_ids": str(ids)})
    assert answer["code"] == "0", answer
    data: Any = answer["data"]
    assert sorted(entry["order_id"] for entry in data) == sorted(ids)
    assert [entry["order_id"] for entry in data] != ids
    for entry in data:
        assert all(item["order_id"] == str(entry["order_id"]) for item in entry["order_items"])
    too_many = lazop.listed_order_ids("alice")[:51]
    for order_ids, code in (
        (str(too_many), "38"),
        ('["1"]', "56"),
        ("1,2", "56"),
        (str([*ids[:3], 999_999]), "37"),
    ):
        answer = raw_call(
            lazop, "/orders/items/get", {"access_token": access, "order_ids": order_ids}
        )
        assert answer["code"] == code, (order_ids, answer)


def test_lazop_orders_added_and_changed_while_listing_show_at_their_time(
    lazop: LazopSandbox,
) -> None:
    access = token(lazop)
    start = datetime.now(UTC).replace(microsecond=0)
    [late] = lazop.add_orders("alice", 1, ago=180)
    new = lazop.add_orders("alice", 3)
    changed = lazop.change_orders("alice", lazop.listed_order_ids("alice")[:2])
    answer = orders_get(lazop, access, update_after=lazop_time(start))
    data: Any = answer["data"]
    listed = {int(o["order_id"]) for o in data["orders"]}
    assert listed == set(new) | set(changed)
    answer = orders_get(lazop, access, update_after=lazop_time(start - timedelta(seconds=200)))
    data = answer["data"]
    assert late in {int(o["order_id"]) for o in data["orders"]}
    got = raw_call(lazop, "/order/get", {"access_token": access, "order_id": str(late)})
    assert got["code"] == "0"


def test_lazop_churn_adds_and_changes_orders_as_time_passes(lazop: LazopSandbox) -> None:
    access = token(lazop)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    lazop.configure({"order_churn": 50})
    lazop.listed_order_ids("alice")  # the knob's clock starts
    time.sleep(1.2)
    answer = orders_get(lazop, access, update_after=lazop_time(start))
    data: Any = answer["data"]
    assert len(data["orders"]) >= 20


def get_orders(sandbox: Sandbox, **params: str) -> etree._Element:
    base = {
        "UpdatedAfter": (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "SortBy": "updated_at",
        "SortDirection": "ASC",
        "Limit": "100",
    }
    return xml(call(sandbox, "GetOrders", **{**base, **params}))


def test_legacy_get_orders_pages_in_utc_without_an_offset(legacy: Sandbox) -> None:
    ids: list[str] = []
    stamps: list[str] = []
    for offset in ("0", "100"):
        root = get_orders(legacy, Offset=offset)
        assert root.tag == "SuccessResponse", etree.tostring(root)
        ids += [o.findtext("OrderId") or "" for o in root.iterfind("Body/Orders/Order")]
        stamps += [o.findtext("UpdatedAt") or "" for o in root.iterfind("Body/Orders/Order")]
    assert len(set(ids)) == 120
    assert stamps == sorted(stamps)
    assert all(len(stamp) == 19 for stamp in stamps)  # YYYY-MM-DD HH:MM:SS
    newest = datetime.strptime(stamps[-1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert newest <= datetime.now(UTC)


def legacy_listed(sandbox: Sandbox, **params: str) -> dict[int, list[str]]:
    """Every order GetOrders holds, paged to its end: each one's statuses by its id."""
    found: dict[int, list[str]] = {}
    offset = 0
    while True:
        root = get_orders(sandbox, Offset=str(offset), **params)
        assert root.tag == "SuccessResponse", etree.tostring(root)
        orders = list(root.iterfind("Body/Orders/Order"))
        for order in orders:
            statuses = [status.text or "" for status in order.iterfind("Statuses/Status")]
            found[int(order.findtext("OrderId") or "")] = statuses
        if len(orders) < 100:
            return found
        offset += 100


def test_legacy_get_orders_under_a_status_holds_each_order_that_shows_it(
    legacy: Sandbox,
) -> None:
    ids = legacy.listed_order_ids()
    legacy.change_orders(ids[:90])  # orders reach several steps of their lifecycles
    legacy.change_orders(ids[:35])
    everything = legacy_listed(legacy)
    statuses = {status for found in everything.values() for status in found}
    assert len(everything) == 120 and len(statuses) >= 3

    for status in statuses:
        under = legacy_listed(legacy, Status=status)
        assert under == {i: found for i, found in everything.items() if status in found}
    assert legacy_listed(legacy, Status="returned") == {}  # documented, and no order shows it


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"UpdatedAfter": "yesterday"}, 17),
        ({"Limit": "500"}, 19),
        ({"Offset": "5000"}, 14),
        ({"Status": "all"}, 36),
        ({"Status": "topack"}, 36),
    ],
)
def test_legacy_get_orders_refuses_what_the_api_refuses(
    legacy: Sandbox, params: dict[str, str], code: int
) -> None:
    base = {"UpdatedAfter": "2024-01-01T00:00:00+00:00"}
    assert error_code(call(legacy, "GetOrders", **{**base, **params})) == code


def test_legacy_orders_added_late_show_under_their_time(legacy: Sandbox) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    [late] = legacy.add_orders(1, ago=180)
    root = get_orders(legacy, UpdatedAfter=start.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
    assert str(late) not in [o.findtext("OrderId") for o in root.iterfind("Body/Orders/Order")]
    earlier = (start - timedelta(seconds=200)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    root = get_orders(legacy, UpdatedAfter=earlier)
    assert str(late) in [o.findtext("OrderId") for o in root.iterfind("Body/Orders/Order")]
    order = xml(call(legacy, "GetOrder", OrderId=str(late)))
    assert order.findtext("Body/Orders/Order/OrderId") == str(late)
    assert json.dumps(legacy.change_orders([late])) == f"[{late}]"
