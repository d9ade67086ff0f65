"""The LAZOP client and LazopPlatform against the LAZOP sandbox over HTTP (L2-L10)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.support.lazop import Seller, authorize, make_client, started
from worker.platforms import PermanentApiError, Platform, ThrottledApiError, TransientApiError
from worker.platforms.lazop import (
    AuthorizationLost,
    IllegalAccessToken,
    LazopClient,
    LazopPermanentError,
    LazopPlatform,
    LazopThrottledError,
    LazopTransientError,
    NotFoundError,
    TransportError,
    UnsendableRequest,
)
from worker.platforms.models import CallRecord
from worker.sandbox.lazop import LazopSandbox, LazopSandboxConfig


@pytest.fixture
def sandbox() -> Iterator[LazopSandbox]:
    yield from started(LazopSandbox(LazopSandboxConfig(sellers=("alice", "bob"))))


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def client(sandbox: LazopSandbox, records: list[CallRecord]) -> Iterator[LazopClient]:
    with make_client(sandbox, records) as lazop:
        yield lazop


@pytest.fixture
def alice(sandbox: LazopSandbox, client: LazopClient) -> Seller:
    return authorize(sandbox, client, "alice")


def platform_of(seller: Seller) -> LazopPlatform:
    return LazopPlatform(seller.client, seller.access_token, seller.on_illegal_token)


def migrate(seconds: float) -> list[str]:
    return [
        f"https://example.com/a.jpg?sandbox_duration={seconds}",
        f"https://example.com/broken.jpg?sandbox_duration={seconds}",
    ]


# --- tokens (L3, L4) ------------------------------------------------------------------------------


def test_a_code_becomes_a_token_grant_whose_repr_hides_the_tokens(alice: Seller) -> None:
    grant = alice.grant
    assert grant.access_token and grant.refresh_token
    assert grant.expires_in > 0 and grant.refresh_expires_in >= grant.expires_in
    assert grant.seller_id and grant.country == "sg"
    for text in (repr(grant), str(grant)):
        assert grant.access_token not in text and grant.refresh_token not in text


def test_refresh_parses_numbers_sent_as_strings(alice: Seller) -> None:
    refreshed = alice.client.refresh_token(alice.grant.refresh_token)
    assert refreshed.expires_in > 0 and refreshed.seller_id == alice.grant.seller_id


def test_a_used_refresh_token_means_the_authorization_is_lost(alice: Seller) -> None:
    alice.client.refresh_token(alice.grant.refresh_token)
    with pytest.raises(AuthorizationLost) as caught:
        alice.client.refresh_token(alice.grant.refresh_token)
    assert caught.value.code == "IllegalRefreshToken"
    assert isinstance(caught.value, PermanentApiError)


def test_a_used_code_means_the_authorization_is_lost(
    sandbox: LazopSandbox, client: LazopClient
) -> None:
    code = sandbox.authorization_code("bob")
    client.create_token(code)
    with pytest.raises(AuthorizationLost, match="InvalidCode"):
        client.create_token(code)


def test_a_wrong_app_secret_names_the_app_secret(sandbox: LazopSandbox) -> None:
    bad = LazopClient(sandbox.api_url, sandbox.app_key, "wrong", auth_url=sandbox.auth_url)
    with bad, pytest.raises(LazopPermanentError, match="check the app secret") as caught:
        bad.create_token(sandbox.authorization_code("alice"))
    assert caught.value.code == "IncompleteSignature"
    assert "wrong" not in str(caught.value)


def test_an_expired_access_token_is_refreshed_once_and_the_call_sent_again(
    sandbox: LazopSandbox, alice: Seller
) -> None:
    old = alice.access_token()
    sandbox.expire_access_tokens("alice")

    outcome = platform_of(alice).remove_skus(["A-1", "A-2"])

    assert outcome.removed == ("A-1", "A-2")
    assert alice.refreshes == [old]
    assert sandbox.removal_counts("alice") == {"A-1": 1, "A-2": 1}


def test_a_second_illegal_access_token_after_the_refresh_is_raised(
    sandbox: LazopSandbox, alice: Seller
) -> None:
    def refresh_then_expire(failed: str) -> str:
        fresh = alice.on_illegal_token(failed)
        sandbox.expire_access_tokens("alice")
        return fresh

    sandbox.expire_access_tokens("alice")
    platform = LazopPlatform(alice.client, alice.access_token, refresh_then_expire)
    with pytest.raises(IllegalAccessToken):
        platform.get_order(5)
    assert len(alice.refreshes) == 1


def test_a_revoked_seller_ends_in_authorization_lost(sandbox: LazopSandbox, alice: Seller) -> None:
    sandbox.revoke("alice")
    with pytest.raises(AuthorizationLost):
        platform_of(alice).get_order(5)
    assert sandbox.removal_counts() == {}


def test_token_calls_go_to_the_auth_url_and_seller_calls_to_the_gateway(
    sandbox: LazopSandbox, alice: Seller
) -> None:
    platform_of(alice).get_order(9)
    assert [call.action for call in sandbox.calls()] == [
        "/auth/token/create",
        "/order/get",
        "/order/items/get",
    ]


# --- operations (L6-L8) ---------------------------------------------------------------------------


def test_lazop_platform_is_a_platform_with_the_lazop_limits(alice: Seller) -> None:
    platform: Platform = platform_of(alice)
    assert (platform.max_skus_per_call, platform.max_urls_per_call) == (50, 8)


def test_sku_named_in_error_detail_fails_and_the_rest_are_not_applied(
    sandbox: LazopSandbox, alice: Seller, records: list[CallRecord]
) -> None:
    outcome = platform_of(alice).remove_skus(["A-1", "B-FAIL", "C-3"])

    assert outcome.removed == ()
    assert outcome.not_applied == ("A-1", "C-3")
    assert outcome.failed["B-FAIL"].code == "503"
    assert "B-FAIL" in outcome.failed["B-FAIL"].message
    assert sandbox.removal_counts() == {}
    assert (records[-1].outcome, records[-1].error_code) == ("api_error", "503")


def test_skus_are_sent_as_compact_json_with_non_ascii_kept(
    sandbox: LazopSandbox, alice: Seller
) -> None:
    platform_of(alice).remove_skus(["ชุด-1", "B 2"])
    assert sandbox.calls()[-1].params["seller_sku_list"] == '["ชุด-1","B 2"]'
    assert sandbox.removal_counts("alice") == {"ชุด-1": 1, "B 2": 1}


def test_a_sku_no_request_can_carry_fails_before_any_call(
    sandbox: LazopSandbox, alice: Seller
) -> None:
    outcome = platform_of(alice).remove_skus(["A-1", "bad\x00sku"])
    assert (outcome.called, outcome.not_applied, list(outcome.failed)) == (
        False,
        ("A-1",),
        ["bad\x00sku"],
    )
    assert [call.action for call in sandbox.calls()] == ["/auth/token/create"]


def test_more_than_50_skus_are_refused_before_sending(alice: Seller) -> None:
    with pytest.raises(UnsendableRequest, match="at most 50"):
        alice.client.remove_products(alice.access_token(), [f"S-{i}" for i in range(51)])


def test_an_order_holds_its_items_and_parsed_fields(alice: Seller) -> None:
    order = platform_of(alice).get_order(4242)

    assert order.order_id == 4242
    assert isinstance(order.price, Decimal)
    assert order.created_at is not None and order.created_at.tzinfo == UTC
    assert isinstance(order.extra_attributes, dict)
    assert len(order.raw["items"]) == order.items_count
    assert all(item["order_id"] == "4242" for item in order.raw["items"])
    json.dumps(order.raw)  # storable as JSON


def test_lazop_times_are_converted_from_plus_0800_to_utc(alice: Seller) -> None:
    order = alice.client.get_order(alice.access_token(), 4242)
    raw_created = datetime.strptime(order.raw["created_at"], "%Y-%m-%d %H:%M:%S %z")
    assert order.created_at == raw_created.astimezone(UTC)


def test_an_unknown_order_is_not_found(alice: Seller) -> None:
    with pytest.raises(NotFoundError) as caught:
        platform_of(alice).get_order(900_000_001)
    assert caught.value.code == "16"


def test_an_image_job_still_running_is_unfinished_in_both_forms(
    alice: Seller, records: list[CallRecord]
) -> None:
    platform = platform_of(alice)
    batch = platform.submit_images(migrate(3600))
    first, second = platform.poll_images(batch), platform.poll_images(batch)
    assert (first.finished, second.finished) == (False, False)
    assert [r.error_code for r in records[-2:]] == [None, "1000"]


def test_a_finished_image_job_has_images_and_per_image_errors(alice: Seller) -> None:
    platform = platform_of(alice)
    status = platform.poll_images(platform.submit_images(migrate(0)))
    assert status.finished
    assert [image.url.startswith("https://") for image in status.images] == [True]
    assert [error.original_url for error in status.errors] == [migrate(0)[1]]
    assert status.errors[0].message == "Error download image"


def test_more_than_8_urls_are_refused_before_sending(alice: Seller) -> None:
    with pytest.raises(UnsendableRequest):
        platform_of(alice).submit_images([f"https://e.com/{i}.jpg" for i in range(9)])


# --- classes of errors (L5) ----------------------------------------------------------------------


def test_api_call_limit_is_throttled_and_the_record_says_so(
    sandbox: LazopSandbox, alice: Seller, records: list[CallRecord]
) -> None:
    sandbox.configure({"fault_rate": 1.0, "fault_kinds": ["api_call_limit"]})
    with pytest.raises(LazopThrottledError) as caught:
        platform_of(alice).get_order(1)
    assert isinstance(caught.value, ThrottledApiError)
    assert (records[-1].error_code, records[-1].throttled) == ("ApiCallLimit", True)


def test_http_429_is_throttled(sandbox: LazopSandbox, alice: Seller) -> None:
    sandbox.configure({"fault_rate": 1.0, "fault_kinds": ["http429"]})
    with pytest.raises(LazopThrottledError):
        platform_of(alice).get_order(1)


@pytest.mark.parametrize(
    "kind", ["http500", "http502_html", "service_timeout", "internal_error", "truncated"]
)
def test_transient_faults_are_transient_errors(
    sandbox: LazopSandbox, alice: Seller, kind: str
) -> None:
    sandbox.configure({"fault_rate": 1.0, "fault_kinds": [kind]})
    with pytest.raises(LazopTransientError) as caught:
        platform_of(alice).remove_skus(["A-1"])
    assert isinstance(caught.value, TransientApiError)
    assert not isinstance(caught.value, ThrottledApiError)
    assert sandbox.removal_counts() == {}


def test_a_slow_answer_is_a_read_timeout(sandbox: LazopSandbox, alice: Seller) -> None:
    sandbox.configure({"fault_rate": 1.0, "fault_kinds": ["slow"], "slow_seconds": 5})
    with (
        LazopClient(
            sandbox.api_url, sandbox.app_key, sandbox.app_secret, read_timeout=0.2
        ) as impatient,
        pytest.raises(TransportError, match="read timed out"),
    ):
        impatient.get_order(alice.access_token(), 1)


def test_the_rate_knob_throttles_calls_beyond_it(sandbox: LazopSandbox, alice: Seller) -> None:
    sandbox.configure({"rate_limit": 1})
    with pytest.raises(LazopThrottledError):
        for _ in range(5):
            alice.client.get_order(alice.access_token(), 1)


# --- secrets (L10) --------------------------------------------------------------------------------


def test_no_secret_in_any_log_line_exception_or_call_record(
    sandbox: LazopSandbox,
    client: LazopClient,
    records: list[CallRecord],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    code = sandbox.authorization_code("alice")
    seller = Seller(client, "alice", client.create_token(code))
    first = seller.grant
    errors: list[BaseException] = []
    platform = platform_of(seller)
    platform.remove_skus(["A-1", "B-FAIL"])
    sandbox.expire_access_tokens("alice")
    platform.get_order(3)
    for call in (
        lambda: client.refresh_token(first.refresh_token),  # already rotated
        lambda: client.create_token(code),  # already used
        lambda: client.get_order(first.access_token, 3),  # expired
    ):
        with pytest.raises(LazopPermanentError) as caught:
            call()
        errors.append(caught.value)
    sandbox.configure({"fault_rate": 1.0, "fault_kinds": ["http502_html", "truncated"]})
    for _ in range(3):
        with pytest.raises(LazopTransientError) as caught_transient:
            platform.get_order(3)
        errors.append(caught_transient.value)

    secrets = [
        sandbox.app_secret,
        code,
        first.access_token,
        first.refresh_token,
        seller.grant.access_token,
        seller.grant.refresh_token,
    ]
    texts = [record.getMessage() for record in caplog.records]
    texts += [str(error) for error in errors] + [repr(error) for error in errors]
    texts += [repr(record) for record in records]
    texts += [repr(client), repr(platform)]
    for text in texts:
        for secret in secrets:
            assert secret not in text
        assert re.search(r"[0-9A-F]{64}", text) is None  # no sign
        assert "sign=" not in text.replace("sign=[redacted]", "")
    assert any("/order/get" in text for text in texts)  # the logs were there to check


def test_a_password_in_the_gateway_or_auth_url_is_in_no_repr_or_error(
    sandbox: LazopSandbox,
) -> None:
    password = "URL-PASSWORD-7d40"
    gateway = sandbox.url.replace("http://", f"http://shop:{password}@", 1)
    client = LazopClient(gateway, sandbox.app_key, sandbox.app_secret, auth_url=gateway)
    with pytest.raises(ValueError) as refused:
        LazopClient(f"ftp://shop:{password}@host/rest", sandbox.app_key, sandbox.app_secret)
    with client:
        assert "shop:***@" in repr(client)
        assert password not in repr(client) and password not in str(refused.value)
