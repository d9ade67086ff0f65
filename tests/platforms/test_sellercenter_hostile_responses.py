"""What comes back is not always the API: proxies, truncation, huge and hostile bodies (D3).

A real HTTP server on 127.0.0.1 serves canned bytes; every such answer must end as a
``TransportError`` (transient) that says what came back, never hang, never leak a secret.
"""

import gzip
import json
import socket
from collections.abc import Iterable, Iterator

import pytest

from tests.support.canned_server import CannedAnswer, CannedServer, zeros
from tests.support.canned_server import server as server  # the canned server fixture
from worker.platforms.sellercenter import (
    CallRecord,
    SellerCenterClient,
    TransientError,
    TransportError,
)
from worker.platforms.sellercenter.safexml import RefusedDocument, parse_xml

SECRET = "hostile-test-secret-key"
MB = 1024 * 1024

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<SuccessResponse><Head><RequestAction>GetOrder</RequestAction></Head>
<Body><Orders><Order><OrderId>1</OrderId><Price>1</Price><Remarks>&lol9;</Remarks></Order>
</Orders></Body></SuccessResponse>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<SuccessResponse><Head><RequestAction>GetOrder</RequestAction></Head>
<Body><Orders><Order><OrderId>1</OrderId><Price>1</Price><Remarks>&xxe;</Remarks></Order>
</Orders></Body></SuccessResponse>"""

PROXY_502 = (
    b"<html><head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body></html>\r\n" + b"<!-- padding -->\r\n" * 20
)

GET_ORDER_OK = b"""<?xml version="1.0" encoding="UTF-8"?>
<SuccessResponse><Head><RequestId/><RequestAction>GetOrder</RequestAction>
<Timestamp>2015-08-03T11:16:14+0200</Timestamp></Head>
<Body><Orders><Order><OrderId>1</OrderId><Price>1.00</Price></Order></Orders></Body>
</SuccessResponse>"""


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def client(server: CannedServer, records: list[CallRecord]) -> Iterator[SellerCenterClient]:
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    with SellerCenterClient(
        url, "user@example.com", SECRET, read_timeout=10.0, after_call=records.append
    ) as seller_center:
        yield seller_center


def answer_get_order_with(server: CannedServer, client: SellerCenterClient) -> TransportError:
    with pytest.raises(TransportError) as caught:
        client.get_order(1)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    return caught.value


# --- HTTP-level answers ---------------------------------------------------------------------------


def test_proxy_html_502_page_is_a_transport_error_that_quotes_the_page(
    server: CannedServer, client: SellerCenterClient
) -> None:
    server.answer = CannedAnswer(502, {"Content-Type": "text/html; charset=utf-8"}, PROXY_502)

    error = answer_get_order_with(server, client)

    assert isinstance(error, TransientError)
    assert error.http_status == 502
    assert error.code is None
    assert str(error).startswith(
        "GetOrder failed: HTTP 502, text/html body: '<html><head><title>502 Bad Gateway"
    )
    assert "\r" not in str(error) and "\n" not in str(error)
    assert "..." in str(error)
    assert len(error.message) < 250


def test_http_500_is_a_transport_error(server: CannedServer, client: SellerCenterClient) -> None:
    server.answer = CannedAnswer(500, {"Content-Type": "text/plain"}, b"Internal Server Error")

    error = answer_get_order_with(server, client)

    assert error.http_status == 500
    assert "HTTP 500, text/plain body: 'Internal Server Error'" in str(error)


def test_a_valid_api_envelope_with_a_non_200_status_is_still_a_transport_error(
    server: CannedServer, client: SellerCenterClient
) -> None:
    server.answer = CannedAnswer(503, body=GET_ORDER_OK)

    assert answer_get_order_with(server, client).http_status == 503


def test_redirect_is_not_followed(server: CannedServer, client: SellerCenterClient) -> None:
    server.answer = CannedAnswer(302, {"Location": "http://127.0.0.1:1/elsewhere"})

    error = answer_get_order_with(server, client)

    assert error.http_status == 302
    assert len(server.requests) == 1


def test_html_page_with_status_200_is_a_transport_error(
    server: CannedServer, client: SellerCenterClient
) -> None:
    page = b"<!DOCTYPE html>\n<html><body>Please log in to the captive portal</body></html>"
    server.answer = CannedAnswer(200, {"Content-Type": "text/html"}, page)

    error = answer_get_order_with(server, client)

    assert "HTML page instead of an API answer" in str(error)
    assert "captive portal" in str(error)


def test_empty_body_is_a_transport_error(server: CannedServer, client: SellerCenterClient) -> None:
    server.answer = CannedAnswer(200, body=b"")

    assert "empty body" in str(answer_get_order_with(server, client))


def test_truncated_xml_is_a_transport_error(
    server: CannedServer, client: SellerCenterClient
) -> None:
    server.answer = CannedAnswer(200, body=GET_ORDER_OK[:120])

    error = answer_get_order_with(server, client)

    assert "malformed XML" in str(error)
    assert error.http_status == 200


def test_body_shorter_than_its_content_length_is_a_transport_error(
    server: CannedServer, client: SellerCenterClient
) -> None:
    server.answer = CannedAnswer(200, body=GET_ORDER_OK[:120], content_length=len(GET_ORDER_OK))

    assert "connection broken" in str(answer_get_order_with(server, client))


def test_plain_text_body_is_a_transport_error(
    server: CannedServer, client: SellerCenterClient
) -> None:
    server.answer = CannedAnswer(
        200, {"Content-Type": "text/plain"}, b"Service \x00\x1b Unavailable"
    )

    error = answer_get_order_with(server, client)

    assert "neither XML nor JSON" in str(error)
    assert "\x00" not in str(error) and "\x1b" not in str(error)


def test_wrong_root_element_is_a_transport_error(
    server: CannedServer, client: SellerCenterClient
) -> None:
    server.answer = CannedAnswer(200, body=b"<?xml version='1.0'?><Response><Ok/></Response>")

    assert "unexpected root element <Response>" in str(answer_get_order_with(server, client))


def test_success_response_for_another_action_is_a_transport_error(
    server: CannedServer, client: SellerCenterClient
) -> None:
    server.answer = CannedAnswer(200, body=GET_ORDER_OK.replace(b"GetOrder", b"GetProducts"))

    assert "SuccessResponse for 'GetProducts'" in str(answer_get_order_with(server, client))


def test_json_nested_beyond_reason_is_a_transport_error(
    server: CannedServer, client: SellerCenterClient
) -> None:
    deep = b'{"SuccessResponse": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001
    server.answer = CannedAnswer(200, {"Content-Type": "application/json"}, deep)

    assert isinstance(answer_get_order_with(server, client), TransportError)


# --- size -----------------------------------------------------------------------------------------


def test_fifty_megabyte_body_without_length_is_refused_at_the_cap(
    server: CannedServer, client: SellerCenterClient
) -> None:
    server.answer = CannedAnswer(200, chunks=lambda: zeros(50 * MB))

    error = answer_get_order_with(server, client)

    assert "response larger than 8388608 bytes" in str(error)


def test_fifty_megabyte_content_length_is_refused_before_reading(
    server: CannedServer, client: SellerCenterClient
) -> None:
    server.answer = CannedAnswer(200, chunks=lambda: zeros(50 * MB), content_length=50 * MB)

    assert "response larger than 8388608 bytes" in str(answer_get_order_with(server, client))


def test_gzip_bomb_is_refused_by_its_decompressed_size(
    server: CannedServer, client: SellerCenterClient
) -> None:
    bomb = gzip.compress(b"0" * (50 * MB), compresslevel=9)
    server.answer = CannedAnswer(
        200, {"Content-Type": "text/xml", "Content-Encoding": "gzip"}, bomb
    )

    assert "response larger than" in str(answer_get_order_with(server, client))


def test_the_size_cap_is_configurable(server: CannedServer) -> None:
    server.answer = CannedAnswer(200, body=GET_ORDER_OK)
    url = f"http://127.0.0.1:{server.server_address[1]}/"

    with (
        SellerCenterClient(url, "u", SECRET, max_response_bytes=100) as small,
        pytest.raises(TransportError, match="larger than 100 bytes"),
    ):
        small.get_order(1)


# --- hostile XML ----------------------------------------------------------------------------------


def test_billion_laughs_is_refused(server: CannedServer, client: SellerCenterClient) -> None:
    server.answer = CannedAnswer(200, body=BILLION_LAUGHS)

    assert "DTD" in str(answer_get_order_with(server, client))


def test_external_entity_is_refused_and_never_read(
    server: CannedServer, client: SellerCenterClient
) -> None:
    server.answer = CannedAnswer(200, body=EXTERNAL_ENTITY)

    error = answer_get_order_with(server, client)

    assert "DTD" in str(error)
    assert "root:" not in str(error)


def test_a_dtd_hidden_from_the_byte_scan_by_utf16_is_refused_after_parsing() -> None:
    document = EXTERNAL_ENTITY.decode().replace('<?xml version="1.0"?>', "")
    utf16 = '<?xml version="1.0" encoding="UTF-16"?>'.encode("utf-16") + document.encode(
        "utf-16-le"
    )

    with pytest.raises(RefusedDocument, match="DTD"):
        parse_xml(utf16)


def test_billion_laughs_in_utf16_is_refused_after_parsing() -> None:
    utf16 = BILLION_LAUGHS.decode().replace('<?xml version="1.0"?>', "").encode("utf-16")

    with pytest.raises(RefusedDocument):
        parse_xml(utf16)


def test_comments_and_processing_instructions_are_dropped() -> None:
    root = parse_xml(b"<SuccessResponse><!-- c --><?pi x?><Head/></SuccessResponse>")

    assert [child.tag for child in root] == ["Head"]


# --- the network --------------------------------------------------------------------------------


def test_connection_refused_is_a_transport_error(records: list[CallRecord]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more.
    with (
        SellerCenterClient(
            f"http://127.0.0.1:{port}/", "u", SECRET, connect_timeout=5.0, after_call=records.append
        ) as client,
        pytest.raises(TransportError, match="no answer") as caught,
    ):
        client.get_order(1)

    assert caught.value.http_status is None
    assert "Signature=" not in str(caught.value) or "Signature=[redacted]" in str(caught.value)
    assert [record.outcome for record in records] == ["transport_error"]


def test_read_timeout_is_a_transport_error(server: CannedServer) -> None:
    server.answer = CannedAnswer(200, body=GET_ORDER_OK, delay=3.0)
    url = f"http://127.0.0.1:{server.server_address[1]}/"

    with (
        SellerCenterClient(url, "u", SECRET, read_timeout=0.2) as client,
        pytest.raises(TransportError, match="timed out"),
    ):
        client.get_order(1)


def test_a_proxy_page_echoing_the_signed_url_does_not_leak_the_signature(
    server: CannedServer, client: SellerCenterClient
) -> None:
    def echo_request_path() -> Iterable[bytes]:
        return [f"<p>no route for {server.requests[-1]}</p>".encode()]

    server.answer = CannedAnswer(404, {"Content-Type": "text/html"}, chunks=echo_request_path)

    error = answer_get_order_with(server, client)

    signature = server.requests[-1].rsplit("Signature=", 1)[1]
    assert signature not in str(error)
    assert signature not in error.message


# --- what the audit hook sees ---------------------------------------------------------------------


def test_every_transport_error_reaches_after_call_without_secrets(
    server: CannedServer, client: SellerCenterClient, records: list[CallRecord]
) -> None:
    server.answer = CannedAnswer(502, {"Content-Type": "text/html"}, PROXY_502)

    answer_get_order_with(server, client)

    (record,) = records
    assert record.action == "GetOrder"
    assert record.outcome == "transport_error"
    assert record.http_status == 502
    assert record.error_code is None
    assert record.message.startswith("GetOrder failed: HTTP 502")
    assert SECRET not in repr(record)
    signature = server.requests[-1].rsplit("Signature=", 1)[1]
    assert signature not in repr(record)


def test_a_good_answer_after_hostile_ones_still_parses(
    server: CannedServer, client: SellerCenterClient, records: list[CallRecord]
) -> None:
    server.answer = CannedAnswer(200, body=BILLION_LAUGHS)
    answer_get_order_with(server, client)
    server.answer = CannedAnswer(200, body=GET_ORDER_OK)

    assert client.get_order(1).order_id == 1
    assert [record.outcome for record in records] == ["transport_error", "ok"]


def test_json_error_page_from_a_gateway_is_a_transport_error(
    server: CannedServer, client: SellerCenterClient
) -> None:
    page = json.dumps({"message": "Internal server error"}).encode()
    server.answer = CannedAnswer(200, {"Content-Type": "application/json"}, page)

    assert "unexpected JSON document (keys: message)" in str(answer_get_order_with(server, client))
