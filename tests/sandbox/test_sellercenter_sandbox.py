"""The sandbox behaves like the legacy Seller Center API (decisions D1-D8), over real HTTP.

Requests are signed by the small signer below, written independently of the client package.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, quote_plus

import pytest
import requests
from lxml import etree

from worker.sandbox import catalogue
from worker.sandbox.sellercenter import Sandbox, SandboxConfig, add_arguments, config_from_args
from worker.sandbox.sellercenter.signature import signature

# -- an independent signer and small request helpers ------------------------------------------


def sign(pairs: list[tuple[str, str]], key: str) -> str:
    """Decision D1: sorted names, RFC 3986 encoding, HMAC-SHA256, lowercase hex."""
    message = "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in sorted(pairs))
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def now_stamp(shift: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + shift).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def api_url(
    sandbox: Sandbox,
    action: str,
    *,
    key: str | None = None,
    user_id: str | None = None,
    timestamp: str | None = None,
    without: tuple[str, ...] = (),
    **extra: str,
) -> str:
    params = {
        "Action": action,
        "Timestamp": timestamp or now_stamp(),
        "UserID": user_id or sandbox.user_id,
        "Version": "1.0",
        **extra,
    }
    pairs = [(name, value) for name, value in params.items() if name not in without]
    query = "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in pairs)
    if "Signature" not in without:
        query += "&Signature=" + sign(pairs, key or sandbox.api_key)
    return sandbox.url + "?" + query


def call(
    sandbox: Sandbox,
    action: str,
    body: bytes | None = None,
    *,
    method: str | None = None,
    **options: str,
) -> requests.Response:
    """GET without a body, POST with one, unless ``method`` says otherwise."""
    verb = method or ("POST" if body is not None else "GET")
    return requests.request(verb, api_url(sandbox, action, **options), data=body, timeout=30)


def xml(response: requests.Response) -> etree._Element:
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    return etree.fromstring(response.content)


def error_code(response: requests.Response) -> int:
    root = xml(response)
    assert root.tag == "ErrorResponse", response.text
    return int(root.findtext("Head/ErrorCode") or "")


def remove_body(*skus: str) -> bytes:
    items = "".join(f"<SellerSku>{sku}</SellerSku>" for sku in skus)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Request><Product><Skus><Sku>{items}</Sku></Skus></Product></Request>"
    ).encode()


def images_body(*urls: str) -> bytes:
    items = "".join(f"<Url>{url}</Url>" for url in urls)
    return f"<Request><Images>{items}</Images></Request>".encode()


def response_body(request_id: str) -> bytes:
    return f"<Request><RequestId>{request_id}</RequestId></Request>".encode()


def migrate(sandbox: Sandbox, *urls: str) -> str:
    root = xml(call(sandbox, "MigrateImages", images_body(*urls)))
    assert root.tag == "SuccessResponse"
    return root.findtext("Head/RequestId") or ""


# -- signing and common parameters ------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "key", "expected"),
    [
        (
            [
                ("Foo", "bar"),
                ("Whatever", "you want"),
                ("UserID", "abc@sellercenter.net"),
                ("Timestamp", "2014-11-12T11:45:26Z"),
            ],
            "1234567890",
            "bb6b9ee192fe31f7e21c2fcc6298feccc777b747beb0a062e7c21072671a5cae",
        ),
        (
            [
                ("Action", "FeedList"),
                ("Format", "XML"),
                ("Timestamp", "2015-07-01T11:11:11+00:00"),
                ("UserID", "look@me.com"),
                ("version", "1.0"),
            ],
            "b1bdb357ced10fe4e9a69840cdd4f0e9c03d77fe",
            "9cbcdf6a7d8f8229ec01f67268a1ed82b47f8f931a2990316fe83835441ebff3",
        ),
        (
            [("param1", "123"), ("param2", "ab cd")],
            "67c7ef5fa5d408aed1",
            "1dff271f6157edfbfc592966a3b811efee46df45e002c25120e4c65e06990c7a",
        ),
        (
            [
                ("Action", "GetOrder"),
                ("Format", "JSON"),
                ("OrderId", "12345"),
                ("Note", "x y~*/"),
                ("Timestamp", "2016-07-18T11:11:00+00:00"),
                ("UserID", "a+b@example.com"),
                ("Version", "1.0"),
            ],
            "test-key",
            "288637ef2dc3d407af1c5bac20142d06c1acfb482947e2a95522822ad6de312e",
        ),
    ],
)
def test_sandbox_signature_matches_the_published_test_vectors(
    pairs: list[tuple[str, str]], key: str, expected: str
) -> None:
    assert signature(pairs, key) == expected


def test_correctly_signed_get_order_190_returns_the_doc_pages_sample(sandbox: Sandbox) -> None:
    root = xml(call(sandbox, "GetOrder", OrderId="190"))
    assert root.tag == "SuccessResponse"
    assert root.findtext("Head/RequestAction") == "GetOrder"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", root.findtext("Head/Timestamp"))
    order = root.find("Body/Orders/Order")
    assert order is not None
    assert order.findtext("OrderId") == "190"
    assert order.findtext("CustomerFirstName") == "ภัทรนิดา แสนสุข"
    assert order.findtext("CustomerLastName") == ""
    assert order.findtext("OrderNumber") == "300125759"
    assert order.findtext("PaymentMethod") == "CashOnDelivery"
    assert order.findtext("Price") == "100.00"
    assert order.findtext("GiftOption") == "0"
    assert order.findtext("CreatedAt") == "2015-03-24 16:09:22"
    assert order.findtext("AddressBilling/FirstName") == "First Name 3 Test"
    assert order.findtext("AddressBilling/PostCode") == "33333"
    assert order.findtext("AddressShipping/Address1") == "121 ???? 4 "
    assert order.findtext("AddressShipping/City") == "?????????????-??????-10400"
    assert order.findtext("ItemsCount") == "12"
    assert json.loads(order.findtext("ExtraAttributes") or "") == {"TaxInvoiceRequested": "true"}
    assert len(order.findall("Statuses/Status")) == 11
    assert order.findtext("TaxCode") == "1234"
    assert order.findtext("BranchNumber") == "2222"


def test_signature_made_with_another_key_is_refused_with_e007(sandbox: Sandbox) -> None:
    response = call(sandbox, "GetOrder", OrderId="190", key="not-the-key")
    assert error_code(response) == 7
    assert (
        xml(response).findtext("Head/ErrorMessage") == "E007: Login failed. Signature mismatching"
    )


def test_unknown_user_id_is_refused_with_e007(sandbox: Sandbox) -> None:
    assert error_code(call(sandbox, "GetOrder", OrderId="190", user_id="who@else.test")) == 7


def test_uppercase_signature_is_a_mismatch(sandbox: Sandbox) -> None:
    url = api_url(sandbox, "GetOrder", OrderId="190")
    head, _, signature_hex = url.rpartition("=")
    assert error_code(requests.get(f"{head}={signature_hex.upper()}", timeout=30)) == 7


def test_signing_with_plus_for_space_is_a_signature_mismatch(sandbox: Sandbox) -> None:
    pairs = sorted(
        [
            ("Action", "GetOrder"),
            ("Note", "a b"),
            ("OrderId", "190"),
            ("Timestamp", now_stamp()),
            ("UserID", sandbox.user_id),
            ("Version", "1.0"),
        ]
    )
    query = "&".join(f"{quote_plus(n)}={quote_plus(v)}" for n, v in pairs)  # the classic bug
    digest = hmac.new(sandbox.api_key.encode(), query.encode(), hashlib.sha256).hexdigest()
    assert error_code(requests.get(f"{sandbox.url}?{query}&Signature={digest}", timeout=30)) == 7


def test_timestamp_older_than_the_allowed_skew_gives_e003(sandbox: Sandbox) -> None:
    stale = now_stamp(timedelta(seconds=-400))
    response = call(sandbox, "GetOrder", OrderId="190", timestamp=stale)
    assert error_code(response) == 3
    assert xml(response).findtext("Head/ErrorMessage") == "E003: Timestamp has expired"


def test_timestamp_too_far_in_the_future_gives_e003(sandbox: Sandbox) -> None:
    ahead = now_stamp(timedelta(seconds=400))
    assert error_code(call(sandbox, "GetOrder", OrderId="190", timestamp=ahead)) == 3


@pytest.mark.parametrize(
    "layout",
    [
        "%Y-%m-%dT%H:%M:%S+00:00",
        "%Y-%m-%dT%H:%M:%S+0000",
        "%Y-%m-%dT%H:%M:%SZ",
        "%Y-%m-%dT%H:%M+0000",
    ],
)
def test_iso_8601_timestamps_of_every_sdk_flavour_are_accepted(
    sandbox: Sandbox, layout: str
) -> None:
    stamp = datetime.now(UTC).strftime(layout)
    assert xml(call(sandbox, "GetOrder", OrderId="190", timestamp=stamp)).tag == "SuccessResponse"


def test_timestamp_with_another_utc_offset_is_compared_as_the_same_instant(
    sandbox: Sandbox,
) -> None:
    bangkok_wall_clock = datetime.now(UTC) + timedelta(hours=7)
    stamp = bangkok_wall_clock.strftime("%Y-%m-%dT%H:%M:%S+07:00")
    assert xml(call(sandbox, "GetOrder", OrderId="190", timestamp=stamp)).tag == "SuccessResponse"


def test_unparsable_timestamp_gives_e004(sandbox: Sandbox) -> None:
    assert error_code(call(sandbox, "GetOrder", OrderId="190", timestamp="yesterday")) == 4


@pytest.mark.parametrize("name", ["Action", "Timestamp", "UserID", "Version", "Signature"])
def test_missing_mandatory_parameter_gives_e001_naming_it(sandbox: Sandbox, name: str) -> None:
    url = api_url(sandbox, "GetOrder", OrderId="190", without=(name,))
    response = requests.get(url, timeout=30)
    assert error_code(response) == 1
    assert xml(response).findtext("Head/ErrorMessage") == f"E001: Parameter {name} is mandatory"


def test_version_other_than_1_0_gives_e002(sandbox: Sandbox) -> None:
    assert error_code(call(sandbox, "GetOrder", OrderId="190", Version="2.0")) == 2


def test_unknown_action_gives_e008(sandbox: Sandbox) -> None:
    assert error_code(call(sandbox, "DeleteEverything")) == 8


def test_action_sent_with_the_wrong_http_method_gives_e005(sandbox: Sandbox) -> None:
    response = call(sandbox, "RemoveProduct", method="GET")
    assert error_code(response) == 5
    assert xml(response).findtext("Body/ErrorDetail/Value") == "GET"


# -- GetOrder ----------------------------------------------------------------------------------


def test_order_id_at_or_beyond_missing_order_from_gives_e016(sandbox: Sandbox) -> None:
    response = call(sandbox, "GetOrder", OrderId="900000000")
    assert error_code(response) == 16
    assert xml(response).findtext("Head/ErrorMessage") == 'E016: "900000000" Invalid Order ID'


@pytest.mark.parametrize("order_id", ["0", "-3", "12ab", ""])
def test_order_id_that_is_not_a_positive_integer_gives_e016(
    sandbox: Sandbox, order_id: str
) -> None:
    assert error_code(call(sandbox, "GetOrder", OrderId=order_id)) == 16


def test_missing_order_id_gives_e016(sandbox: Sandbox) -> None:
    assert error_code(call(sandbox, "GetOrder")) == 16


def test_any_other_positive_order_id_answers_the_same_complete_order_every_time(
    sandbox: Sandbox,
) -> None:
    first = xml(call(sandbox, "GetOrder", OrderId="4242")).find("Body/Orders/Order")
    second = xml(call(sandbox, "GetOrder", OrderId="4242")).find("Body/Orders/Order")
    assert first is not None and second is not None
    assert etree.tostring(first) == etree.tostring(second)
    assert re.fullmatch(r"\d+\.\d\d", first.findtext("Price") or "")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", first.findtext("UpdatedAt") or "")
    json.loads(first.findtext("ExtraAttributes") or "")
    for address in ("AddressBilling", "AddressShipping"):
        assert first.findtext(f"{address}/Country")
    assert first.findall("Statuses/Status")


def test_sample_orders_include_non_ascii_names_and_open_and_final_statuses(
    sandbox: Sandbox,
) -> None:
    names: list[str] = []
    statuses: set[str] = set()
    for order_id in range(1, 41):
        order = xml(call(sandbox, "GetOrder", OrderId=str(order_id))).find("Body/Orders/Order")
        assert order is not None
        names.append(order.findtext("CustomerFirstName") or "")
        statuses.update(status.text or "" for status in order.iterfind("Statuses/Status"))
    assert any(not name.isascii() for name in names)
    assert statuses & catalogue.OPEN_STATUSES
    assert statuses & catalogue.FINAL_STATUSES


def test_open_order_reaches_a_final_status_as_time_passes() -> None:
    open_ids = [
        order_id
        for order_id in range(1, 200)
        if set(catalogue.order(order_id, 0, 0.0, 60.0)["Statuses"]["Status"])
        & catalogue.OPEN_STATUSES
    ]
    assert open_ids
    later = catalogue.order(open_ids[0], 0, 3600.0, 60.0)["Statuses"]["Status"]
    assert set(later) <= catalogue.FINAL_STATUSES | {"returned"}


# -- RemoveProduct -----------------------------------------------------------------------------


def test_remove_product_succeeds_with_an_empty_body_and_counts_each_sku(sandbox: Sandbox) -> None:
    root = xml(call(sandbox, "RemoveProduct", remove_body("A-1", "A-2", "Ä-3")))
    assert root.tag == "SuccessResponse"
    assert root.findtext("Head/ResponseType") == "Product"
    assert root.find("Body") is not None and len(root.find("Body")) == 0
    assert sandbox.removal_counts() == {"A-1": 1, "A-2": 1, "Ä-3": 1}


def test_sku_removed_in_two_calls_is_counted_twice(sandbox: Sandbox) -> None:
    call(sandbox, "RemoveProduct", remove_body("A-1", "A-2"))
    call(sandbox, "RemoveProduct", remove_body("A-2"))
    assert sandbox.removal_counts()["A-2"] == 2
    assert sandbox.stats()["skus_removed_more_than_once"] == 1


def test_failing_sku_fails_the_whole_call_with_e503_naming_it_and_removes_nothing(
    sandbox: Sandbox,
) -> None:
    response = call(sandbox, "RemoveProduct", remove_body("OK-1", "X-FAIL-1", "OK-2"))
    assert error_code(response) == 503
    root = xml(response)
    assert root.findtext("Head/ErrorMessage") == "E503: Remove product failed"
    details = root.findall("Body/ErrorDetail")
    assert [detail.findtext("SellerSku") for detail in details] == ["X-FAIL-1"]
    assert details[0].findtext("Field") == "SellerSku"
    assert details[0].findtext("Value") == "X-FAIL-1"
    assert "X-FAIL-1" in (details[0].findtext("Message") or "")
    assert sandbox.removal_counts() == {}


def test_failing_sku_patterns_are_configurable(sandbox: Sandbox) -> None:
    sandbox.config.failing_skus = ("gone-*",)
    assert error_code(call(sandbox, "RemoveProduct", remove_body("gone-7"))) == 503
    assert xml(call(sandbox, "RemoveProduct", remove_body("X-FAIL-1"))).tag == "SuccessResponse"


def test_more_than_50_skus_in_one_call_gives_e204(sandbox: Sandbox) -> None:
    skus = [f"S-{n}" for n in range(51)]
    assert error_code(call(sandbox, "RemoveProduct", remove_body(*skus))) == 204
    assert sandbox.removal_counts() == {}


def test_exactly_50_skus_in_one_call_are_removed(sandbox: Sandbox) -> None:
    skus = [f"S-{n}" for n in range(50)]
    assert xml(call(sandbox, "RemoveProduct", remove_body(*skus))).tag == "SuccessResponse"
    assert len(sandbox.removal_counts()) == 50


def test_request_without_skus_gives_e030(sandbox: Sandbox) -> None:
    assert error_code(call(sandbox, "RemoveProduct", remove_body())) == 30


def test_post_without_a_body_gives_e030(sandbox: Sandbox) -> None:
    assert error_code(call(sandbox, "RemoveProduct", b"")) == 30


def test_malformed_body_gives_e005(sandbox: Sandbox) -> None:
    assert error_code(call(sandbox, "RemoveProduct", b"<Request><Product>")) == 5


def test_body_with_another_root_gives_e005(sandbox: Sandbox) -> None:
    assert (
        error_code(call(sandbox, "RemoveProduct", b"<Order><SellerSku>A</SellerSku></Order>")) == 5
    )


def test_external_entity_body_is_refused_with_e005_without_reading_the_file(
    sandbox: Sandbox,
) -> None:
    body = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
        b"<Request><Product><Skus><Sku><SellerSku>&x;</SellerSku></Sku></Skus></Product></Request>"
    )
    assert error_code(call(sandbox, "RemoveProduct", body)) == 5
    assert sandbox.removal_counts() == {}


def test_billion_laughs_body_is_refused_with_e005_without_expanding(sandbox: Sandbox) -> None:
    entities = "".join(
        f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' if n else '<!ENTITY l0 "lol">' for n in range(10)
    )
    body = (
        f'<?xml version="1.0"?><!DOCTYPE Request [{entities}]>'
        "<Request><Product><Skus><Sku><SellerSku>&l9;</SellerSku></Sku></Skus></Product></Request>"
    ).encode()
    response = call(sandbox, "RemoveProduct", body)
    assert error_code(response) == 5
    assert len(response.content) < 2000


def test_body_bigger_than_max_body_bytes_gives_e011(sandbox: Sandbox) -> None:
    sandbox.config.max_body_bytes = 1000
    response = call(sandbox, "RemoveProduct", remove_body("X" * 2000))
    assert error_code(response) == 11
    assert xml(response).findtext("Head/ErrorMessage") == "E011: Request too Big"


def test_concurrent_removals_are_all_counted(sandbox: Sandbox) -> None:
    def remove(worker: int) -> None:
        with requests.Session() as session:
            for batch in range(10):
                skus = [f"W{worker}-B{batch}-{n}" for n in range(5)]
                url = api_url(sandbox, "RemoveProduct")
                assert session.post(url, data=remove_body(*skus), timeout=30).ok

    threads = [threading.Thread(target=remove, args=(worker,)) for worker in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = sandbox.removal_counts()
    assert len(counts) == 32 * 10 * 5
    assert set(counts.values()) == {1}
    assert sandbox.stats()["calls_by_outcome"] == {"ok": 320}


# -- MigrateImages and GetResponse -------------------------------------------------------------


def test_migrate_images_answers_a_26_hex_request_id_and_an_empty_body(sandbox: Sandbox) -> None:
    root = xml(call(sandbox, "MigrateImages", images_body("https://shop.test/a.jpg")))
    assert root.tag == "SuccessResponse"
    assert re.fullmatch(r"[0-9a-f]{26}", root.findtext("Head/RequestId") or "")
    assert len(root.find("Body")) == 0


def test_image_job_still_running_answers_an_empty_body(sandbox: Sandbox) -> None:
    request_id = migrate(sandbox, "https://shop.test/a.jpg?sandbox_duration=3600")
    root = xml(call(sandbox, "GetResponse", response_body(request_id)))
    assert root.tag == "SuccessResponse"
    assert root.findtext("Head/ResponseType") == "Images"
    assert len(root.find("Body")) == 0


def test_finished_image_job_lists_migrated_images_and_per_image_errors(sandbox: Sandbox) -> None:
    good = "https://shop.test/a.jpg?sandbox_duration=0"
    broken = "https://shop.test/broken.jpg"
    root = xml(call(sandbox, "GetResponse", response_body(migrate(sandbox, good, broken))))
    images = root.findall("Body/Images/Image")
    assert [image.findtext("OriginalUrl") for image in images] == [good]
    assert (images[0].findtext("Url") or "").startswith("https://")
    assert images[0].findtext("Code")
    errors = root.findall("Body/Errors/Error")
    assert [error.findtext("OriginalUrl") for error in errors] == [broken]
    assert errors[0].findtext("Message") == "Error download image"


def test_image_job_goes_from_running_to_finished(sandbox: Sandbox) -> None:
    sandbox.config.image_job_seconds = (0.1, 0.2)
    request_id = migrate(sandbox, "https://shop.test/a.jpg")
    seen = []
    for _ in range(200):
        root = xml(call(sandbox, "GetResponse", response_body(request_id)))
        seen.append(root.find("Body/Images") is not None)
        if seen[-1]:
            break
        threading.Event().wait(0.02)
    assert seen[-1] is True
    assert seen == sorted(seen)  # never finished, then running again


def test_more_than_8_images_in_one_call_gives_e011(sandbox: Sandbox) -> None:
    urls = [f"https://shop.test/{n}.jpg" for n in range(9)]
    assert error_code(call(sandbox, "MigrateImages", images_body(*urls))) == 11


def test_migrate_images_without_urls_gives_e030(sandbox: Sandbox) -> None:
    assert error_code(call(sandbox, "MigrateImages", images_body())) == 30


def test_unknown_request_id_gives_e005_naming_it(sandbox: Sandbox) -> None:
    response = call(sandbox, "GetResponse", response_body("0a14301714908715332687334e"))
    assert error_code(response) == 5
    detail = xml(response).find("Body/ErrorDetail")
    assert detail is not None
    assert detail.findtext("Field") == "RequestId"
    assert detail.findtext("Value") == "0a14301714908715332687334e"


# -- Format=JSON -------------------------------------------------------------------------------


def json_of(response: requests.Response) -> dict:
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    document = response.json()
    assert isinstance(document, dict)
    return document


def test_json_renders_a_one_element_list_as_an_object_and_several_as_an_array(
    sandbox: Sandbox,
) -> None:
    document = json_of(call(sandbox, "GetOrder", OrderId="190", Format="JSON"))
    order = document["SuccessResponse"]["Body"]["Orders"]["Order"]
    assert isinstance(order, dict)
    assert order["OrderId"] == "190"
    assert order["ItemsCount"] == "12"
    assert isinstance(order["Statuses"]["Status"], list)
    assert order["CustomerLastName"] == ""


def test_json_single_status_is_a_string(sandbox: Sandbox) -> None:
    single = [
        order_id
        for order_id in range(1, 100)
        if len(catalogue.order(order_id, 0, 0.0, 60.0)["Statuses"]["Status"]) == 1
    ]
    document = json_of(call(sandbox, "GetOrder", OrderId=str(single[0]), Format="JSON"))
    order = document["SuccessResponse"]["Body"]["Orders"]["Order"]
    assert isinstance(order["Statuses"]["Status"], str)


def test_json_empty_body_is_an_empty_string(sandbox: Sandbox) -> None:
    document = json_of(call(sandbox, "RemoveProduct", remove_body("A-1"), Format="JSON"))
    assert document["SuccessResponse"]["Head"]["RequestAction"] == "RemoveProduct"
    assert document["SuccessResponse"]["Body"] == ""


def test_json_error_has_string_code_and_one_detail_as_an_object(sandbox: Sandbox) -> None:
    document = json_of(call(sandbox, "RemoveProduct", remove_body("X-FAIL-1"), Format="JSON"))
    head = document["ErrorResponse"]["Head"]
    assert head["ErrorCode"] == "503"
    assert head["ErrorType"] == "Sender"
    assert document["ErrorResponse"]["Body"]["ErrorDetail"]["SellerSku"] == "X-FAIL-1"


def test_json_error_with_several_details_lists_them(sandbox: Sandbox) -> None:
    body = remove_body("X-FAIL-1", "Y-FAIL-2")
    document = json_of(call(sandbox, "RemoveProduct", body, Format="JSON"))
    details = document["ErrorResponse"]["Body"]["ErrorDetail"]
    assert [detail["SellerSku"] for detail in details] == ["X-FAIL-1", "Y-FAIL-2"]


# -- faults, rate limit, recording --------------------------------------------------------------


def only_fault(sandbox: Sandbox, kind: str) -> None:
    sandbox.config.fault_rate = 1.0
    sandbox.config.fault_kinds = (kind,)


def test_http500_fault_answers_http_500(sandbox: Sandbox) -> None:
    only_fault(sandbox, "http500")
    assert call(sandbox, "GetOrder", OrderId="190").status_code == 500


def test_http502_html_fault_answers_a_proxys_bad_gateway_page(sandbox: Sandbox) -> None:
    only_fault(sandbox, "http502_html")
    response = call(sandbox, "GetOrder", OrderId="190")
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Bad Gateway" in response.text


def test_e006_fault_answers_an_unexpected_internal_error(sandbox: Sandbox) -> None:
    only_fault(sandbox, "e006")
    response = call(sandbox, "GetOrder", OrderId="190")
    assert error_code(response) == 6
    assert xml(response).findtext("Head/ErrorType") == "Platform"


def test_e901_fault_answers_request_too_frequent(sandbox: Sandbox) -> None:
    only_fault(sandbox, "e901")
    assert error_code(call(sandbox, "GetOrder", OrderId="190")) == 901


def test_truncated_fault_answers_half_a_document_with_a_matching_content_length(
    sandbox: Sandbox,
) -> None:
    only_fault(sandbox, "truncated")
    response = call(sandbox, "GetOrder", OrderId="190")
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert response.content.startswith(b"<?xml")
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(response.content)


def test_slow_fault_answers_normally_after_waiting(sandbox: Sandbox) -> None:
    only_fault(sandbox, "slow")
    sandbox.config.slow_seconds = 0.05
    assert xml(call(sandbox, "GetOrder", OrderId="190")).tag == "SuccessResponse"
    assert sandbox.calls()[-1].fault == "slow"


def test_stop_does_not_wait_for_a_slow_call(sandbox: Sandbox) -> None:
    only_fault(sandbox, "slow")
    sandbox.config.slow_seconds = 3600
    outcome: list[BaseException] = []

    def slow_call() -> None:
        try:
            call(sandbox, "RemoveProduct", remove_body("A-1"))
        except requests.RequestException as error:
            outcome.append(error)

    thread = threading.Thread(target=slow_call, daemon=True)
    thread.start()
    while sandbox.stats()["calls_in_flight"] == 0:
        threading.Event().wait(0.01)
    sandbox.stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert outcome  # the connection was dropped, not answered
    assert sandbox.removal_counts() == {}


@pytest.mark.parametrize("kind", ["http500", "http502_html", "e006", "e901", "truncated"])
def test_faulted_remove_product_removes_nothing(sandbox: Sandbox, kind: str) -> None:
    only_fault(sandbox, kind)
    call(sandbox, "RemoveProduct", remove_body("A-1"))
    assert sandbox.removal_counts() == {}
    assert sandbox.stats()["faults_injected"] == {kind: 1}


def test_faulted_migrate_images_starts_no_job(sandbox: Sandbox) -> None:
    only_fault(sandbox, "truncated")
    call(sandbox, "MigrateImages", images_body("https://shop.test/a.jpg"))
    assert sandbox.stats()["image_jobs"] == 0


def test_same_seed_injects_the_same_faults_in_the_same_order() -> None:
    def faults_of_a_run() -> list[str | None]:
        config = SandboxConfig(fault_rate=0.5, fault_kinds=("http500", "e006", "e901"), seed=7)
        with Sandbox(config) as sandbox:
            for _ in range(20):
                call(sandbox, "GetOrder", OrderId="190")
            return [served.fault for served in sandbox.calls()]

    first = faults_of_a_run()
    assert first == faults_of_a_run()
    assert None in first and set(first) - {None}


def test_calls_beyond_the_rate_limit_get_e901(sandbox: Sandbox) -> None:
    sandbox.config.rate_limit = 1.0
    responses = [call(sandbox, "GetOrder", OrderId="190") for _ in range(10)]
    assert xml(responses[0]).tag == "SuccessResponse"
    limited = [response for response in responses if xml(response).tag == "ErrorResponse"]
    assert limited
    assert xml(limited[0]).findtext("Head/ErrorMessage") == (
        "E901: request too frequent, please try again later"
    )


def test_recorded_calls_never_hold_the_signature(sandbox: Sandbox) -> None:
    url = api_url(sandbox, "GetOrder", OrderId="190")
    signature_hex = url.rpartition("Signature=")[2]
    requests.get(url, timeout=30)
    call(sandbox, "RemoveProduct", remove_body("A-1"))
    served = sandbox.calls()
    assert [entry.action for entry in served] == ["GetOrder", "RemoveProduct"]
    assert all("Signature" not in entry.params for entry in served)
    assert served[0].params["OrderId"] == "190"
    assert served[1].body == remove_body("A-1")
    assert signature_hex not in repr(served)
    calls_json = requests.get(sandbox.url + "_sandbox/calls", timeout=30).text
    assert signature_hex not in calls_json


def test_request_log_is_silent(sandbox: Sandbox, capfd: pytest.CaptureFixture[str]) -> None:
    call(sandbox, "GetOrder", OrderId="190")
    requests.get(sandbox.url + "?garbage", timeout=30)
    captured = capfd.readouterr()
    assert captured.err == ""
    assert captured.out == ""


# -- observer endpoints and configuration --------------------------------------------------------


def test_stats_endpoint_counts_calls_by_action_and_outcome(sandbox: Sandbox) -> None:
    call(sandbox, "GetOrder", OrderId="190")
    call(sandbox, "GetOrder", OrderId="999999999")
    call(sandbox, "RemoveProduct", remove_body("A-1", "A-2"))
    stats = requests.get(sandbox.url + "_sandbox/stats", timeout=30).json()
    assert stats["calls"] == 3
    assert stats["calls_by_action"] == {"GetOrder": 2, "RemoveProduct": 1}
    assert stats["calls_by_outcome"] == {"ok": 2, "E016": 1}
    assert stats["skus_removed"] == 2
    assert stats["skus_removed_more_than_once"] == 0
    assert stats["peak_calls_per_second"] >= 1


def test_config_endpoint_changes_knobs_while_running(sandbox: Sandbox) -> None:
    answer = requests.post(
        sandbox.url + "_sandbox/config",
        json={"fault_rate": 1, "fault_kinds": ["http500"]},
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.json()["fault_kinds"] == ["http500"]
    assert answer.json()["api_key"] == "set"
    assert call(sandbox, "GetOrder", OrderId="190").status_code == 500


def test_config_endpoint_refuses_bad_values_and_keeps_the_old_ones(sandbox: Sandbox) -> None:
    answer = requests.post(sandbox.url + "_sandbox/config", json={"fault_rate": 3}, timeout=30)
    assert answer.status_code == 400
    assert "fault_rate" in answer.json()["error"]
    assert sandbox.config.fault_rate == 0.0


def test_reset_endpoint_forgets_calls_and_removals(sandbox: Sandbox) -> None:
    call(sandbox, "RemoveProduct", remove_body("A-1"))
    assert requests.post(sandbox.url + "_sandbox/reset", timeout=30).status_code == 200
    assert sandbox.calls() == []
    assert sandbox.removal_counts() == {}
    assert sandbox.stats()["calls"] == 0


def test_reset_calls_endpoint_forgets_calls_but_keeps_removals(sandbox: Sandbox) -> None:
    call(sandbox, "RemoveProduct", remove_body("A-1"))
    answer = requests.post(sandbox.url + "_sandbox/reset-calls", timeout=30)
    assert answer.status_code == 200
    assert sandbox.calls() == []
    assert sandbox.stats()["calls"] == 0
    assert sandbox.removal_counts() == {"A-1": 1}


def test_observer_endpoints_get_no_faults(sandbox: Sandbox) -> None:
    only_fault(sandbox, "http500")
    assert requests.get(sandbox.url + "_sandbox/stats", timeout=30).status_code == 200


def test_config_reads_the_environment() -> None:
    config = SandboxConfig.from_env(
        {
            "LAZADA_SANDBOX_LATENCY": "0.25",
            "LAZADA_SANDBOX_FAULT_KINDS": "e006, slow",
            "LAZADA_SANDBOX_RATE_LIMIT": "none",
            "LAZADA_SANDBOX_IMAGE_JOB_SECONDS": "1,3",
            "LAZADA_SANDBOX_SEED": "9",
        }
    )
    assert config.latency == 0.25
    assert config.fault_kinds == ("e006", "slow")
    assert config.rate_limit is None
    assert config.image_job_seconds == (1.0, 3.0)
    assert config.seed == 9


def test_bad_environment_value_is_named_in_a_one_line_error() -> None:
    with pytest.raises(ValueError, match="LAZADA_SANDBOX_FAULT_RATE") as error:
        SandboxConfig.from_env({"LAZADA_SANDBOX_FAULT_RATE": "often"})
    assert "\n" not in str(error.value)


@pytest.fixture
def parser() -> Iterator[argparse.ArgumentParser]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    yield parser


def test_command_line_options_override_the_defaults(parser: argparse.ArgumentParser) -> None:
    args = parser.parse_args(
        ["--port", "0", "--fault-rate", "0.1", "--fault-kinds", "http500", "--rate-limit", "5"]
    )
    config = config_from_args(args)
    assert args.port == 0
    assert config.fault_rate == 0.1
    assert config.fault_kinds == ("http500",)
    assert config.rate_limit == 5.0


@pytest.mark.parametrize(
    "argv",
    [["--fault-rate", "2"], ["--fault-kinds", "meteor"], ["--image-job-seconds", "5,1"]],
)
def test_bad_command_line_values_raise_a_one_line_value_error(
    parser: argparse.ArgumentParser, argv: list[str]
) -> None:
    with pytest.raises(ValueError) as error:
        config_from_args(parser.parse_args(argv))
    assert "\n" not in str(error.value)
