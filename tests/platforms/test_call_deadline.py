"""An API call has a deadline for the whole of it (its connect and read timeouts added up),
however slowly the server sends its status line, headers or body."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.processes import wait_for
from tests.support.slow_http import Mode, SlowServer
from worker.platforms import http


@pytest.fixture
def servers() -> Iterator[list[SlowServer]]:
    started: list[SlowServer] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.mark.parametrize("mode", ["status", "headers", "body"])
def test_a_call_to_a_server_that_answers_a_byte_at_a_time_ends_at_its_deadline(
    servers: list[SlowServer], mode: Mode
) -> None:
    server = SlowServer(mode, interval=0.2)
    servers.append(server)
    session = http.session_for(server.url)
    errors: list[http.NoAnswer] = []

    def call() -> None:
        try:
            http.send(
                session,
                "GET",
                server.url,
                timeouts=(1.0, 1.0),  # each read gets a byte well within its timeout
                max_bytes=4096,
                started=time.monotonic(),
                scrub=str,
            )
        except http.NoAnswer as exc:
            errors.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    wait_for(lambda: not thread.is_alive(), 60, "the call to end")
    (error,) = errors
    assert "deadline" in str(error)
    assert error.http_status == (200 if mode == "body" else None)
    # Ended by the client while the server was still sending.
    wait_for(lambda: server.counts()[2] == 1, 30, "the server to see the connection end")

    # The session is sound for the next call, and a call that ends in time is untouched by
    # the deadline it had.
    quick = ThreadingHTTPServer(("127.0.0.1", 0), _Quick)
    threading.Thread(target=quick.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{quick.server_address[1]}/"
        for _ in range(2):  # the second on the pooled connection
            answer = http.send(
                session,
                "GET",
                url,
                timeouts=(1.0, 1.0),
                max_bytes=4096,
                started=time.monotonic(),
                scrub=str,
            )
            assert answer == (200, "text/plain", b"ok")
    finally:
        quick.shutdown()
        quick.server_close()


class _Quick(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass
