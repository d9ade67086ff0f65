"""The client against the local sandbox over real HTTP, in both response formats.

The sandbox verifies signatures independently of ``worker.platforms.sellercenter``, so every
accepted call is also a check of the signing and of the URL being sent exactly as signed.
"""

import http.server
import logging
import re
import string
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import ClassVar, Literal

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from worker.platforms.sellercenter import (
    AuthenticationError,
    CallRecord,
    ClockSkewError,
    InvalidRequestError,
    NotFoundError,
    SellerCenterClient,
    ServiceError,
    ThrottledError,
    TransportError,
    canonical_query,
    sign,
)
from worker.platforms.sellercenter.signing import format_timestamp
from worker.sandbox.sellercenter import Sandbox

Format = Literal["XML", "JSON"]

# Text XML 1.0 can carry, without surrounding whitespace (the API trims element text).
XML_TEXT = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=["Cc"], exclude_characters="\ufffe\uffff"
    ),
    min_size=1,
    max_size=30,
).filter(lambda text: text == text.strip() and text.strip() != "")


SIGNED_BY_THE_CLIENT = {
    "Action",
    "Format",
    "OrderId",
    "Signature",
    "Timestamp",
    "UserID",
    "Version",
}


@pytest.fixture(params=["XML", "JSON"])
def response_format(request: pytest.FixtureRequest) -> Format:
    value: Format = request.param
    return value


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def client(
    sandbox: Sandbox, response_format: Format, records: list[CallRecord]
) -> Iterator[SellerCenterClient]:
    with SellerCenterClient(
        sandbox.url,
        sandbox.user_id,
        sandbox.api_key,
        response_format=response_format,
        after_call=records.append,
        read_timeout=10.0,
    ) as seller_center:
        yield seller_center


def inject(sandbox: Sandbox, kind: str) -> None:
    sandbox.config.fault_rate = 1.0
    sandbox.config.fault_kinds = (kind,)


# --- GetOrder -------------------------------------------------------------------------------------


def test_get_order_190_is_the_doc_sample(client: SellerCenterClient) -> None:
    order = client.get_order(190)

    assert order.order_id == 190
    assert order.order_number == "300125759"
    assert order.customer_first_name == "ภัทรนิดา แสนสุข"
    assert order.price == Decimal("100.00")
    assert order.address_billing["post_code"] == "33333"
    assert order.extra_attributes == {"TaxInvoiceRequested": "true"}
    assert len(order.statuses) == 11
    # The sandbox writes Head/Timestamp in +0000, so the body's local time is UTC.
    assert order.created_at == datetime(2015, 3, 24, 16, 9, 22, tzinfo=UTC)


def test_get_order_answers_the_order_asked_for(client: SellerCenterClient) -> None:
    order = client.get_order(4711)

    assert order.order_id == 4711
    assert order.statuses
    assert order.created_at is not None
    assert order.created_at.tzinfo is not None


def test_both_formats_give_the_same_order(sandbox: Sandbox) -> None:
    with (
        SellerCenterClient(sandbox.url, sandbox.user_id, sandbox.api_key) as xml,
        SellerCenterClient(
            sandbox.url, sandbox.user_id, sandbox.api_key, response_format="JSON"
        ) as json_client,
    ):
        assert xml.get_order(190) == json_client.get_order(190)
        assert xml.get_order(12345) == json_client.get_order(12345)


def test_get_order_is_a_get_with_the_order_id_signed(
    sandbox: Sandbox, client: SellerCenterClient, response_format: Format
) -> None:
    client.get_order(190)

    (call,) = sandbox.calls()
    assert call.method == "GET"
    assert call.params["OrderId"] == "190"
    assert call.params["Version"] == "1.0"
    assert call.params.get("Format") == ("JSON" if response_format == "JSON" else None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", call.params["Timestamp"])


def test_unknown_order_is_not_found(client: SellerCenterClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.get_order(900_000_000)

    assert caught.value.code == "E016"
    assert str(caught.value).startswith("GetOrder failed: E016 ")
    assert "Invalid Order ID" in str(caught.value)


@pytest.mark.parametrize("order_id", [0, -1, True, "190", 1.0])
def test_order_id_that_is_not_a_positive_int_is_refused_before_any_call(
    sandbox: Sandbox, client: SellerCenterClient, order_id: object
) -> None:
    with pytest.raises(ValueError):
        client.get_order(order_id)  # type: ignore[arg-type]

    assert sandbox.calls() == []


# --- RemoveProduct --------------------------------------------------------------------------------


def test_removing_skus_removes_all_of_them(sandbox: Sandbox, client: SellerCenterClient) -> None:
    outcome = client.remove_products(["SKU-1", "SKU-2", "SKU-3"])

    assert outcome.removed == ("SKU-1", "SKU-2", "SKU-3")
    assert outcome.failed == {}
    assert outcome.not_applied == ()
    assert sandbox.removal_counts() == {"SKU-1": 1, "SKU-2": 1, "SKU-3": 1}


def test_removal_is_a_post_of_the_documented_xml_body(
    sandbox: Sandbox, client: SellerCenterClient
) -> None:
    client.remove_products(["A&B <c>", "ภัท"])

    (call,) = sandbox.calls()
    assert call.method == "POST"
    assert call.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    request = etree.fromstring(call.body)
    assert request.tag == "Request"
    assert [e.text for e in request.iterfind("Product/Skus/Sku/SellerSku")] == ["A&B <c>", "ภัท"]


def test_sku_named_in_error_detail_fails_and_the_rest_are_sent_again(
    sandbox: Sandbox, client: SellerCenterClient, records: list[CallRecord]
) -> None:
    outcome = client.remove_products(["KEEP-1", "X-FAIL-1", "KEEP-2"])

    assert outcome.removed == ()
    assert set(outcome.failed) == {"X-FAIL-1"}
    assert outcome.failed["X-FAIL-1"].seller_sku == "X-FAIL-1"
    assert "could not be removed" in outcome.failed["X-FAIL-1"].message
    assert outcome.not_applied == ("KEEP-1", "KEEP-2")
    assert sandbox.removal_counts() == {}
    assert [(r.outcome, r.error_code) for r in records] == [("api_error", "E503")]

    again = client.remove_products(list(outcome.not_applied))

    assert again.removed == ("KEEP-1", "KEEP-2")
    assert sandbox.removal_counts() == {"KEEP-1": 1, "KEEP-2": 1}


@pytest.mark.parametrize(
    "skus",
    [
        [],  # the API would answer E030
        [f"SKU-{n}" for n in range(51)],  # the API would answer E204
        ["A", ""],
        ["A", "   "],
        ["A", "A"],
        ["bad\x00sku"],
        "SKU-1",
    ],
    ids=["none", "fifty-one", "empty", "blank", "duplicate", "control-char", "bare-string"],
)
def test_sku_lists_the_api_would_refuse_are_refused_before_any_call(
    sandbox: Sandbox, client: SellerCenterClient, skus: list[str]
) -> None:
    with pytest.raises(ValueError):
        client.remove_products(skus)

    assert sandbox.calls() == []


def test_fifty_skus_are_sent_in_one_call(sandbox: Sandbox, client: SellerCenterClient) -> None:
    skus = [f"SKU-{n}" for n in range(50)]

    assert client.remove_products(skus).removed == tuple(skus)
    assert len(sandbox.calls()) == 1


# --- MigrateImages / GetResponse ------------------------------------------------------------------


def test_migrate_images_returns_the_job_request_id(
    sandbox: Sandbox, client: SellerCenterClient
) -> None:
    request_id = client.migrate_images(["https://shop.example/a.jpg"])

    assert re.fullmatch(r"[0-9a-f]{26}", request_id)
    (call,) = sandbox.calls()
    assert call.method == "POST"
    assert [url.text for url in etree.fromstring(call.body).iterfind("Images/Url")] == [
        "https://shop.example/a.jpg"
    ]


def test_running_image_job_is_not_finished(client: SellerCenterClient) -> None:
    request_id = client.migrate_images(["https://shop.example/a.jpg?sandbox_duration=60"])

    status = client.get_response(request_id)

    assert status.finished is False
    assert status.images == ()
    assert status.errors == ()


def test_finished_image_job_lists_new_urls(client: SellerCenterClient) -> None:
    urls = ["https://shop.example/a.jpg?sandbox_duration=0", "http://shop.example/b.png"]
    request_id = client.migrate_images(urls)

    status = client.get_response(request_id)

    assert status.finished is True
    assert [image.original_url for image in status.images] == urls
    assert all(image.url.startswith("https://") and image.code for image in status.images)
    assert status.errors == ()


def test_partially_failed_image_job_lists_images_and_errors(client: SellerCenterClient) -> None:
    good = "https://shop.example/a.jpg?sandbox_duration=0"
    broken = "https://shop.example/broken.jpg?sandbox_duration=0"

    status = client.get_response(client.migrate_images([good, broken]))

    assert status.finished is True
    assert [image.original_url for image in status.images] == [good]
    assert [(error.original_url, error.message) for error in status.errors] == [
        (broken, "Error download image")
    ]


def test_failed_image_job_has_only_errors(client: SellerCenterClient) -> None:
    broken = "https://shop.example/broken.jpg?sandbox_duration=0"

    status = client.get_response(client.migrate_images([broken]))

    assert status.finished is True
    assert status.images == ()
    assert len(status.errors) == 1


def test_unknown_request_id_is_an_invalid_request(client: SellerCenterClient) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client.get_response("0" * 26)

    assert caught.value.code == "E005"


@pytest.mark.parametrize(
    "urls",
    [
        [],
        [f"https://shop.example/{n}.jpg" for n in range(9)],
        ["ftp://shop.example/a.jpg"],
        ["shop.example/a.jpg"],
        ["file:///etc/passwd"],
        "https://shop.example/a.jpg",
    ],
    ids=["none", "nine", "ftp", "no-scheme", "file", "bare-string"],
)
def test_image_urls_the_api_would_refuse_are_refused_before_any_call(
    sandbox: Sandbox, client: SellerCenterClient, urls: list[str]
) -> None:
    with pytest.raises(ValueError):
        client.migrate_images(urls)

    assert sandbox.calls() == []


def test_empty_request_id_is_refused_before_any_call(
    sandbox: Sandbox, client: SellerCenterClient
) -> None:
    with pytest.raises(ValueError):
        client.get_response("")

    assert sandbox.calls() == []


# --- authentication and clock ---------------------------------------------------------------------


def test_wrong_api_key_is_an_authentication_error_that_never_shows_the_key(
    sandbox: Sandbox, response_format: Format, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_key = "not-the-sandbox-key-3f9a"
    records: list[CallRecord] = []
    caplog.set_level(logging.DEBUG, logger="worker.platforms.sellercenter")
    client = SellerCenterClient(
        sandbox.url,
        sandbox.user_id,
        wrong_key,
        response_format=response_format,
        after_call=records.append,
    )

    with client, pytest.raises(AuthenticationError) as caught:
        client.get_order(190)

    error = caught.value
    assert error.code == "E007"
    assert "wrong API key" in str(error)
    for text in (str(error), repr(error), repr(client), repr(records), caplog.text):
        assert wrong_key not in text
        assert sandbox.api_key not in text


def test_wrong_user_id_is_an_authentication_error(sandbox: Sandbox) -> None:
    with (
        SellerCenterClient(sandbox.url, "someone@else.test", sandbox.api_key) as client,
        pytest.raises(AuthenticationError),
    ):
        client.get_order(190)


def test_clock_an_hour_off_is_retried_once_then_a_clock_skew_error(
    sandbox: Sandbox, response_format: Format
) -> None:
    attempts: list[str] = []
    with (
        SellerCenterClient(
            sandbox.url,
            sandbox.user_id,
            sandbox.api_key,
            response_format=response_format,
            before_call=attempts.append,
            clock=lambda: datetime.now(UTC) - timedelta(hours=1),
        ) as client,
        pytest.raises(ClockSkewError) as caught,
    ):
        client.get_order(190)

    assert caught.value.code == "E003"
    assert "clock" in str(caught.value)
    assert [call.error_code for call in sandbox.calls()] == [3, 3]
    assert attempts == ["GetOrder", "GetOrder"]


def test_a_stale_timestamp_is_re_signed_with_a_fresh_one(sandbox: Sandbox) -> None:
    readings = iter([datetime.now(UTC) - timedelta(hours=1)])

    def clock() -> datetime:
        return next(readings, datetime.now(UTC))

    with SellerCenterClient(sandbox.url, sandbox.user_id, sandbox.api_key, clock=clock) as client:
        assert client.get_order(190).order_id == 190

    first, second = sandbox.calls()
    assert (first.error_code, second.error_code) == (3, None)
    assert first.params["Timestamp"] != second.params["Timestamp"]


# --- transient faults: one attempt each, the right class ------------------------------------------


def test_http500_fault_is_a_transport_error(sandbox: Sandbox, client: SellerCenterClient) -> None:
    inject(sandbox, "http500")

    with pytest.raises(TransportError) as caught:
        client.get_order(190)

    assert caught.value.http_status == 500
    assert len(sandbox.calls()) == 1


def test_proxy_502_page_fault_is_a_transport_error_quoting_the_page(
    sandbox: Sandbox, client: SellerCenterClient
) -> None:
    inject(sandbox, "http502_html")

    with pytest.raises(TransportError) as caught:
        client.remove_products(["SKU-1"])

    assert caught.value.http_status == 502
    assert "HTTP 502, text/html body: '<html> <head><title>502 Bad Gateway" in str(caught.value)
    assert len(sandbox.calls()) == 1


def test_e006_fault_is_a_service_error(sandbox: Sandbox, client: SellerCenterClient) -> None:
    inject(sandbox, "e006")

    with pytest.raises(ServiceError) as caught:
        client.get_order(190)

    assert caught.value.code == "E006"
    assert len(sandbox.calls()) == 1


def test_e901_fault_is_a_throttled_error(sandbox: Sandbox, client: SellerCenterClient) -> None:
    inject(sandbox, "e901")

    with pytest.raises(ThrottledError) as caught:
        client.get_response("0" * 26)

    assert caught.value.code == "E901"


def test_truncated_answer_is_a_transport_error(
    sandbox: Sandbox, client: SellerCenterClient
) -> None:
    inject(sandbox, "truncated")

    with pytest.raises(TransportError, match="malformed"):
        client.get_order(190)

    assert len(sandbox.calls()) == 1


def test_slow_answer_is_a_transport_error_after_the_read_timeout(
    sandbox: Sandbox, response_format: Format
) -> None:
    inject(sandbox, "slow")
    sandbox.config.slow_seconds = 30.0
    with (
        SellerCenterClient(
            sandbox.url,
            sandbox.user_id,
            sandbox.api_key,
            response_format=response_format,
            read_timeout=0.3,
        ) as client,
        pytest.raises(TransportError, match="read timed out"),
    ):
        client.get_order(190)


def test_rate_limit_answers_are_throttled_errors(
    sandbox: Sandbox, client: SellerCenterClient
) -> None:
    sandbox.config.rate_limit = 1.0
    client.get_order(190)

    with pytest.raises(ThrottledError):
        client.get_order(190)


# --- hooks, logging, threads ----------------------------------------------------------------------


def test_hooks_see_every_attempt(sandbox: Sandbox, response_format: Format) -> None:
    before: list[str] = []
    after: list[CallRecord] = []
    with SellerCenterClient(
        sandbox.url,
        sandbox.user_id,
        sandbox.api_key,
        response_format=response_format,
        before_call=before.append,
        after_call=after.append,
    ) as client:
        client.get_order(190)
        with pytest.raises(NotFoundError):
            client.get_order(999_999_999)

    assert before == ["GetOrder", "GetOrder"]
    assert [(r.action, r.outcome, r.http_status, r.error_code) for r in after] == [
        ("GetOrder", "ok", 200, None),
        ("GetOrder", "api_error", 200, "E016"),
    ]
    assert all(record.duration_s >= 0 for record in after)


def test_before_call_can_refuse_a_call(sandbox: Sandbox) -> None:
    def refuse(action: str) -> None:
        raise RuntimeError(f"no budget for {action}")

    with (
        SellerCenterClient(
            sandbox.url, sandbox.user_id, sandbox.api_key, before_call=refuse
        ) as client,
        pytest.raises(RuntimeError, match="no budget for GetOrder"),
    ):
        client.get_order(190)

    assert sandbox.calls() == []


def test_debug_log_names_the_call_without_signature_or_key(
    sandbox: Sandbox, client: SellerCenterClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="worker.platforms.sellercenter")

    client.get_order(190)

    messages = [r.getMessage() for r in caplog.records if r.name == "worker.platforms.sellercenter"]
    assert any("GetOrder" in message and "OrderId=190" in message for message in messages)
    assert all("Signature" not in message for message in messages)
    assert all(sandbox.api_key not in message for message in messages)


def test_repr_shows_no_key(sandbox: Sandbox, client: SellerCenterClient) -> None:
    assert sandbox.api_key not in repr(client)
    assert sandbox.user_id in repr(client)


def test_one_client_serves_many_threads(sandbox: Sandbox, client: SellerCenterClient) -> None:
    order_ids = list(range(1, 65))

    with ThreadPoolExecutor(max_workers=32) as pool:
        orders = list(pool.map(client.get_order, order_ids))

    assert [order.order_id for order in orders] == order_ids
    assert len(sandbox.calls()) == 64


# --- properties: the sandbox is the independent verifier of the signing ---------------------------


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(skus=st.lists(XML_TEXT, min_size=1, max_size=50, unique=True))
def test_any_unicode_skus_are_accepted_and_removed_exactly(
    sandbox: Sandbox, skus: list[str]
) -> None:
    sandbox.config.failing_skus = ()
    before = sandbox.removal_counts()
    with SellerCenterClient(sandbox.url, sandbox.user_id, sandbox.api_key) as client:
        outcome = client.remove_products(skus)

    assert outcome.removed == tuple(skus)
    assert sandbox.removal_counts() - before == {sku: 1 for sku in skus}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    user_id=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40),
    api_key=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40),
    order_id=st.integers(min_value=1, max_value=899_999_999),
)
def test_any_unicode_user_id_and_key_sign_requests_the_sandbox_accepts(
    sandbox: Sandbox, user_id: str, api_key: str, order_id: int
) -> None:
    sandbox.config.user_id = user_id
    sandbox.config.api_key = api_key
    with SellerCenterClient(sandbox.url, user_id, api_key, response_format="JSON") as client:
        assert client.get_order(order_id).order_id == order_id


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    extra=st.dictionaries(
        st.text(alphabet=string.ascii_letters + "-_.~", min_size=1, max_size=10).filter(
            lambda name: name not in SIGNED_BY_THE_CLIENT
        ),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
        max_size=4,
    )
)
def test_sign_of_arbitrary_unicode_params_is_accepted_by_the_sandbox(
    sandbox: Sandbox, extra: dict[str, str]
) -> None:
    params = {
        "Action": "GetOrder",
        "OrderId": "190",
        "Timestamp": format_timestamp(datetime.now(UTC)),
        "UserID": sandbox.user_id,
        "Version": "1.0",
        **extra,
    }
    url = f"{sandbox.url}?{canonical_query(params)}&Signature={sign(params, sandbox.api_key)}"

    answer = requests.get(url, timeout=10)

    assert answer.status_code == 200
    assert b"<SuccessResponse>" in answer.content, answer.content[:300]


