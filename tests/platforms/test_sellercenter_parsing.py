"""Parsing responses (decisions D3, D4, D6) fed straight to the parser, no HTTP."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from worker.platforms.sellercenter import (
    AuthenticationError,
    ClockSkewError,
    InvalidRequestError,
    NotFoundError,
    SellerCenterError,
    ServiceError,
    ThrottledError,
    classify,
    code_label,
)
from worker.platforms.sellercenter.envelope import Envelope, MalformedResponse, parse_envelope
from worker.platforms.sellercenter.models import ErrorDetail
from worker.platforms.sellercenter.parsing import (
    error_details,
    error_from_envelope,
    parse_image_job_status,
    parse_migration_request_id,
    parse_order,
    parse_removal_outcome,
    snake_case,
)

# The GetOrder doc page's result sample, verbatim (including the page's "[email protected]").
SEED_GET_ORDER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<SuccessResponse>
<Head>
<RequestId/>
<RequestAction>GetOrder</RequestAction>
<ResponseType>Order</ResponseType>
<Timestamp>2015-08-03T11:16:14+0200</Timestamp>
</Head>
<Body>
<Orders>
<Order>
<OrderId>190</OrderId>
<CustomerFirstName>ภัทรนิดา แสนสุข</CustomerFirstName>
<CustomerLastName/>
<OrderNumber>300125759</OrderNumber>
<PaymentMethod>CashOnDelivery</PaymentMethod>
<Remarks/>
<DeliveryInfo/>
<Price>100.00</Price>
<GiftOption>0</GiftOption>
<GiftMessage/>
<VoucherCode/>
<CreatedAt>2015-03-24 16:09:22</CreatedAt>
<UpdatedAt>2015-03-24 16:09:22</UpdatedAt>
<AddressBilling>
<FirstName>First Name 3 Test</FirstName>
<LastName>First Name 3 Test</LastName>
<Phone>0925090880</Phone>
<Phone2/>
<Address1>Configure this street and number</Address1>
<Address2/>
<Address3/>
<Address4/>
<Address5/>
<CustomerEmail>[email protected]</CustomerEmail>
<City>Configure city</City>
<Ward/>
<Region/>
<PostCode>33333</PostCode>
<Country>Thailand</Country>
</AddressBilling>
<AddressShipping>
<FirstName>??????? ???????????</FirstName>
<LastName/>
<Phone>0925090880</Phone>
<Phone2/>
<Address1>121 ???? 4 </Address1>
<Address2>?????????????????</Address2>
<Address3/>
<Address4/>
<Address5/>
<CustomerEmail>[email protected]</CustomerEmail>
<City>?????????????-??????-10400</City>
<Ward/>
<Region/>
<PostCode>10400</PostCode>
<Country>Thailand</Country>
</AddressShipping>
<NationalRegistrationNumber/>
<ItemsCount>12</ItemsCount>
<ExtraAttributes>{"TaxInvoiceRequested":"true"}</ExtraAttributes>
<Statuses>
<Status>shipped</Status>
<Status>returned</Status>
<Status>return_waiting_for_approval</Status>
<Status>return_shipped_by_customer</Status>
<Status>return_rejected</Status>
<Status>ready_to_ship</Status>
<Status>processing</Status>
<Status>pending</Status>
<Status>failed</Status>
<Status>delivered</Status>
<Status>canceled</Status>
</Statuses>
<TaxCode>1234</TaxCode>
<BranchNumber>2222</BranchNumber>
</Order>
</Orders>
</Body>
</SuccessResponse>""".encode()

# The same order as the API's JSON flavour writes it: numbers as numbers, strings elsewhere.
SEED_GET_ORDER_JSON = r"""{"SuccessResponse": {
  "Head": {"RequestId": "", "RequestAction": "GetOrder", "ResponseType": "Order",
           "Timestamp": "2015-08-03T11:16:14+0200"},
  "Body": {"Orders": {"Order": {
    "OrderId": 190, "CustomerFirstName": "ภัทรนิดา แสนสุข", "CustomerLastName": "",
    "OrderNumber": 300125759, "PaymentMethod": "CashOnDelivery", "Remarks": "",
    "DeliveryInfo": "", "Price": 100.00, "GiftOption": 0, "GiftMessage": "", "VoucherCode": "",
    "CreatedAt": "2015-03-24 16:09:22", "UpdatedAt": "2015-03-24 16:09:22",
    "AddressBilling": {"FirstName": "First Name 3 Test", "LastName": "First Name 3 Test",
      "Phone": "0925090880", "Phone2": "", "Address1": "Configure this street and number",
      "Address2": "", "Address3": "", "Address4": "", "Address5": "",
      "CustomerEmail": "[email protected]", "City": "Configure city", "Ward": "", "Region": "",
      "PostCode": 33333, "Country": "Thailand"},
    "AddressShipping": {"FirstName": "??????? ???????????", "LastName": "",
      "Phone": "0925090880", "Phone2": "", "Address1": "121 ???? 4 ",
      "Address2": "?????????????????", "Address3": "", "Address4": "", "Address5": "",
      "CustomerEmail": "[email protected]", "City": "?????????????-??????-10400", "Ward": "",
      "Region": "", "PostCode": 10400, "Country": "Thailand"},
    "NationalRegistrationNumber": "", "ItemsCount": 12,
    "ExtraAttributes": "{\"TaxInvoiceRequested\":\"true\"}",
    "Statuses": {"Status": ["shipped", "returned", "return_waiting_for_approval",
      "return_shipped_by_customer", "return_rejected", "ready_to_ship", "processing",
      "pending", "failed", "delivered", "canceled"]},
    "TaxCode": 1234, "BranchNumber": 2222}}}}}""".encode()


def order_json(order: dict[str, object], timestamp: str = "2016-01-01T00:00:00+0000") -> bytes:
    """A GetOrder JSON answer holding one order given as the API's JSON object."""
    head = {"RequestId": "", "RequestAction": "GetOrder", "ResponseType": "Order"}
    head["Timestamp"] = timestamp
    document = {"SuccessResponse": {"Head": head, "Body": {"Orders": {"Order": order}}}}
    return json.dumps(document).encode()


def envelope_of(data: bytes | str, action: str) -> Envelope:
    return parse_envelope(data.encode() if isinstance(data, str) else data, action)


def error_xml(action: str, code: str, message: str, body: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><ErrorResponse><Head>'
        f"<RequestAction>{action}</RequestAction><ErrorType>Sender</ErrorType>"
        f"<ErrorCode>{code}</ErrorCode><ErrorMessage>{message}</ErrorMessage>"
        f"</Head><Body>{body}</Body></ErrorResponse>"
    )


def success_xml(action: str, body: str, request_id: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><SuccessResponse><Head>'
        f"<RequestId>{request_id}</RequestId><RequestAction>{action}</RequestAction>"
        "<ResponseType></ResponseType><Timestamp>2016-07-07T20:12:14+0700</Timestamp>"
        f"</Head><Body>{body}</Body></SuccessResponse>"
    )


def sku_detail(sku: str, message: str = "SKU does not exist") -> str:
    return (
        f"<ErrorDetail><Field>SellerSku</Field><Message>{message}</Message>"
        f"<Value>{sku}</Value><SellerSku>{sku}</SellerSku></ErrorDetail>"
    )


# --- GetOrder -----------------------------------------------------------------------------------


def test_seed_sample_order_fields_are_typed() -> None:
    order = parse_order(envelope_of(SEED_GET_ORDER_XML, "GetOrder"), 190)

    assert order.order_id == 190
    assert order.order_number == "300125759"
    assert order.customer_first_name == "ภัทรนิดา แสนสุข"
    assert order.customer_last_name == ""
    assert order.payment_method == "CashOnDelivery"
    assert order.price == Decimal("100.00")
    assert order.gift_option is False
    assert order.items_count == 12
    assert order.tax_code == "1234"
    assert order.branch_number == "2222"
    assert order.national_registration_number == ""
    assert order.promised_shipping_time == ""


def test_seed_sample_statuses_keep_their_order() -> None:
    order = parse_order(envelope_of(SEED_GET_ORDER_XML, "GetOrder"), 190)

    assert order.statuses[:3] == ("shipped", "returned", "return_waiting_for_approval")
    assert order.statuses[-1] == "canceled"
    assert len(order.statuses) == 11


def test_body_datetimes_are_read_in_the_head_timestamp_offset_and_returned_in_utc() -> None:
    order = parse_order(envelope_of(SEED_GET_ORDER_XML, "GetOrder"), 190)

    # Head/Timestamp is +0200, so 16:09:22 local is 14:09:22 UTC.
    assert order.created_at == datetime(2015, 3, 24, 14, 9, 22, tzinfo=UTC)
    assert order.updated_at == datetime(2015, 3, 24, 14, 9, 22, tzinfo=UTC)


def test_body_datetimes_are_utc_when_the_head_timestamp_has_no_offset() -> None:
    data = order_json(
        {"OrderId": "5", "Price": "1", "CreatedAt": "2020-01-02 03:04:05"}, timestamp=""
    )
    order = parse_order(envelope_of(data, "GetOrder"), 5)

    assert order.created_at == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_empty_or_zero_datetimes_are_none() -> None:
    data = order_json({"OrderId": "5", "Price": "1", "CreatedAt": "", "UpdatedAt": "0000-00-00"})
    order = parse_order(envelope_of(data, "GetOrder"), 5)

    assert order.created_at is None
    assert order.updated_at is None


def test_addresses_hold_every_child_in_snake_case() -> None:
    order = parse_order(envelope_of(SEED_GET_ORDER_XML, "GetOrder"), 190)

    assert order.address_billing["first_name"] == "First Name 3 Test"
    assert order.address_billing["address1"] == "Configure this street and number"
    assert order.address_billing["post_code"] == "33333"
    assert order.address_billing["customer_email"] == "[email protected]"
    assert order.address_billing["phone2"] == ""
    assert order.address_shipping["post_code"] == "10400"
    assert set(order.address_shipping) == {
        "first_name", "last_name", "phone", "phone2", "address1", "address2", "address3",
        "address4", "address5", "customer_email", "city", "ward", "region", "post_code",
        "country",
    }  # fmt: skip


def test_extra_attributes_json_string_is_parsed() -> None:
    order = parse_order(envelope_of(SEED_GET_ORDER_XML, "GetOrder"), 190)

    assert order.extra_attributes == {"TaxInvoiceRequested": "true"}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", {}),
        ("not json {", {"raw": "not json {"}),
        ("[1, 2]", {"raw": "[1, 2]"}),
        ({"Invoice Requested": True}, {"Invoice Requested": True}),
    ],
    ids=["empty", "not-json", "json-but-not-an-object", "json-object-instead-of-string"],
)
def test_extra_attributes_shapes(extra: object, expected: dict[str, object]) -> None:
    data = order_json({"OrderId": "5", "Price": "1", "ExtraAttributes": extra})

    assert parse_order(envelope_of(data, "GetOrder"), 5).extra_attributes == expected


def test_raw_is_the_whole_order_as_json_able_dict_with_snake_case_keys() -> None:
    order = parse_order(envelope_of(SEED_GET_ORDER_XML, "GetOrder"), 190)

    assert json.loads(json.dumps(order.raw)) == order.raw
    assert order.raw["order_id"] == "190"
    assert order.raw["address_billing"]["post_code"] == "33333"
    assert order.raw["statuses"]["status"][0] == "shipped"
    assert order.raw["tax_code"] == "1234"


def test_json_answer_gives_the_same_order_as_the_xml_answer() -> None:
    from_xml = parse_order(envelope_of(SEED_GET_ORDER_XML, "GetOrder"), 190)
    from_json = parse_order(envelope_of(SEED_GET_ORDER_JSON, "GetOrder"), 190)

    assert from_json == from_xml


def test_json_numbers_keep_their_written_form() -> None:
    order = parse_order(envelope_of(SEED_GET_ORDER_JSON, "GetOrder"), 190)

    assert order.price == Decimal("100.00")
    assert str(order.price) == "100.00"
    assert order.raw["price"] == "100.00"


