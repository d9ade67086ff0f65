"""What comes back is not always LAZOP: proxies, truncation, huge and hostile JSON (L2).

A canned HTTP server on 127.0.0.1 (the one of test_hostile_responses) serves fixed bytes; every
such answer must end as a transient ``TransportError`` that says what came back, never hang,
never leak a secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.canned_server import CannedAnswer, CannedServer, zeros
from tests.support.canned_server import server as server  # the canned server fixture
from worker.platforms.lazop import LazopClient, LazopThrottledError, NotFoundError, TransportError
from worker.platforms.models import CallRecord

SECRET = "hostile-lazop-app-secret"
TOKEN = "hostile-lazop-access-token"
JSON = {"Content-Type": "application/json"}
ORDER = {"code": "0", "data": {"order_id": "1", "price": "1.00"}, "request_id": "r"}


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def client(server: CannedServer, records: list[CallRecord]) -> Iterator[LazopClient]:
    url = f"http://127.0.0.1:{server.server_address[1]}/rest"
    with LazopClient(
        url,
        "123456",
        SECRET,
        auth_url=url,
        read_timeout=10.0,
        max_response_bytes=1024 * 1024,
        after_call=records.append,
    ) as lazop:
        yield lazop


def refused(server: CannedServer, client: LazopClient, body: bytes) -> TransportError:
    server.answer = CannedAnswer(200, JSON, body)
    with pytest.raises(TransportError) as caught:
        client.get_image_response(TOKEN, "batch-1")
    error = caught.value
    for text in (str(error), repr(error)):
        assert SECRET not in text and TOKEN not in text
    assert "\n" not in str(error)
    return error


def test_an_html_page_with_status_200_is_a_transport_error(
    server: CannedServer, client: LazopClient
) -> None:
    page = b"<html><body><h1>Maintenance</h1></body></html>"
    server.answer = CannedAnswer(200, {"Content-Type": "text/html"}, page)
    with pytest.raises(TransportError, match=r"not JSON.*text/html body: '<html><body><h1>Maint"):
        client.get_image_response(TOKEN, "batch-1")


def test_a_proxy_502_page_is_a_transport_error_with_its_status(
    server: CannedServer, client: LazopClient
) -> None:
    server.answer = CannedAnswer(
        502, {"Content-Type": "text/html"}, b"<html>502 Bad Gateway</html>"
    )
    with pytest.raises(TransportError) as caught:
        client.get_image_response(TOKEN, "batch-1")
    assert caught.value.http_status == 502
    assert "HTTP 502" in str(caught.value)


def test_http_429_is_throttling_not_a_transport_error(
    server: CannedServer, client: LazopClient, records: list[CallRecord]
) -> None:
    server.answer = CannedAnswer(429, {"Content-Type": "text/plain"}, b"slow down")
    with pytest.raises(LazopThrottledError):
        client.get_image_response(TOKEN, "batch-1")
    assert records[-1].throttled


def test_a_valid_envelope_with_a_non_200_status_is_still_a_transport_error(
    server: CannedServer, client: LazopClient
) -> None:
    server.answer = CannedAnswer(503, JSON, json.dumps(ORDER).encode())
    with pytest.raises(TransportError):
        client.get_image_response(TOKEN, "batch-1")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[1, 2, 3]", "JSON list, not an object"),
        (b'"just a string"', "JSON str, not an object"),
        (b"null", "JSON NoneType, not an object"),
        (b'{"data": {}}', "without a string code"),
        (b'{"code": null}', "without a string code"),
        (b'{"code": true}', "without a string code"),
        (b"", "empty body"),
        (b'{"code": "0", "data": ', "not JSON"),
        (b'{"code": "0", "n": NaN}', "NaN is not JSON"),
        (b"\xff\xfe{\x00}\x00", "not UTF-8"),
    ],
)
def test_a_body_that_is_no_envelope_is_refused_saying_why(
    server: CannedServer, client: LazopClient, body: bytes, says: str
) -> None:
    assert says in str(refused(server, client, body))


def test_deeply_nested_json_is_refused(server: CannedServer, client: LazopClient) -> None:
    body = b'{"code": "0", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert "nested deeper" in str(refused(server, client, body))


def test_moderately_nested_json_beyond_the_depth_limit_is_refused(
    server: CannedServer, client: LazopClient
) -> None:
    body = b'{"code": "0", "data": ' + b"[" * 40 + b"]" * 40 + b"}"
    assert "nested deeper than 32" in str(refused(server, client, body))


def test_a_huge_number_is_refused(server: CannedServer, client: LazopClient) -> None:
    body = b'{"code": "0", "data": {"images": [], "n": ' + b"9" * 100_000 + b"}}"
    assert "a number of 100000 digits" in str(refused(server, client, body))


def test_a_body_larger_than_the_cap_is_refused_without_reading_it_all(
    server: CannedServer, client: LazopClient
) -> None:
    server.answer = CannedAnswer(200, JSON, chunks=lambda: zeros(64 * 1024 * 1024))
    with pytest.raises(TransportError, match="larger than 1048576 bytes"):
        client.get_image_response(TOKEN, "batch-1")


def test_a_declared_length_over_the_cap_is_refused_at_once(
    server: CannedServer, client: LazopClient
) -> None:
    server.answer = CannedAnswer(200, JSON, b"{}", content_length=50 * 1024 * 1024)
    with pytest.raises(TransportError, match="Content-Length 52428800"):
        client.get_image_response(TOKEN, "batch-1")


def test_a_body_cut_short_is_a_transport_error(server: CannedServer, client: LazopClient) -> None:
    whole = json.dumps(ORDER).encode()
    server.answer = CannedAnswer(200, JSON, whole[:10], content_length=len(whole))
    with pytest.raises(TransportError):
        client.get_image_response(TOKEN, "batch-1")


def test_an_error_envelope_is_classified_by_code_and_keeps_its_message(
    server: CannedServer, client: LazopClient
) -> None:
    body = {"code": "16", "type": "ISV", "message": "E016: Invalid Order ID", "request_id": "r"}
    server.answer = CannedAnswer(200, JSON, json.dumps(body).encode())
    with pytest.raises(NotFoundError) as caught:
        client.get_order(TOKEN, 1)
    assert str(caught.value) == "/order/get failed: 16 E016: Invalid Order ID"


def test_a_secret_echoed_by_the_server_is_redacted(
    server: CannedServer, client: LazopClient, records: list[CallRecord]
) -> None:
    body = {"code": "X", "message": f"bad token {TOKEN} for secret {SECRET}", "request_id": "r"}
    server.answer = CannedAnswer(200, JSON, json.dumps(body).encode())
    with pytest.raises(Exception) as caught:
        client.get_image_response(TOKEN, "batch-1")
    for text in (str(caught.value), repr(caught.value), repr(records[-1])):
        assert TOKEN not in text and SECRET not in text


def test_an_order_answer_for_another_order_is_refused(
    server: CannedServer, client: LazopClient
) -> None:
    server.answer = CannedAnswer(200, JSON, json.dumps(ORDER).encode())
    with pytest.raises(TransportError, match="not 2"):
        client.get_order(TOKEN, 2)


def test_a_running_image_job_may_answer_without_data(
    server: CannedServer, client: LazopClient
) -> None:
    server.answer = CannedAnswer(200, JSON, b'{"code": "0", "request_id": "r"}')
    assert not client.get_image_response(TOKEN, "batch-1").finished
