"""A real HTTP server on 127.0.0.1 that answers with canned bytes: what comes back when the
API is not what answers (proxies, truncation, huge and hostile bodies)."""

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class CannedAnswer:
    """What the server answers next: status, headers and a body (bytes or streamed chunks)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "text/xml"})
    body: bytes = b""
    chunks: Callable[[], Iterable[bytes]] | None = None
    content_length: int | None = None  # None: len(body); a lie makes a truncated answer
    delay: float = 0.0


class CannedServer(ThreadingHTTPServer):
    daemon_threads = True
    answer = CannedAnswer()
    requests: list[str]


class _CannedHandler(BaseHTTPRequestHandler):
    server: CannedServer

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer()

    def _answer(self) -> None:
        self.server.requests.append(self.path)
        answer = self.server.answer
        if answer.delay:
            time.sleep(answer.delay)
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if answer.chunks is None:
                length = (
                    len(answer.body) if answer.content_length is None else answer.content_length
                )
                self.send_header("Content-Length", str(length))
            elif answer.content_length is not None:
                self.send_header("Content-Length", str(answer.content_length))
            self.end_headers()
            if answer.chunks is None:
                self.wfile.write(answer.body)
            else:  # HTTP/1.0 without a length: the body ends when the connection closes
                for chunk in answer.chunks():
                    self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading, as it should

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[CannedServer]:
    canned = CannedServer(("127.0.0.1", 0), _CannedHandler)
    canned.answer = CannedAnswer()
    canned.requests = []
    thread = threading.Thread(target=canned.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield canned
    finally:
        canned.shutdown()
        canned.server_close()


def zeros(total: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    block = b"0" * chunk
    for _ in range(total // chunk):
        yield block
