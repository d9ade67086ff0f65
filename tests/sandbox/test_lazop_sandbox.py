"""The LAZOP sandbox over raw HTTP, signed by its own rule: the decisions L1-L8 it implements."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.lazop import raw_call, started
from worker.sandbox.lazop import LazopSandbox, LazopSandboxConfig
from worker.sandbox.lazop.signature import expected_sign

PAYLOAD = (
    '<?xml version="1.0" encoding="UTF-8" ?><Request><Images>'
    "<Url>https://example.com/a.jpg?sandbox_duration={seconds}</Url>"
    "<Url>https://example.com/broken.jpg?sandbox_duration={seconds}</Url>"
    "</Images></Request>"
)


@pytest.fixture
def sandbox() -> Iterator[LazopSandbox]:
    yield from started(LazopSandbox(LazopSandboxConfig(sellers=("alice", "bob"))))


def tokens(sandbox: LazopSandbox, seller: str = "alice") -> dict[str, Any]:
    answer = raw_call(
        sandbox, "/auth/token/create", {"code": sandbox.authorization_code(seller)}, auth=True
    )
    assert answer["code"] == "0", answer
    return answer


def test_a_call_signed_with_another_secret_is_an_incomplete_signature(
    sandbox: LazopSandbox,
) -> None:
    answer = raw_call(sandbox, "/auth/token/create", {"code": "x"}, auth=True, secret="wrong")
    assert (answer["code"], answer["type"]) == ("IncompleteSignature", "ISV")
    assert answer["request_id"]


def test_a_timestamp_outside_7200_seconds_is_refused(sandbox: LazopSandbox) -> None:
    stale = int(time.time() * 1000) - 7201 * 1000
    answer = raw_call(sandbox, "/auth/token/create", {"code": "x"}, auth=True, timestamp=stale)
    assert answer["code"] == "OPEN_API_TIMESTAMP_INVALID"


def test_an_unknown_app_key_is_refused(sandbox: LazopSandbox) -> None:
    answer = raw_call(sandbox, "/auth/token/create", {"code": "x", "app_key": "999"}, auth=True)
    assert answer["code"] == "APP_KEY_INVALID"


def test_an_authorization_code_gives_tokens_once(sandbox: LazopSandbox) -> None:
    code = sandbox.authorization_code("alice")
    first = raw_call(sandbox, "/auth/token/create", {"code": code}, auth=True)
    again = raw_call(sandbox, "/auth/token/create", {"code": code}, auth=True)

    assert first["code"] == "0" and first["access_token"] and first["refresh_token"]
    assert first["country_user_info"][0]["seller_id"]  # type: ignore[index]
    assert again["code"] == "InvalidCode"


def test_token_calls_are_answered_by_the_auth_url_only(sandbox: LazopSandbox) -> None:
    code = sandbox.authorization_code("alice")
    answer = raw_call(sandbox, "/auth/token/create", {"code": code})  # sent to the gateway
    assert answer["code"] == "InvalidApiPath"


def test_a_refresh_rotates_the_pair_and_the_old_refresh_token_stops_working(
    sandbox: LazopSandbox,
) -> None:
    first = tokens(sandbox)
    refreshed = raw_call(
        sandbox, "/auth/token/refresh", {"refresh_token": first["refresh_token"]}, auth=True
    )
    reused = raw_call(
        sandbox, "/auth/token/refresh", {"refresh_token": first["refresh_token"]}, auth=True
    )

    assert refreshed["code"] == "0"
    assert refreshed["refresh_token"] != first["refresh_token"]
    assert refreshed["access_token"] != first["access_token"]
    assert reused["code"] == "IllegalRefreshToken"


def test_a_refresh_does_not_extend_the_refresh_tokens_lifetime(sandbox: LazopSandbox) -> None:
    first = tokens(sandbox)
    refreshed = raw_call(
        sandbox, "/auth/token/refresh", {"refresh_token": first["refresh_token"]}, auth=True
    )
    assert int(str(refreshed["refresh_expires_in"])) <= int(str(first["refresh_expires_in"]))


def test_an_expired_access_token_is_an_illegal_access_token(sandbox: LazopSandbox) -> None:
    access = tokens(sandbox)["access_token"]
    sandbox.expire_access_tokens("alice")
    answer = raw_call(sandbox, "/order/get", {"access_token": access, "order_id": "5"})
    assert answer["code"] == "IllegalAccessToken"


def test_revoking_a_seller_invalidates_both_of_their_tokens(sandbox: LazopSandbox) -> None:
    pair = tokens(sandbox)
    sandbox.revoke("alice")
    call = raw_call(sandbox, "/order/get", {"access_token": pair["access_token"], "order_id": "5"})
    refresh = raw_call(
        sandbox, "/auth/token/refresh", {"refresh_token": pair["refresh_token"]}, auth=True
    )
    assert (call["code"], refresh["code"]) == ("IllegalAccessToken", "IllegalRefreshToken")


def test_short_token_lifetimes_are_knobs(sandbox: LazopSandbox) -> None:
    sandbox.configure({"access_token_seconds": 60, "refresh_token_seconds": 120})
    pair = tokens(sandbox)
    assert 0 < int(str(pair["expires_in"])) <= 60
    assert 60 < int(str(pair["refresh_expires_in"])) <= 120


def test_removal_naming_a_failing_sku_applies_nothing_and_names_it_in_detail(
    sandbox: LazopSandbox,
) -> None:
    access = tokens(sandbox)["access_token"]
    skus = json.dumps(["A-1", "B-FAIL", "C-3"])
    answer = raw_call(
        sandbox,
        "/product/remove",
        {"access_token": access, "seller_sku_list": skus},
        method="POST",
    )
    assert answer["code"] == "503"
    assert [d["seller_sku"] for d in answer["detail"]] == ["B-FAIL"]  # type: ignore[attr-defined]
    assert sandbox.removal_counts() == {}


def test_each_seller_has_their_own_removals(sandbox: LazopSandbox) -> None:
    for seller, sku in (("alice", "A-1"), ("bob", "B-1")):
        access = tokens(sandbox, seller)["access_token"]
        answer = raw_call(
            sandbox,
            "/product/remove",
            {"access_token": access, "seller_sku_list": json.dumps([sku])},
            method="POST",
        )
        assert answer == {"code": "0", "data": {}, "request_id": answer["request_id"]}
    assert (sandbox.removal_counts("alice"), sandbox.removal_counts("bob")) == (
        {"A-1": 1},
        {"B-1": 1},
    )


def test_removal_must_be_posted(sandbox: LazopSandbox) -> None:
    access = tokens(sandbox)["access_token"]
    answer = raw_call(
        sandbox, "/product/remove", {"access_token": access, "seller_sku_list": '["A"]'}
    )
    assert answer["code"] == "InvalidParameter"


def test_more_than_50_skus_is_code_204(sandbox: LazopSandbox) -> None:
    access = tokens(sandbox)["access_token"]
    skus = json.dumps([f"S-{i}" for i in range(51)])
    answer = raw_call(
        sandbox, "/product/remove", {"access_token": access, "seller_sku_list": skus}, method="POST"
    )
    assert answer["code"] == "204"


def test_an_order_has_lazop_dates_a_decimal_price_and_json_extra_attributes(
    sandbox: LazopSandbox,
) -> None:
    access = tokens(sandbox)["access_token"]
    order = raw_call(sandbox, "/order/get", {"access_token": access, "order_id": "4242"})["data"]
    items = raw_call(sandbox, "/order/items/get", {"access_token": access, "order_id": "4242"})

    assert isinstance(order, dict)
    assert order["order_id"] == "4242"
    assert order["created_at"].endswith(" +0800")
    assert "." in order["price"]
    assert isinstance(json.loads(order["extra_attributes"]), dict)
    assert len(items["data"]) == order["items_count"]  # type: ignore[arg-type]


def test_sellers_see_different_orders_under_the_same_id(sandbox: LazopSandbox) -> None:
    alice = tokens(sandbox, "alice")["access_token"]
    bob = tokens(sandbox, "bob")["access_token"]
    a = raw_call(sandbox, "/order/get", {"access_token": alice, "order_id": "77"})
    b = raw_call(sandbox, "/order/get", {"access_token": bob, "order_id": "77"})
    assert a["data"] != b["data"]


def test_an_unknown_order_is_code_16(sandbox: LazopSandbox) -> None:
    access = tokens(sandbox)["access_token"]
    answer = raw_call(sandbox, "/order/get", {"access_token": access, "order_id": "900000001"})
    assert answer["code"] == "16"


def test_a_running_image_job_answers_empty_data_and_code_1000_in_turn(
    sandbox: LazopSandbox,
) -> None:
    access = tokens(sandbox)["access_token"]
    migrated = raw_call(
        sandbox,
        "/images/migrate",
        {"access_token": access, "payload": PAYLOAD.format(seconds=3600)},
        method="POST",
    )
    batch = {"access_token": access, "batch_id": str(migrated["batch_id"])}
    answers = [raw_call(sandbox, "/image/response/get", batch) for _ in range(2)]
    assert [(a["code"], a.get("data")) for a in answers] == [("0", {}), ("1000", None)]


def test_a_finished_image_job_lists_images_and_errors(sandbox: LazopSandbox) -> None:
    access = tokens(sandbox)["access_token"]
    migrated = raw_call(
        sandbox,
        "/images/migrate",
        {"access_token": access, "payload": PAYLOAD.format(seconds=0)},
        method="POST",
    )
    assert migrated["code"] == "0" and "data" not in migrated
    answer = raw_call(
        sandbox, "/image/response/get", {"access_token": access, "batch_id": migrated["batch_id"]}
    )
    data = answer["data"]
    assert isinstance(data, dict)
    assert [sorted(image) for image in data["images"]] == [["hash_code", "url"]]
    assert [error["original_url"] for error in data["errors"]] == [
        "https://example.com/broken.jpg?sandbox_duration=0"
    ]


def test_another_sellers_batch_is_unknown(sandbox: LazopSandbox) -> None:
    alice = tokens(sandbox, "alice")["access_token"]
    bob = tokens(sandbox, "bob")["access_token"]
    migrated = raw_call(
        sandbox,
        "/images/migrate",
        {"access_token": alice, "payload": PAYLOAD.format(seconds=0)},
        method="POST",
    )
    answer = raw_call(
        sandbox, "/image/response/get", {"access_token": bob, "batch_id": migrated["batch_id"]}
    )
    assert answer["code"] == "5"


def test_calls_above_the_rate_knob_answer_api_call_limit(sandbox: LazopSandbox) -> None:
    access = tokens(sandbox)["access_token"]
    sandbox.configure({"rate_limit": 1})
    codes = [
        raw_call(sandbox, "/order/get", {"access_token": access, "order_id": "1"})["code"]
        for _ in range(3)
    ]
    assert "ApiCallLimit" in codes


def test_the_rate_knob_limits_each_seller_on_their_own(sandbox: LazopSandbox) -> None:
    alice, bob = tokens(sandbox, "alice")["access_token"], tokens(sandbox, "bob")["access_token"]
    sandbox.configure({"rate_limit": 1})
    order = {"order_id": "1"}
    first = raw_call(sandbox, "/order/get", {"access_token": alice, **order})
    second = raw_call(sandbox, "/order/get", {"access_token": alice, **order})
    others = raw_call(sandbox, "/order/get", {"access_token": bob, **order})
    assert [first["code"], second["code"], others["code"]] == ["0", "ApiCallLimit", "0"]


def test_each_recorded_call_names_its_seller_and_outcome(sandbox: LazopSandbox) -> None:
    access = tokens(sandbox, "bob")["access_token"]
    sandbox.configure({"rate_limit": 1})
    for _ in range(2):
        raw_call(sandbox, "/order/get", {"access_token": access, "order_id": "1"})
    served = [call.to_json() for call in sandbox.calls() if call.action == "/order/get"]
    assert [(call["account"], call["outcome"]) for call in served] == [
        ("bob", "ok"),
        ("bob", "ApiCallLimit"),
    ]


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("http500", 500, None),
        ("http502_html", 502, None),
        ("http429", 429, None),
        ("service_timeout", 200, "ServiceTimeout"),
        ("internal_error", 200, "6"),
        ("api_call_limit", 200, "ApiCallLimit"),
    ],
)
def test_injected_faults_answer_as_their_kind(
    sandbox: LazopSandbox, kind: str, status: int, code: str | None
) -> None:
    sandbox.configure({"fault_rate": 1.0, "fault_kinds": [kind]})
    response = requests.get(sandbox.api_url + "/order/get", params={"order_id": "1"}, timeout=10)
    assert response.status_code == status
    if code is not None:
        assert response.json()["code"] == code
    assert sandbox.calls()[-1].fault == kind


def test_a_truncated_removal_had_no_effect(sandbox: LazopSandbox) -> None:
    access = tokens(sandbox)["access_token"]
    sandbox.configure({"fault_rate": 1.0, "fault_kinds": ["truncated"]})
    response = requests.post(
        sandbox.api_url + "/product/remove",
        data={"access_token": access, "seller_sku_list": '["A"]'},
        timeout=10,
    )
    with pytest.raises(ValueError):
        response.json()
    assert sandbox.removal_counts() == {}


def test_recorded_calls_hold_neither_the_sign_nor_a_token_nor_a_code(
    sandbox: LazopSandbox,
) -> None:
    code = sandbox.authorization_code("alice")
    pair = raw_call(sandbox, "/auth/token/create", {"code": code}, auth=True)
    raw_call(sandbox, "/order/get", {"access_token": pair["access_token"], "order_id": "3"})
    raw_call(sandbox, "/auth/token/refresh", {"refresh_token": pair["refresh_token"]}, auth=True)

    served = json.dumps([call.to_json() for call in sandbox.calls()])
    for secret in (code, pair["access_token"], pair["refresh_token"], sandbox.app_secret):
        assert str(secret) not in served
    assert all("sign" not in call.params for call in sandbox.calls())
    assert [call.account for call in sandbox.calls()] == [None, "alice", None]


def test_control_endpoints_hand_out_codes_and_revoke(sandbox: LazopSandbox) -> None:
    issued = requests.post(sandbox.url + "_sandbox/authorization-code?seller=bob", timeout=10)
    unknown = requests.post(sandbox.url + "_sandbox/revoke?seller=nobody", timeout=10)
    code = issued.json()["code"]
    answer = raw_call(sandbox, "/auth/token/create", {"code": code}, auth=True)
    assert (answer["code"], unknown.status_code) == ("0", 400)


def test_a_bad_knob_is_refused_with_its_name() -> None:
    with pytest.raises(ValueError, match="access_token_seconds must be a positive"):
        LazopSandboxConfig(access_token_seconds=0).validate()


# --- lazada-worker sandbox --platform lazop ----------------------------------------------------

CLI = [sys.executable, "-m", "worker.cli"]


def test_the_command_prints_what_an_operator_needs_and_its_code_works() -> None:
    process = subprocess.Popen(
        [*CLI, "sandbox", "--platform", "lazop", "--port", "0", "--sellers", "shop-1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        banner: dict[str, str] = {}
        for line in iter(process.stderr.readline, ""):
            name, _, value = line.strip().partition(": ")
            banner[name] = value.strip().split(" ")[0]
            if name.startswith("more codes"):
                break
        auth_url = banner["auth URL"]
        timestamp = str(int(time.time() * 1000))
        params = {
            "app_key": banner["app key"],
            "timestamp": timestamp,
            "sign_method": "sha256",
            "code": banner["authorization code for shop-1"],
        }
        params["sign"] = expected_sign("/auth/token/create", params, banner["app secret"])
        answer = requests.post(auth_url + "/auth/token/create", data=params, timeout=10).json()
        assert answer["code"] == "0"
        assert banner["gateway URL"].endswith("/rest")
    finally:
        process.terminate()
        process.wait()


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--platform", "lazop", "--user-id", "x"], "--user-id: only for --platform sellercenter"),
        (["--app-key", "x"], "--app-key: only for --platform lazop"),
        (["--platform", "lazop", "--fault-kinds", "e006"], "unknown fault kind e006"),
    ],
)
def test_an_option_of_the_other_platform_exits_2_saying_so(options: list[str], says: str) -> None:
    done = subprocess.run(
        [*CLI, "sandbox", "--port", "0", *options], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