def test_json_one_element_status_list_sent_as_a_scalar_is_a_one_element_tuple() -> None:
    data = order_json({"OrderId": "7", "Price": "1", "Statuses": {"Status": "shipped"}})
    order = parse_order(envelope_of(data, "GetOrder"), 7)

    assert order.statuses == ("shipped",)
    assert order.raw["statuses"] == {"status": ["shipped"]}


def test_json_order_list_picks_the_order_asked_for() -> None:
    document = {
        "SuccessResponse": {
            "Head": {"RequestAction": "GetOrder", "Timestamp": "2016-01-01T00:00:00+0000"},
            "Body": {"Orders": {"Order": [{"OrderId": 1, "Price": 1}, {"OrderId": 2, "Price": 2}]}},
        }
    }
    order = parse_order(envelope_of(json.dumps(document), "GetOrder"), 2)

    assert order.price == Decimal(2)


def test_json_booleans_are_understood_as_gift_option() -> None:
    data = order_json({"OrderId": "5", "Price": "1", "GiftOption": True})

    assert parse_order(envelope_of(data, "GetOrder"), 5).gift_option is True


def test_order_answer_for_another_order_id_is_malformed() -> None:
    with pytest.raises(MalformedResponse, match="190"):
        parse_order(envelope_of(SEED_GET_ORDER_XML, "GetOrder"), 191)


def test_success_without_an_order_is_malformed() -> None:
    with pytest.raises(MalformedResponse, match="no Orders/Order"):
        parse_order(envelope_of(success_xml("GetOrder", ""), "GetOrder"), 190)


def test_unreadable_price_is_malformed_rather_than_guessed() -> None:
    data = order_json({"OrderId": "5", "Price": "12,50"})

    with pytest.raises(MalformedResponse, match="Price"):
        parse_order(envelope_of(data, "GetOrder"), 5)


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("FirstName", "first_name"),
        ("Address1", "address1"),
        ("PostCode", "post_code"),
        ("CustomerEmail", "customer_email"),
        ("OrderId", "order_id"),
        ("URLPath", "url_path"),
        ("Phone2", "phone2"),
    ],
)
def test_element_names_become_snake_case(name: str, snake: str) -> None:
    assert snake_case(name) == snake


# --- envelopes ----------------------------------------------------------------------------------


def test_success_head_is_read() -> None:
    envelope = envelope_of(SEED_GET_ORDER_XML, "GetOrder")

    assert envelope.success is True
    assert envelope.action == "GetOrder"
    assert envelope.response_type == "Order"
    assert envelope.timestamp == "2015-08-03T11:16:14+0200"
    assert envelope.error_code is None


def test_success_response_for_another_action_is_malformed() -> None:
    with pytest.raises(MalformedResponse, match="'GetOrder', expected 'RemoveProduct'"):
        envelope_of(SEED_GET_ORDER_XML, "RemoveProduct")


def test_json_success_response_for_another_action_is_malformed() -> None:
    with pytest.raises(MalformedResponse, match="expected 'GetResponse'"):
        envelope_of(SEED_GET_ORDER_JSON, "GetResponse")


def test_unexpected_root_element_is_malformed() -> None:
    with pytest.raises(MalformedResponse, match="unexpected root element <Response>"):
        envelope_of("<Response><Ok/></Response>", "GetOrder")


def test_html_page_is_malformed() -> None:
    with pytest.raises(MalformedResponse, match="HTML page"):
        envelope_of("<html><body>Bad Gateway</body></html>", "GetOrder")


def test_json_without_an_envelope_key_is_malformed() -> None:
    with pytest.raises(MalformedResponse, match="unexpected JSON document"):
        envelope_of('{"error": "upstream"}', "GetOrder")


def test_json_body_as_empty_string_is_an_empty_body() -> None:
    data = '{"SuccessResponse": {"Head": {"RequestAction": "RemoveProduct"}, "Body": ""}}'
    envelope = envelope_of(data, "RemoveProduct")

    assert envelope.success is True
    assert len(envelope.body) == 0


