"""Signing: the four published test vectors (decision D1) and the URL sent byte for byte."""

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import pytest

from worker.platforms.sellercenter import SellerCenterClient, canonical_query, sign
from worker.platforms.sellercenter.signing import format_timestamp, signed_query

GET_ORDER_190 = b"""<?xml version="1.0" encoding="UTF-8"?>
<SuccessResponse><Head><RequestId/><RequestAction>GetOrder</RequestAction>
<ResponseType>Order</ResponseType><Timestamp>2015-08-03T11:16:14+0000</Timestamp></Head>
<Body><Orders><Order><OrderId>190</OrderId><Price>1.00</Price></Order></Orders></Body>
</SuccessResponse>"""


def test_vector_1_go_sdk_encodes_space_colon_and_at_sign() -> None:
    params = {
        "Foo": "bar",
        "Whatever": "you want",
        "UserID": "abc@sellercenter.net",
        "Timestamp": "2014-11-12T11:45:26Z",
    }
    assert canonical_query(params) == (
        "Foo=bar&Timestamp=2014-11-12T11%3A45%3A26Z"
        "&UserID=abc%40sellercenter.net&Whatever=you%20want"
    )
    assert sign(params, "1234567890") == (
        "bb6b9ee192fe31f7e21c2fcc6298feccc777b747beb0a062e7c21072671a5cae"
    )


def test_vector_2_java_sdk_sorts_lower_case_name_after_upper_case() -> None:
    params = {
        "version": "1.0",
        "UserID": "look@me.com",
        "Timestamp": "2015-07-01T11:11:11+00:00",
        "Format": "XML",
        "Action": "FeedList",
    }
    assert canonical_query(params) == (
        "Action=FeedList&Format=XML&Timestamp=2015-07-01T11%3A11%3A11%2B00%3A00"
        "&UserID=look%40me.com&version=1.0"
    )
    assert sign(params, "b1bdb357ced10fe4e9a69840cdd4f0e9c03d77fe") == (
        "9cbcdf6a7d8f8229ec01f67268a1ed82b47f8f931a2990316fe83835441ebff3"
    )


def test_vector_3_php_sdk_hmac_of_percent_encoded_space() -> None:
    params = {"param2": "ab cd", "param1": "123"}
    assert canonical_query(params) == "param1=123&param2=ab%20cd"
    assert sign(params, "67c7ef5fa5d408aed1") == (
        "1dff271f6157edfbfc592966a3b811efee46df45e002c25120e4c65e06990c7a"
    )


def test_vector_4_keeps_tilde_and_encodes_star_slash_and_plus() -> None:
    params = {
        "Action": "GetOrder",
        "Format": "JSON",
        "OrderId": "12345",
        "Note": "x y~*/",
        "Timestamp": "2016-07-18T11:11:00+00:00",
        "UserID": "a+b@example.com",
        "Version": "1.0",
    }
    assert canonical_query(params) == (
        "Action=GetOrder&Format=JSON&Note=x%20y~%2A%2F&OrderId=12345"
        "&Timestamp=2016-07-18T11%3A11%3A00%2B00%3A00&UserID=a%2Bb%40example.com&Version=1.0"
    )
    assert sign(params, "test-key") == (
        "288637ef2dc3d407af1c5bac20142d06c1acfb482947e2a95522822ad6de312e"
    )


def test_non_ascii_values_are_utf8_percent_encoded_in_upper_case_hex() -> None:
    assert canonical_query({"Name": "ภัท é"}) == "Name=%E0%B8%A0%E0%B8%B1%E0%B8%97%20%C3%A9"


def test_signed_query_appends_the_signature_last() -> None:
    params = {"B": "2", "A": "1"}
    assert signed_query(params, "k") == f"A=1&B=2&Signature={sign(params, 'k')}"


def test_signed_query_refuses_a_signature_among_the_params() -> None:
    with pytest.raises(ValueError):
        signed_query({"Signature": "x"}, "k")


