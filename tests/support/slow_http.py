"""An HTTP server that answers as slowly as it is told: a real socket that sends its answer a
byte at a time and never finishes, or a body far larger than any client should read.

It counts the connections it has open and those the client ended, so that tests can assert
the order of events (a call ended while the server was still sending) without timing anything.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from typing import Literal

Mode = Literal["status", "headers", "body", "flood"]


class SlowServer:
    """`status`: the status line and headers a byte every `interval` s, forever (the status
    is never complete). `headers`: the status line at once, then a header a byte every
    `interval` s, forever. `body`: a whole `answer` status line and headers at once, then the
    body a byte every `interval` s, forever. `flood`: `answer` with a body of `flood_bytes`
    sent as fast as the client reads, then a byte every `interval` s, forever."""

    def __init__(
        self,
        mode: Mode,
        interval: float = 0.2,
        answer: str = "200 OK",
        flood_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.mode = mode
        self.interval = interval
        self.answer = answer
        self.flood_bytes = flood_bytes
        self.requests = 0  # requests read whole
        self.open = 0  # connections being answered now
        self.ended_by_client = 0  # connections the client closed while we were still sending
        self.sent: list[int] = []  # bytes sent on each connection the client ended
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                server._serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hooks/slow"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def counts(self) -> tuple[int, int, int]:
        """(requests read, connections open, connections the client ended)."""
        with self._lock:
            return self.requests, self.open, self.ended_by_client

    def _serve(self, conn: socket.socket) -> None:
        if not _read_request(conn):
            return
        with self._lock:
            self.requests += 1
            self.open += 1
        sent = 0
        try:
            for piece in self._answer():
                conn.sendall(piece)
                sent += len(piece)
        except OSError:  # the client closed or reset the connection, or we are stopping
            if not self._stopping.is_set():
                with self._lock:
                    self.ended_by_client += 1
                    self.sent.append(sent)
        finally:
            with self._lock:
                self.open -= 1

    def _answer(self) -> Iterator[bytes]:
        if self.mode == "status":
            head = f"HTTP/1.1 {self.answer}\r\n".encode()
            for byte in head:
                yield bytes([byte])
                self._pause()
            while not self._stopping.is_set():  # one header that never ends
                yield b"x"
                self._pause()
        elif self.mode == "headers":
            yield f"HTTP/1.1 {self.answer}\r\n".encode()
            while not self._stopping.is_set():
                yield b"x"
                self._pause()
        elif self.mode == "body":
            yield f"HTTP/1.1 {self.answer}\r\nContent-Length: 1000\r\n\r\n".encode()
            while not self._stopping.is_set():
                yield b"x"
                self._pause()
        else:
            yield f"HTTP/1.1 {self.answer}\r\nContent-Type: text/plain\r\n\r\n".encode()
            chunk = b"y" * 65536
            for _ in range(self.flood_bytes // len(chunk)):
                yield chunk
            while not self._stopping.is_set():  # then a byte at a time, forever
                self._pause()
                yield b"y"

    def _pause(self) -> None:
        self._stopping.wait(self.interval)
        if self._stopping.is_set():
            raise OSError("server stopping")


def _read_request(conn: socket.socket) -> bool:
    """Read one request's head and body (Content-Length); False if the client went away."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return False
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        piece = conn.recv(65536)
        if not piece:
            return False
        body += piece
    return True