def test_json_strings_with_characters_xml_cannot_hold_are_kept_readable() -> None:
    data = order_json({"OrderId": "5", "Price": "1", "Remarks": "a\u0000b\ud800c"})

    assert parse_order(envelope_of(data, "GetOrder"), 5).remarks == "a\ufffdb\ufffdc"


# --- errors -------------------------------------------------------------------------------------


def test_error_response_code_and_message_are_read() -> None:
    envelope = envelope_of(error_xml("GetOrder", "16", "E016: Invalid Order ID"), "GetOrder")

    assert envelope.success is False
    assert envelope.error_code == 16
    assert envelope.error_type == "Sender"


def test_error_message_reads_like_action_failed_code_text() -> None:
    envelope = envelope_of(error_xml("GetOrder", "16", "E016: Invalid Order ID"), "GetOrder")
    error = error_from_envelope(envelope)

    assert isinstance(error, NotFoundError)
    assert str(error) == "GetOrder failed: E016 Invalid Order ID"
    assert error.code == "E016"
    assert error.message == "Invalid Order ID"
    assert error.action == "GetOrder"
    assert error.http_status == 200


@pytest.mark.parametrize("code", ['"1000"', "1000", '"E1000"'])
def test_json_error_code_as_string_or_number(code: str) -> None:
    data = (
        '{"ErrorResponse": {"Head": {"RequestAction": "RemoveProduct", "ErrorType": "Platform",'
        f' "ErrorCode": {code}, "ErrorMessage": "Internal Application Error"}}, "Body": ""}}}}'
    )

    assert envelope_of(data, "RemoveProduct").error_code == 1000


def test_error_code_missing_is_taken_from_the_message_prefix() -> None:
    envelope = envelope_of(error_xml("GetOrder", "", "E007: Login failed"), "GetOrder")

    assert envelope.error_code == 7


def test_error_details_are_read_from_xml() -> None:
    body = sku_detail("A-1", "Product not found") + sku_detail("B-2", "Locked")
    envelope = envelope_of(error_xml("RemoveProduct", "503", "E503: failed", body), "RemoveProduct")

    assert error_details(envelope) == (
        ErrorDetail(field="SellerSku", message="Product not found", value="A-1", seller_sku="A-1"),
        ErrorDetail(field="SellerSku", message="Locked", value="B-2", seller_sku="B-2"),
    )


def test_json_single_error_detail_object_is_one_detail() -> None:
    data = json.dumps(
        {
            "ErrorResponse": {
                "Head": {"RequestAction": "RemoveProduct", "ErrorCode": 503},
                "Body": {"ErrorDetail": {"Field": "SellerSku", "Message": "m", "SellerSku": "A"}},
            }
        }
    )

    (detail,) = error_details(envelope_of(data, "RemoveProduct"))
    assert detail == ErrorDetail(field="SellerSku", message="m", value=None, seller_sku="A")


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (1, InvalidRequestError),
        (2, InvalidRequestError),
        (3, ClockSkewError),
        (4, InvalidRequestError),
        (5, InvalidRequestError),
        (6, ServiceError),
        (7, AuthenticationError),
        (8, InvalidRequestError),
        (9, AuthenticationError),
        (10, AuthenticationError),
        (11, InvalidRequestError),
        (16, NotFoundError),
        (30, InvalidRequestError),
        (204, InvalidRequestError),
        (429, ThrottledError),
        (503, ServiceError),
        (901, ThrottledError),
        (1000, ServiceError),
        (777, InvalidRequestError),
        (None, InvalidRequestError),
    ],
)
def test_classification_without_detail(code: int | None, cls: type[SellerCenterError]) -> None:
    error = classify(code, action="GetOrder", message="text")

    assert type(error) is cls


def test_1000_with_error_detail_is_an_invalid_request() -> None:
    detail = ErrorDetail(field="Price", message="bad", value="x", seller_sku=None)

    assert type(classify(1000, action="X", message="m", details=(detail,))) is InvalidRequestError