def test_timestamp_is_utc_with_seconds_and_colon_offset() -> None:
    bangkok = timezone(timedelta(hours=7))
    moment = datetime(2016, 7, 18, 18, 11, 0, 123456, tzinfo=bangkok)
    assert format_timestamp(moment) == "2016-07-18T11:11:00+00:00"


def test_naive_timestamp_is_taken_as_utc() -> None:
    assert format_timestamp(datetime(2016, 7, 18, 11, 11)) == "2016-07-18T11:11:00+00:00"


REMOVE_PRODUCT_OK = b"""<?xml version="1.0" encoding="UTF-8"?>
<SuccessResponse><Head><RequestId/><RequestAction>RemoveProduct</RequestAction>
<ResponseType>Product</ResponseType><Timestamp>2016-07-07T20:12:14+0700</Timestamp></Head>
<Body/></SuccessResponse>"""


class _RecordingHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._record(b"")
        self._reply(GET_ORDER_190)

    def do_POST(self) -> None:
        self._record(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self._reply(REMOVE_PRODUCT_OK)

    def _record(self, body: bytes) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.server.requests.append((self.command, dict(self.headers), body))  # type: ignore[attr-defined]

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/xml; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recording_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingHandler)
    server.daemon_threads = True
    server.paths = []  # type: ignore[attr-defined]
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_the_query_string_on_the_wire_is_the_signed_one_byte_for_byte(
    recording_server: ThreadingHTTPServer,
) -> None:
    user_id = "a+b c@example.com~*/ภ"
    moment = datetime(2016, 7, 18, 11, 11, tzinfo=UTC)
    url = f"http://127.0.0.1:{recording_server.server_address[1]}/"
    with SellerCenterClient(url, user_id, "test-key", clock=lambda: moment) as client:
        client.get_order(190)

    expected = {
        "Action": "GetOrder",
        "OrderId": "190",
        "Timestamp": "2016-07-18T11:11:00+00:00",
        "UserID": user_id,
        "Version": "1.0",
    }
    assert recording_server.paths == [  # type: ignore[attr-defined]
        f"/?{canonical_query(expected)}&Signature={sign(expected, 'test-key')}"
    ]


def test_json_format_is_a_signed_parameter(recording_server: ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{recording_server.server_address[1]}/"
    with SellerCenterClient(url, "u@example.com", "k", response_format="JSON") as client:
        client.get_order(190)  # the canned answer is XML; the parser accepts either

    (path,) = recording_server.paths  # type: ignore[attr-defined]
    query = path.split("?", 1)[1]
    names = [unquote(pair.split("=", 1)[0]) for pair in query.split("&")]
    assert names == ["Action", "Format", "OrderId", "Timestamp", "UserID", "Version", "Signature"]
    assert "Format=JSON" in query.split("&")


def test_post_bodies_are_utf8_xml_with_the_declared_content_type(
    recording_server: ThreadingHTTPServer,
) -> None:
    url = f"http://127.0.0.1:{recording_server.server_address[1]}/"
    with SellerCenterClient(url, "u@example.com", "k") as client:
        client.remove_products(["ภัท & <co>"])

    ((method, headers, body),) = recording_server.requests  # type: ignore[attr-defined]
    assert method == "POST"
    assert headers["Content-Type"] == "text/xml; charset=UTF-8"
    assert headers["User-Agent"].startswith("lazada-worker/")
    assert (
        body
        == (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Request><Product><Skus><Sku>'
            "<SellerSku>ภัท &amp; &lt;co&gt;</SellerSku></Sku></Skus></Product></Request>"
        ).encode()
    )


def test_the_signature_covers_the_query_only_not_the_body(
    recording_server: ThreadingHTTPServer,
) -> None:
    moment = datetime(2016, 7, 18, 11, 11, tzinfo=UTC)
    url = f"http://127.0.0.1:{recording_server.server_address[1]}/"
    with SellerCenterClient(url, "u@example.com", "k", clock=lambda: moment) as client:
        client.remove_products(["A"])
        client.remove_products(["B"])

    first, second = recording_server.paths  # type: ignore[attr-defined]
    assert first == second
