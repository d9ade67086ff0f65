"""The server every sandbox is: HTTP, its lifecycle, control endpoints, faults, the call ledger.

One thread per connection (``ThreadingHTTPServer``, daemon threads), HTTP/1.1 keep-alive, and
each answer written in a single ``send`` with Nagle off, so a long run of calls over a few
kept-alive connections costs little. The path ``/_sandbox/...`` holds control endpoints for
observers in other processes; every other path is the platform's API.

A platform subclasses :class:`SandboxServer` and implements :meth:`~SandboxServer._new_service`
(its state), :meth:`~SandboxServer._receive` (a request read into a :class:`Call`) and
:meth:`~SandboxServer._handle` (the answer); it may add fault kinds in
:meth:`~SandboxServer._fault_reply` and control endpoints in :meth:`~SandboxServer._control`.
Latency, fault draws, slow and truncated answers, the ledger and stats() are done here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Literal, Protocol, Self, TypeVar
from urllib.parse import parse_qsl

from worker.sandbox import faults
from worker.sandbox.faults import FaultInjector
from worker.sandbox.ledger import CallLedger, ServedCall
from worker.sandbox.replies import TEXT_CONTENT_TYPE, Reply
from worker.sandbox.throttle import Throttle

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_sandbox/"
MAX_DRAIN_BYTES = 128 * 1024 * 1024
"""The API's documented body limit: bigger bodies are not even read, the connection is closed."""
_MAX_CONTROL_BODY = 1024 * 1024
_POLL_INTERVAL = 0.05
"""How often serve_forever notices stop(): short, so each test's fixture stops quickly."""
_BASE_CONTROL = ("stats", "calls", "config", "reset", "reset-calls")


class Knobs(Protocol):
    """What the shared server reads of a sandbox's config; the rest is the platform's."""

    latency: float
    fault_rate: float
    fault_kinds: tuple[str, ...]
    slow_seconds: float
    rate_limit: float | None
    max_body_bytes: int
    max_recorded_calls: int
    seed: int

    def validate(self) -> None: ...

    def updated(self, values: Mapping[str, Any]) -> Any: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Body:
    """A request body as read; ``problem`` says why it cannot be used (answered after auth)."""

    data: bytes
    problem: Literal["too_big", "bad_gzip"] | None = None


@dataclass(kw_only=True)
class Call:
    """One API call as the platform read it: what the ledger keeps of it, and what its handler
    needs. A platform subclasses it with the fields of its parsed request."""

    method: str
    path: str
    action: str
    """The name the ledger counts the call under (an Action, an API path)."""
    params: dict[str, str] = field(default_factory=dict)
    body: Body = field(default_factory=lambda: Body(b""))
    account: str | None = None
    """The account the call was made for, set by the handler once it knows."""

    def recorded_params(self) -> dict[str, str]:
        """The parameters as the ledger keeps them: a platform leaves its secrets out here."""
        return dict(self.params)

    def recorded_body(self) -> bytes:
        """The body as the ledger keeps it."""
        return self.body.data


ConfigT = TypeVar("ConfigT", bound=Knobs)
CallT = TypeVar("CallT", bound=Call)


@dataclass(frozen=True)
class State:
    """What reset() replaces, swapped as one reference so in-flight calls stay coherent."""

    ledger: CallLedger
    service: Any
    """The platform's state behind its endpoints (see ``SandboxServer._new_service``)."""
    faults: FaultInjector
    throttle: Throttle
    started: float = field(default_factory=time.monotonic)
    """time.monotonic() when the platform's state was made: stats()'s uptime counts from it."""