# --- the environment: read once, when the client is made ------------------------------------------


class _RecordingProxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy that forwards nothing: it records each request line and answers 502."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.requestline)
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    _RecordingProxy.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_proxy_in_the_environment_carries_the_calls(
    sandbox: Sandbox, proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    with (
        SellerCenterClient(sandbox.url, sandbox.user_id, sandbox.api_key) as client,
        pytest.raises(TransportError, match="HTTP 502"),
    ):
        client.get_order(190)
    assert len(_RecordingProxy.seen) == 1
    assert _RecordingProxy.seen[0].startswith(f"GET {sandbox.url}")  # absolute form: proxied
    assert sandbox.calls() == []


def test_no_proxy_is_honoured_and_the_environment_is_read_when_the_client_is_made(
    sandbox: Sandbox, proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with SellerCenterClient(sandbox.url, sandbox.user_id, sandbox.api_key) as client:
        assert client.get_order(190).order_id == 190
        # The environment is read once, when the client is made (requests would read it on
        # every call, a noticeable CPU cost per call, see bench/RESULTS.md): a later change
        # does not redirect a running worker.
        monkeypatch.delenv("NO_PROXY")
        assert client.get_order(190).order_id == 190
    assert _RecordingProxy.seen == []
    assert len(sandbox.calls()) == 2


def test_a_password_in_the_api_url_is_in_no_repr_log_line_or_call_record(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    password = "URL-PASSWORD-51c2"
    api_url = sandbox.url.replace("http://", f"http://shop:{password}@", 1)
    records: list[CallRecord] = []
    caplog.set_level(logging.DEBUG, logger="worker.platforms.sellercenter")

    with SellerCenterClient(
        api_url, sandbox.user_id, sandbox.api_key, after_call=records.append
    ) as client:
        order = client.get_order(190)
        with pytest.raises(ValueError) as refused:
            SellerCenterClient(f"ftp://shop:{password}@host/", "u", "k")

    assert order.order_id == 190
    assert "shop:***@" in caplog.text  # the call was logged, with the URL masked
    for text in (repr(client), caplog.text, repr(records), str(refused.value)):
        assert password not in text