def test_503_with_detail_naming_skus_is_an_invalid_request() -> None:
    detail = ErrorDetail(field="SellerSku", message="bad", value="A", seller_sku="A")

    assert type(classify(503, action="X", message="m", details=(detail,))) is InvalidRequestError


def test_e007_message_names_the_likely_causes() -> None:
    message = str(classify(7, action="GetOrder", message="E007: Login failed. Signature mismatch"))

    assert "wrong API key" in message
    assert "wrong UserID" in message
    assert "clock" in message


# --- RemoveProduct (D4) -------------------------------------------------------------------------


def test_removal_success_removes_every_sku() -> None:
    envelope = envelope_of(success_xml("RemoveProduct", ""), "RemoveProduct")

    outcome = parse_removal_outcome(envelope, ["A", "B"])

    assert outcome.removed == ("A", "B")
    assert outcome.failed == {}
    assert outcome.not_applied == ()
    assert outcome.warnings == ()


def test_removal_success_keeps_warnings() -> None:
    body = (
        "<Warnings><WarningDetail><Field>SellerSku</Field><Message>already inactive</Message>"
        "<Value>A</Value></WarningDetail></Warnings>"
    )
    envelope = envelope_of(success_xml("RemoveProduct", body), "RemoveProduct")

    outcome = parse_removal_outcome(envelope, ["A"])

    assert outcome.removed == ("A",)
    assert outcome.warnings == ("SellerSku: already inactive (A)",)


def test_json_removal_success_with_empty_warnings_list() -> None:
    data = (
        '{"SuccessResponse": {"Head": {"RequestId": "", "RequestAction": "RemoveProduct",'
        ' "ResponseType": "Product", "Timestamp": "2016-07-07T20:12:14+0700"},'
        ' "Body": {"Warnings": []}}}'
    )

    outcome = parse_removal_outcome(envelope_of(data, "RemoveProduct"), ["A"])

    assert outcome.removed == ("A",)
    assert outcome.warnings == ()


def test_sku_named_in_error_detail_fails_and_the_rest_are_not_applied() -> None:
    body = sku_detail("B-FAIL", "Remove product failed")
    envelope = envelope_of(error_xml("RemoveProduct", "503", "E503: failed", body), "RemoveProduct")

    outcome = parse_removal_outcome(envelope, ["A", "B-FAIL", "C"])

    assert outcome.removed == ()
    assert set(outcome.failed) == {"B-FAIL"}
    assert outcome.failed["B-FAIL"].message == "Remove product failed"
    assert outcome.not_applied == ("A", "C")


def test_sku_named_only_in_field_and_value_counts_as_named() -> None:
    body = "<ErrorDetail><Field>SellerSku</Field><Message>m</Message><Value>B</Value></ErrorDetail>"
    envelope = envelope_of(error_xml("RemoveProduct", "503", "E503: failed", body), "RemoveProduct")

    assert set(parse_removal_outcome(envelope, ["A", "B"]).failed) == {"B"}


def test_removal_error_naming_no_sku_of_the_call_is_raised() -> None:
    body = sku_detail("SOMEONE-ELSE")
    envelope = envelope_of(error_xml("RemoveProduct", "503", "E503: failed", body), "RemoveProduct")

    with pytest.raises(InvalidRequestError):
        parse_removal_outcome(envelope, ["A"])


def test_removal_e503_without_detail_is_a_service_error() -> None:
    envelope = envelope_of(error_xml("RemoveProduct", "503", "E503: failed"), "RemoveProduct")

    with pytest.raises(ServiceError, match="RemoveProduct failed: E503 failed"):
        parse_removal_outcome(envelope, ["A"])


# --- MigrateImages / GetResponse (D5, D6) -------------------------------------------------------


def test_migrate_images_returns_the_head_request_id() -> None:
    envelope = envelope_of(
        success_xml("MigrateImages", "", "0a14301714908715332687334e"), "MigrateImages"
    )

    assert parse_migration_request_id(envelope) == "0a14301714908715332687334e"


def test_migrate_images_without_request_id_is_malformed() -> None:
    with pytest.raises(MalformedResponse, match="RequestId"):
        parse_migration_request_id(envelope_of(success_xml("MigrateImages", ""), "MigrateImages"))


@pytest.mark.parametrize(
    "data",
    [
        success_xml("GetResponse", ""),
        '{"SuccessResponse": {"Head": {"RequestAction": "GetResponse"}, "Body": ""}}',
        '{"SuccessResponse": {"Head": {"RequestAction": "GetResponse"}, "Body": {"Warnings": []}}}',
    ],
    ids=["xml-empty-body", "json-empty-string-body", "json-empty-warnings"],
)
def test_image_job_without_images_or_errors_is_still_running(data: str) -> None:
    status = parse_image_job_status(envelope_of(data, "GetResponse"))

    assert status.finished is False
    assert status.images == ()
    assert status.errors == ()


def test_finished_image_job_lists_its_images() -> None:
    body = (
        "<Images><Image><Url>https://sg-live.slatic.net/p/a.jpg</Url><Code>abc123</Code>"
        "<OriginalUrl>https://shop.example/a.jpg</OriginalUrl></Image>"
        "<Image><Url>https://sg-live.slatic.net/p/b.jpg</Url><Code>def456</Code>"
        "<OriginalUrl>https://shop.example/b.jpg</OriginalUrl></Image></Images>"
    )
    status = parse_image_job_status(envelope_of(success_xml("GetResponse", body), "GetResponse"))

    assert status.finished is True
    assert [image.code for image in status.images] == ["abc123", "def456"]
    assert status.images[0].url == "https://sg-live.slatic.net/p/a.jpg"
    assert status.images[0].original_url == "https://shop.example/a.jpg"
    assert status.errors == ()


def test_partial_image_job_lists_images_and_errors() -> None:
    body = (
        "<Images><Image><Url>https://sg-live.slatic.net/p/a.jpg</Url><Code>abc</Code>"
        "<OriginalUrl>https://shop.example/a.jpg</OriginalUrl></Image></Images>"
        "<Errors><Error><OriginalUrl>https://shop.example/broken.jpg</OriginalUrl>"
        "<Message>Error download image</Message></Error></Errors>"
    )
    status = parse_image_job_status(envelope_of(success_xml("GetResponse", body), "GetResponse"))

    assert status.finished is True
    assert len(status.images) == 1
    assert status.errors[0].original_url == "https://shop.example/broken.jpg"
    assert status.errors[0].message == "Error download image"


def test_json_image_job_with_one_image_object_and_one_error_object() -> None:
    data = json.dumps(
        {
            "SuccessResponse": {
                "Head": {"RequestAction": "GetResponse", "ResponseType": "Images"},
                "Body": {
                    "Images": {"Image": {"Url": "u", "Code": "c", "OriginalUrl": "o"}},
                    "Errors": {"Error": {"OriginalUrl": "x", "Message": "m"}},
                },
            }
        }
    )

    status = parse_image_job_status(envelope_of(data, "GetResponse"))

    assert status.finished is True
    assert [(i.url, i.code, i.original_url) for i in status.images] == [("u", "c", "o")]
    assert [(e.original_url, e.message) for e in status.errors] == [("x", "m")]


def test_failed_image_job_has_only_errors() -> None:
    data = json.dumps(
        {
            "SuccessResponse": {
                "Head": {"RequestAction": "GetResponse"},
                "Body": {"Images": [], "Errors": {"Error": [{"OriginalUrl": "x", "Message": "m"}]}},
            }
        }
    )

    status = parse_image_job_status(envelope_of(data, "GetResponse"))

    assert status.finished is True
    assert status.images == ()
    assert len(status.errors) == 1


def test_error_codes_are_labelled_as_the_documentation_writes_them() -> None:
    # ErrorMessage prefixes "E" and three digits; 1000 is written bare (decision D7).
    assert [code_label(c) for c in (7, 16, 503, 901, 1000)] == [
        "E007",
        "E016",
        "E503",
        "E901",
        "1000",
    ]
    error = classify(16, action="GetOrder", message="E016: Invalid Order ID")
    assert (error.code, error.number, str(error)) == (
        "E016",
        16,
        "GetOrder failed: E016 Invalid Order ID",
    )