class SandboxServer(Generic[ConfigT, CallT]):
    """A local API answering over real HTTP.

    The socket is bound in the constructor (so ``url`` is known before serving, also with
    ``port=0``); :meth:`start` serves in a background thread, :meth:`serve_forever` in the
    foreground. A stopped sandbox cannot be started again.
    """

    server_version = "LazadaSandbox/1.0"
    thread_name = "lazada-sandbox"

    def __init__(self, config: ConfigT, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.config.validate()
        self._state = self._new_state()
        self._stopping = threading.Event()
        self._lifecycle = threading.Lock()
        self._serving = False
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._in_flight = 0
        self._peak_in_flight = 0
        self._server = _Server((host, port), _Handler)
        self._server.sandbox = self

    # -- what a platform provides --------------------------------------------------------------

    def _new_service(self) -> Any:
        """The platform's state behind its endpoints (removals, image jobs, tokens); made
        afresh by reset()."""
        raise NotImplementedError("a sandbox must implement _new_service")

    def _receive(self, method: str, path: str, raw_query: str, body: Body) -> CallT:
        """The request read into the platform's :class:`Call`. A request that cannot be read
        is still a call: keep the problem in the Call and answer it in :meth:`_handle`."""
        raise NotImplementedError("a sandbox must implement _receive")

    def _handle(self, call: CallT, state: State, *, apply: bool) -> Reply:
        """The platform's answer to one call, in the order of checks the real API has.

        With ``apply=False`` the answer is to be cut short in transit (a "truncated" fault), so
        the call must answer as if it had been done but change nothing. Rate limits are checked
        here with :meth:`_admitted`, where the real API checks them.
        """
        raise NotImplementedError("a sandbox must implement _handle")

    def _fault_reply(self, fault: str, call: CallT) -> Reply | None:
        """The reply of an injected fault that answers instead of the API; None for faults that
        only delay or cut the API's answer ("slow", "truncated"). A platform answers its own
        kinds and leaves the rest to this one."""
        if fault == "http500":
            return faults.http500()
        if fault == "http502_html":
            return faults.http502_html()
        return None

    def _control(
        self, method: str, endpoint: str, query: Mapping[str, str]
    ) -> tuple[int, Any] | None:
        """A platform's own control endpoint: (status, JSON document), or None if unknown."""
        return None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://HOST:PORT/``, the server's root."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> Self:
        """Serve in a background daemon thread; returns self for ``Sandbox(...).start()``."""
        self._begin_serving()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until stop() or Ctrl-C, then clean up."""
        self._begin_serving()
        try:
            self._server.serve_forever(poll_interval=_POLL_INTERVAL)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and drop open connections; calls waiting (latency, slow faults) are
        abandoned without an answer or an effect. Idempotent."""
        with self._lifecycle:
            if self._stopped:
                return
            self._stopped = True
            serving = self._serving
        self._stopping.set()
        if serving:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- observation and control -------------------------------------------------------------

    def calls(self) -> list[ServedCall]:
        """A snapshot of the recorded calls, oldest first (the last max_recorded_calls)."""
        return self._state.ledger.calls()

    def stats(self) -> dict[str, Any]:
        """JSON-able counters; exact for the whole run (since start or reset)."""
        return {
            **self._state.ledger.counters(),
            "calls_in_flight": self._in_flight,
            "peak_calls_in_flight": self._peak_in_flight,
            "uptime_seconds": round(time.monotonic() - self._state.started, 3),
        }

    def configure(self, values: Mapping[str, Any]) -> ConfigT:
        """Change knobs at run time from JSON-ish values, validated first (ValueError)."""
        new = self.config.updated(values)
        for knob in fields(new):
            setattr(self.config, knob.name, getattr(new, knob.name))
        return self.config

    def reset(self) -> None:
        """Forget calls, counters and the platform's state; reseed the faults from config.seed."""
        self._state = self._new_state()
        with self._connections_lock:
            self._peak_in_flight = self._in_flight

    def reset_calls(self) -> None:
        """Forget the recorded calls and their counters only: the platform's state stays (a
        benchmark counts its own calls while jobs started before it keep running)."""
        state = self._state
        self._state = State(
            CallLedger(self.config.max_recorded_calls),
            state.service,
            state.faults,
            state.throttle,
            state.started,
        )
        with self._connections_lock:
            self._peak_in_flight = self._in_flight

    # -- for the platforms' _handle -------------------------------------------------------------

    def _admitted(self, state: State, key: str = "") -> bool:
        """Whether the call fits in ``config.rate_limit`` calls per second counted against
        `key` (one key for the whole account by default); always True with no limit set."""
        rate = self.config.rate_limit
        return rate is None or state.throttle.admit(key, rate)

    # -- internals ---------------------------------------------------------------------------

    def _answer(
        self, method: str, path: str, raw_query: str, body: Body, arrived: float
    ) -> Reply | None:
        """The reply to one API call, recorded in the ledger; None if stop() came first."""
        state = self._state
        call = self._receive(method, path, raw_query, body)
        fault, answered = self._draw_fault(state)
        if not answered:
            return None
        reply = self._fault_reply(fault, call) if fault is not None else None
        if reply is None and fault == "truncated":
            # The client never sees the whole answer, so the call must have had no effect.
            reply = faults.truncated(self._handle(call, state, apply=False))
        elif reply is None:
            reply = self._handle(call, state, apply=True)
        state.ledger.record(
            ServedCall(
                at=arrived,
                action=call.action,
                method=method,
                params=call.recorded_params(),
                body=call.recorded_body(),
                http_status=reply.status,
                error_code=reply.error_code,
                fault=fault,
                account=call.account,
            )
        )
        return reply

    def _draw_fault(self, state: State) -> tuple[str | None, bool]:
        """(the fault this call gets, or None; False if stop() came during a "slow" wait)."""
        config = self.config
        fault = state.faults.draw(config.fault_rate, config.fault_kinds)
        if fault == "slow" and self._stopping.wait(config.slow_seconds):
            return fault, False  # stopped while waiting: no answer, no effect
        return fault, True

    def _new_state(self) -> State:
        return State(
            ledger=CallLedger(self.config.max_recorded_calls),
            service=self._new_service(),
            faults=FaultInjector(self.config.seed),
            throttle=Throttle(),
        )

    def _begin_serving(self) -> None:
        with self._lifecycle:
            if self._stopped or self._serving:
                raise RuntimeError("a sandbox serves once: create a new one")
            self._serving = True

    def _count_in_flight(self, delta: int) -> None:
        with self._connections_lock:
            self._in_flight += delta
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a benchmark's clients connecting at once must not overflow it
    sandbox: SandboxServer[Any, Any]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is normal here; don't print tracebacks.
        log.debug("sandbox connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server_version = self.server.sandbox.server_version
        self.server.sandbox._track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sandbox._track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: request lines carry signatures and tokens, and benchmarks want quiet."""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _dispatch(self) -> None:
        path, _, raw_query = self.path.partition("?")
        try:
            if path.startswith(CONTROL_PREFIX):
                self._serve_control(path[len(CONTROL_PREFIX) :], raw_query)
            else:
                self._serve_api(path, raw_query)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("sandbox failed on %s %s", self.command, path)  # path: no secrets
            self.close_connection = True
            self._send(Reply(500, TEXT_CONTENT_TYPE, b"sandbox bug\n"))

    def _serve_api(self, path: str, raw_query: str) -> None:
        sandbox = self.server.sandbox
        arrived = time.time()
        body = self._read_body(sandbox.config.max_body_bytes)
        if body is None:
            self.close_connection = True
            return
        sandbox._count_in_flight(1)
        try:
            reply = sandbox._answer(self.command, path, raw_query, body, arrived)
            # The latency is the time an answer takes from the request's arrival: building it
            # (listing thousands of orders, in a process shared with the caller's benchmark)
            # is part of it, as the real API's own work is part of its answer time.
            wait = sandbox.config.latency - (time.time() - arrived)
            if reply is None or (wait > 0 and sandbox._stopping.wait(wait)):
                self.close_connection = True
                return
        finally:
            sandbox._count_in_flight(-1)
        self._send(reply)

    def _serve_control(self, endpoint: str, raw_query: str) -> None:
        sandbox = self.server.sandbox
        body = self._read_body(_MAX_CONTROL_BODY)
        if body is None or body.problem is not None:
            self.close_connection = True
            self._send_json(413, {"error": "body too big"})
            return
        query = dict(parse_qsl(raw_query))
        route = (self.command, endpoint)
        if route == ("GET", "stats"):
            self._send_json(200, sandbox.stats())
        elif route == ("GET", "calls"):
            calls = sandbox.calls()
            limit = query.get("limit", "")
            if limit.isdigit():
                calls = calls[-int(limit) :] if int(limit) else []
            self._send_json(200, [call.to_json() for call in calls])
        elif route == ("GET", "config"):
            self._send_json(200, sandbox.config.to_json())
        elif route == ("POST", "config"):
            try:
                values = json.loads(body.data or b"{}")
                if not isinstance(values, dict):
                    raise ValueError("expected a JSON object of settings")
                self._send_json(200, sandbox.configure(values).to_json())
            except ValueError as error:
                self._send_json(400, {"error": str(error)})
        elif route == ("POST", "reset"):
            sandbox.reset()
            self._send_json(200, {"reset": True})
        elif route == ("POST", "reset-calls"):
            sandbox.reset_calls()
            self._send_json(200, {"reset": "calls"})
        elif endpoint in _BASE_CONTROL:
            self._send_json(405, {"error": f"{self.command} not allowed on /_sandbox/{endpoint}"})
        elif (answer := sandbox._control(self.command, endpoint, query)) is not None:
            self._send_json(*answer)
        else:
            self._send_json(404, {"error": f"no endpoint /_sandbox/{endpoint}"})

    def _read_body(self, limit: int) -> Body | None:
        """The request body; None when it cannot be read and the connection must close."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return Body(b"")
        if not raw_length.strip().isdigit():
            return None
        length = int(raw_length)
        if length > limit:
            if length > MAX_DRAIN_BYTES or not self._drain(length):
                return None
            return Body(b"", "too_big")
        data = self.rfile.read(length)
        if len(data) < length:
            return None
        return self._decoded(data, limit)

    def _read_chunked(self, limit: int) -> Body | None:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                chunk_size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                return None
            if chunk_size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            size += chunk_size
            if size > MAX_DRAIN_BYTES:
                return None
            chunk = self.rfile.read(chunk_size)
            self.rfile.readline(1024)
            if len(chunk) < chunk_size:
                return None
            if size <= limit:
                parts.append(chunk)
        if size > limit:
            return Body(b"", "too_big")
        return self._decoded(b"".join(parts), limit)

    def _drain(self, length: int) -> bool:
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                return False
            length -= len(chunk)
        return True

    def _decoded(self, data: bytes, limit: int) -> Body:
        """Undo ``Content-Encoding: gzip`` (the GFG Go SDK sends it), refusing zip bombs."""
        if "gzip" not in self.headers.get("Content-Encoding", "").lower():
            return Body(data)
        inflater = zlib.decompressobj(wbits=31)
        try:
            plain = inflater.decompress(data, limit + 1)
        except zlib.error:
            return Body(data, "bad_gzip")
        if len(plain) > limit:
            return Body(data, "too_big")
        return Body(plain)

    def _send_json(self, status: int, document: Any) -> None:
        body = json.dumps(document, ensure_ascii=False).encode("utf-8")
        self._send(Reply(status, "application/json", body))

    def _send(self, reply: Reply) -> None:
        """Status line, headers and body in one write: two small writes would meet Nagle and
        the client's delayed ACK, and every call would wait for it."""
        lines = [
            f"HTTP/1.1 {reply.status} {HTTPStatus(reply.status).phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {reply.content_type}",
            f"Content-Length: {len(reply.body)}",
        ]
        if self.close_connection:
            lines.append("Connection: close")
        elif self.request_version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + reply.body)
