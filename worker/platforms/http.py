"""HTTP as both platforms' clients speak it, and the webhooks too: one pooled session, a
capped read of the answer within a deadline for the whole call, and short, scrubbed words for
what went wrong.

The platforms differ in what they sign and how they answer; this part they share. Errors come
out as NoAnswer, which each client turns into its own TransportError (a transient error).

requests' timeouts bound each socket operation, not a call: a server that sends a byte every
few seconds, in its status line, its headers or its body, would hold the calling thread for
as long as it likes. Each call here has a deadline, and a watchdog thread shuts the call's
socket down when it passes, which ends whatever read or write is waiting on it.
"""

from __future__ import annotations

import heapq
import itertools
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from importlib import metadata
from typing import Any, Literal

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager

POOL_SIZE = 32  # one client is shared by the worker's threads
_CHUNK_BYTES = 64 * 1024
_PREVIEW_CHARS = 120
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")  # C0, DEL and C1
_OS_ERROR = re.compile(r"\[Errno [^\]]+\][^'\")]*")


class NoAnswer(Exception):
    """No usable answer came: not sent, timed out, too large or cut off (the message says
    which, secrets scrubbed); `http_status` when the answer had begun."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


def session_for(base_url: str) -> requests.Session:
    """A session for one API's base URL, safe to share between threads."""
    session = requests.Session()
    # No urllib3 retries: a retried POST could remove SKUs twice behind the worker's back.
    adapter = _DeadlineAdapter(pool_connections=4, pool_maxsize=POOL_SIZE, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # requests reads the environment again on every request (proxies, CA bundle, ~/.netrc),
    # a large share of a call's CPU (bench/RESULTS.md). Read it once, here;
    # calls are signed, so no netrc credentials are wanted.
    session.trust_env = False
    session.proxies = get_environ_proxies(base_url)
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    session.verify = ca_bundle or True
    session.headers["User-Agent"] = _user_agent()
    return session


def send(
    session: requests.Session,
    method: Literal["GET", "POST"],
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeouts: tuple[float, float],
    max_bytes: int,
    started: float,
    scrub: Callable[[str], str],
    deadline: float | None = None,
) -> tuple[int, str, bytes]:
    """Send a request (`params` in the query, `data` as the body) and read at most
    `max_bytes` of the answer: (status, content type, body).

    `timeouts` (connect, read) bound each socket operation; `deadline` (time.monotonic(), by
    default `started` plus both timeouts) bounds the whole call, from connecting to the last
    byte of the body, however slowly the server sends. `session` must come from session_for.
    """
    if deadline is None:
        deadline = started + sum(timeouts)
    allowed = max(0.0, deadline - started)
    with _deadline(deadline) as watch:
        try:
            response = session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=timeouts,
                stream=True,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            if watch.expired:
                raise NoAnswer(f"no answer within the call's deadline of {allowed:g}s") from None
            if isinstance(exc, requests.ConnectTimeout):
                raise NoAnswer(f"no answer: connect timed out after {timeouts[0]}s") from None
            if isinstance(exc, requests.Timeout):
                raise NoAnswer(f"no answer: read timed out after {timeouts[1]}s") from None
            raise NoAnswer(f"no answer: {exception_text(exc, scrub)}") from None
        with response:
            if watch.expired:  # the headers may have been cut short: no answer
                raise NoAnswer(f"no answer within the call's deadline of {allowed:g}s")
            status = response.status_code
            content_type = response.headers.get("Content-Type", "")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise NoAnswer(
                    f"response larger than {max_bytes} bytes (Content-Length {declared})", status
                )
            chunks: list[bytes] = []
            size = 0
            try:
                for chunk in response.iter_content(_CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise NoAnswer(f"response larger than {max_bytes} bytes", status)
                    if time.monotonic() > deadline:
                        raise NoAnswer(f"timed out reading the body after {size} bytes", status)
                    chunks.append(chunk)
            except requests.RequestException as exc:
                if watch.expired:
                    raise NoAnswer(
                        f"timed out reading the body after {size} bytes "
                        f"(the call's deadline of {allowed:g}s)",
                        status,
                    ) from None
                raise NoAnswer(
                    f"connection broken while reading the body after {size} bytes "
                    f"({exception_text(exc, scrub)})",
                    status,
                ) from None
            if watch.expired:  # a body without a length ends where the socket was shut
                raise NoAnswer(
                    f"timed out reading the body after {size} bytes "
                    f"(the call's deadline of {allowed:g}s)",
                    status,
                )
    return status, content_type, b"".join(chunks)


def describe(content_type: str, data: bytes) -> str:
    """Say what came back, briefly: ``text/html body: '<html>...'...`` (control chars dropped)."""
    media_type = content_type.split(";", 1)[0].strip()
    if not data:
        return f"empty {media_type} body" if media_type else "empty body"
    media_type = media_type or "no content type"
    head = data[: _PREVIEW_CHARS * 4]
    text = CONTROL_CHARS.sub(" ", head.decode("utf-8", "replace")).strip()
    preview = text[:_PREVIEW_CHARS]
    more = "..." if len(text) > _PREVIEW_CHARS or len(data) > len(head) else ""
    return f"{media_type} body: {preview!r}{more} ({len(data)} bytes)"


def exception_text(exc: BaseException, scrub: Callable[[str], str]) -> str:
    """The useful part of a requests exception: ``[Errno 111] Connection refused`` and the
    like; otherwise its text, which may quote the URL (signature, token), through `scrub`."""
    # requests wraps urllib3's MaxRetryError, whose .reason is the real cause.
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    text = CONTROL_CHARS.sub(" ", str(reason if reason is not None else exc))
    found = _OS_ERROR.search(text)
    if found is not None:
        return found.group(0).strip()
    return f"{type(exc).__name__}: {scrub(text)[:200]}"


def _user_agent() -> str:
    try:
        version = metadata.version("lazada-worker")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    return f"lazada-worker/{version}"


class _Deadline:
    """One call's deadline and the connections it holds; their sockets are shut down when it
    expires. A connection is the call's from taking it out of the pool until putting it back:
    once back, or taken by another call, this deadline never touches it."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self._open = True
        self._connections: list[_WatchedHTTPConnection] = []
        self._lock = threading.Lock()

    def take(self, connection: _WatchedHTTPConnection) -> None:
        with self._lock:
            if not self._open:
                return
            connection.deadline = self
            self._connections.append(connection)
            if self.expired:
                _shut(connection.sock)

    def give_back(self, connection: _WatchedHTTPConnection) -> None:
        with self._lock:
            if connection.deadline is self:
                connection.deadline = None

    def connected(self, connection: _WatchedHTTPConnection) -> None:
        """A socket made after the deadline passed is shut at once."""
        with self._lock:
            if self.expired and connection.deadline is self:
                _shut(connection.sock)

    def expire(self) -> None:
        with self._lock:
            if not self._open:
                return
            self.expired = True
            for connection in self._connections:
                if connection.deadline is self:
                    _shut(connection.sock)

    def close(self) -> None:
        """The call is over: its connections are never touched again."""
        with self._lock:
            self._open = False
            for connection in self._connections:
                if connection.deadline is self:
                    connection.deadline = None
            self._connections.clear()


def _shut(sock: Any) -> None:
    """End every read and write waiting on `sock`, from another thread. The plain socket's
    shutdown, even under TLS: the TLS object's own is not safe while another thread reads."""
    raw = sock if isinstance(sock, socket.socket) else getattr(sock, "socket", None)
    if isinstance(raw, socket.socket):
        with suppress(OSError):  # closed already
            socket.socket.shutdown(raw, socket.SHUT_RDWR)


class _Watchdog:
    """One thread for every call's deadline (a timer thread per call would cost a thread
    start per API call)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Deadline]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, deadline: _Deadline) -> None:
        with self._changed:
            heapq.heappush(self._due, (deadline.at, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="lazada-http-deadlines", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while True:
                    now = time.monotonic()
                    if self._due and self._due[0][0] <= now:
                        deadline = heapq.heappop(self._due)[2]
                        break
                    self._changed.wait(self._due[0][0] - now if self._due else None)
            deadline.expire()  # a call already over is closed: nothing happens


_watchdog = _Watchdog()
_current = threading.local()


@contextmanager
def _deadline(at: float) -> Iterator[_Deadline]:
    """The calling thread's connections, while inside, are shut down once `at` passes."""
    deadline = _Deadline(at)
    _watchdog.arm(deadline)
    _current.deadline = deadline
    try:
        yield deadline
    finally:
        _current.deadline = None
        deadline.close()


class _WatchedHTTPConnection(HTTPConnection):
    """A connection that the deadline of the call holding it can shut down."""

    deadline: _Deadline | None = None

    def connect(self) -> None:
        super().connect()
        deadline = self.deadline
        if deadline is not None:
            deadline.connected(self)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    pass


class _WatchedPool(HTTPConnectionPool):
    """Hands each connection to the calling thread's deadline while the call holds it."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)
        deadline: _Deadline | None = getattr(_current, "deadline", None)
        if deadline is not None and isinstance(connection, _WatchedHTTPConnection):
            deadline.take(connection)
        return connection

    def _put_conn(self, conn: Any) -> None:
        if isinstance(conn, _WatchedHTTPConnection) and conn.deadline is not None:
            conn.deadline.give_back(conn)
        super()._put_conn(conn)


class _WatchedHTTPPool(_WatchedPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(_WatchedPool, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    """requests' adapter with connections the call's deadline can shut down, direct or
    through an HTTP proxy."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):  # a SOCKS proxy keeps its own pools
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager
