"""The sandbox's HTTP server: a local stand-in for the legacy Seller Center endpoint.

One thread per connection (``ThreadingHTTPServer``, daemon threads), HTTP/1.1 keep-alive, and
each answer written in a single ``send`` with Nagle off, so tens of thousands of calls over a few
dozen connections cost little. The path ``/_sandbox/...`` holds control endpoints for observers
in other processes; every other path is the API.

Order of checks for an API call (each failure is an ErrorResponse with HTTP 200):
fault draw -> query syntax (E005) -> rate limit (E901) -> E001/E002/E004/E003/E007
(:func:`~worker.sandbox.signature.authenticate`) -> unknown Action (E008) -> HTTP method
(E005, with an ErrorDetail naming the method) -> body too big (E011) -> the action itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from worker.sandbox import faults
from worker.sandbox.actions import ACTIONS, SellerCenter
from worker.sandbox.config import SandboxConfig
from worker.sandbox.errors import ApiError, ErrorDetail
from worker.sandbox.faults import FaultInjector
from worker.sandbox.ledger import CallLedger, ServedCall
from worker.sandbox.responses import Reply, render_error, render_success
from worker.sandbox.signature import authenticate, parse_query
from worker.sandbox.throttle import TokenBucket

log = logging.getLogger(__name__)

CONTROL_PREFIX = "/_sandbox/"
_MAX_DRAIN_BYTES = 128 * 1024 * 1024
"""The API's documented body limit: bigger bodies are not even read, the connection is closed."""
_MAX_CONTROL_BODY = 1024 * 1024
_POLL_INTERVAL = 0.05
"""How often serve_forever notices stop(): short, so each test's fixture stops quickly."""


@dataclass(frozen=True)
class _State:
    """Everything reset() replaces, swapped as one reference so in-flight calls stay coherent."""

    ledger: CallLedger
    service: SellerCenter
    faults: FaultInjector
    throttle: TokenBucket


@dataclass(frozen=True)
class _Body:
    data: bytes
    error: ApiError | None = None
    """E011 for a body over the limit, E005 for an undecodable one: answered after auth."""


class Sandbox:
    """A local Seller Center answering over real HTTP; see the module docstring for the rules.

    The socket is bound in the constructor (so ``url`` is known before serving, also with
    ``port=0``); :meth:`start` serves in a background thread, :meth:`serve_forever` in the
    foreground. A stopped sandbox cannot be started again.
    """

    def __init__(
        self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config if config is not None else SandboxConfig()
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

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://HOST:PORT/``, the API endpoint."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    @property
    def user_id(self) -> str:
        return self.config.user_id

    @property
    def api_key(self) -> str:
        return self.config.api_key

    def start(self) -> Sandbox:
        """Serve in a background daemon thread; returns self for ``Sandbox(...).start()``."""
        self._begin_serving()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name="lazada-sandbox",
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

    def __enter__(self) -> Sandbox:
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

    def removal_counts(self) -> Counter[str]:
        """How many times each SellerSku was removed (each occurrence in a successful call)."""
        return self._state.service.removal_counts()

    def stats(self) -> dict[str, Any]:
        """JSON-able counters; exact for the whole run (since start or reset)."""
        state = self._state
        distinct, removals, more_than_once = state.service.removal_summary()
        return {
            **state.ledger.counters(),
            "skus_removed": distinct,
            "removals": removals,
            "skus_removed_more_than_once": more_than_once,
            "image_jobs": len(state.service.images),
            "calls_in_flight": self._in_flight,
            "peak_calls_in_flight": self._peak_in_flight,
            "uptime_seconds": round(time.monotonic() - state.service.started, 3),
        }

    def configure(self, values: Mapping[str, Any]) -> SandboxConfig:
        """Change knobs at run time from JSON-ish values, validated first (ValueError)."""
        new = self.config.updated(values)
        for field in fields(new):
            setattr(self.config, field.name, getattr(new, field.name))
        return self.config

    def reset(self) -> None:
        """Forget calls, counters, removals and image jobs; restart the order clock and
        reseed the faults from the current config.seed."""
        self._state = self._new_state()
        with self._connections_lock:
            self._peak_in_flight = self._in_flight

    def reset_calls(self) -> None:
        """Forget the recorded calls and their counters only: removals, orders and image jobs
        stay (a benchmark counts its own calls while jobs started before it keep running)."""
        self._state = replace(self._state, ledger=CallLedger(self.config.max_recorded_calls))
        with self._connections_lock:
            self._peak_in_flight = self._in_flight

    def _new_state(self) -> _State:
        return _State(
            ledger=CallLedger(self.config.max_recorded_calls),
            service=SellerCenter(self.config.seed),
            faults=FaultInjector(self.config.seed),
            throttle=TokenBucket(),
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

    # -- the API -----------------------------------------------------------------------------

    def _answer(self, method: str, raw_query: str, body: _Body, arrived: float) -> Reply | None:
        """The reply to one API call, recorded in the ledger; None if stop() came first."""
        config = self.config
        state = self._state
        query_error: ApiError | None = None
        try:
            pairs = parse_query(raw_query)
        except ApiError as error:
            pairs, query_error = [], error
        params: dict[str, str] = {}
        for name, value in pairs:
            params.setdefault(name, value)
        action = params.get("Action", "")
        as_json = params.get("Format", "").upper() == "JSON"

        fault = state.faults.draw(config.fault_rate, config.fault_kinds)
        if fault == "slow" and self._stopping.wait(config.slow_seconds):
            return None  # stopped while waiting: no answer, no effect
        if fault == "http500":
            reply = faults.http500()
        elif fault == "http502_html":
            reply = faults.http502_html()
        elif fault == "e006" or (fault == "slow" and not config.slow_applies):
            reply = render_error(action, ApiError(6), as_json)
        elif fault == "e901":
            reply = render_error(action, ApiError(901), as_json)
        else:
            # A truncated answer must have had no effect, so the action only pretends.
            apply = fault != "truncated"
            args = (method, pairs, params, body, query_error, config, state)
            reply = self._process(*args, apply=apply)
            if fault == "truncated":
                reply = faults.truncated(reply)

        recorded = {name: value for name, value in params.items() if name != "Signature"}
        state.ledger.record(
            ServedCall(
                at=arrived,
                action=action,
                method=method,
                params=recorded,
                body=body.data,
                http_status=reply.status,
                error_code=reply.error_code,
                fault=fault,
            )
        )
        return reply

    def _process(
        self,
        method: str,
        pairs: list[tuple[str, str]],
        params: Mapping[str, str],
        body: _Body,
        query_error: ApiError | None,
        config: SandboxConfig,
        state: _State,
        *,
        apply: bool,
    ) -> Reply:
        action = params.get("Action", "")
        as_json = params.get("Format", "").upper() == "JSON"
        try:
            if query_error is not None:
                raise query_error
            if config.rate_limit is not None and not state.throttle.admit(config.rate_limit):
                raise ApiError(901)
            authenticate(
                pairs,
                params,
                user_id=config.user_id,
                api_key=config.api_key,
                max_clock_skew=config.max_clock_skew,
                now=datetime.now(UTC),
            )
            spec = ACTIONS.get(action)
            if spec is None:
                raise ApiError(8)
            if method != spec.method:
                message = f"{action} must be sent with {spec.method}"
                raise ApiError(5, details=[ErrorDetail("HTTPMethod", message, method)])
            if body.error is not None:
                raise body.error
            success = state.service.call(action, params, body.data, config, apply=apply)
            return render_success(action, success, as_json)
        except ApiError as error:
            return render_error(action, error, as_json)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # 32+ clients connecting at once must not overflow the backlog
    sandbox: Sandbox

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is normal here; don't print tracebacks.
        log.debug("sandbox connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LazadaSandbox/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.sandbox._track(self.connection, open_=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sandbox._track(self.connection, open_=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the request line carries the Signature, and benchmarks want quiet."""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _dispatch(self) -> None:
        path, _, raw_query = self.path.partition("?")
        try:
            if path.startswith(CONTROL_PREFIX):
                self._serve_control(path[len(CONTROL_PREFIX) :], raw_query)
            else:
                self._serve_api(raw_query)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("sandbox failed on %s %s", self.command, path)  # path: no Signature
            self.close_connection = True
            self._send(Reply(500, "text/plain; charset=utf-8", b"sandbox bug\n"))

    def _serve_api(self, raw_query: str) -> None:
        sandbox = self.server.sandbox
        arrived = time.time()
        body = self._read_body(sandbox.config.max_body_bytes)
        if body is None:
            self.close_connection = True
            return
        sandbox._count_in_flight(1)
        try:
            reply = sandbox._answer(self.command, raw_query, body, arrived)
            latency = sandbox.config.latency
            if reply is None or (latency > 0 and sandbox._stopping.wait(latency)):
                self.close_connection = True
                return
        finally:
            sandbox._count_in_flight(-1)
        self._send(reply)

    def _serve_control(self, endpoint: str, raw_query: str) -> None:
        sandbox = self.server.sandbox
        body = self._read_body(_MAX_CONTROL_BODY)
        if body is None or body.error is not None:
            self.close_connection = True
            self._send_json(413, {"error": "body too big"})
            return
        route = (self.command, endpoint)
        if route == ("GET", "stats"):
            self._send_json(200, sandbox.stats())
        elif route == ("GET", "calls"):
            query = dict(parse_qsl(raw_query))
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
        elif endpoint in ("stats", "calls", "config", "reset", "reset-calls"):
            self._send_json(405, {"error": f"{self.command} not allowed on /_sandbox/{endpoint}"})
        else:
            self._send_json(404, {"error": f"no endpoint /_sandbox/{endpoint}"})

    def _read_body(self, limit: int) -> _Body | None:
        """The request body; None when it cannot be read and the connection must close."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return _Body(b"")
        if not raw_length.strip().isdigit():
            return None
        length = int(raw_length)
        if length > limit:
            if length > _MAX_DRAIN_BYTES or not self._drain(length):
                return None
            return _Body(b"", ApiError(11))
        data = self.rfile.read(length)
        if len(data) < length:
            return None
        return self._decoded(data, limit)

    def _read_chunked(self, limit: int) -> _Body | None:
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
            if size > _MAX_DRAIN_BYTES:
                return None
            chunk = self.rfile.read(chunk_size)
            self.rfile.readline(1024)
            if len(chunk) < chunk_size:
                return None
            if size <= limit:
                parts.append(chunk)
        if size > limit:
            return _Body(b"", ApiError(11))
        return self._decoded(b"".join(parts), limit)

    def _drain(self, length: int) -> bool:
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                return False
            length -= len(chunk)
        return True

    def _decoded(self, data: bytes, limit: int) -> _Body:
        """Undo ``Content-Encoding: gzip`` (the GFG Go SDK sends it), refusing zip bombs."""
        if "gzip" not in self.headers.get("Content-Encoding", "").lower():
            return _Body(data)
        inflater = zlib.decompressobj(wbits=31)
        try:
            plain = inflater.decompress(data, limit + 1)
        except zlib.error:
            return _Body(data, ApiError(5, details=[ErrorDetail("Body", "Bad gzip body")]))
        if len(plain) > limit:
            return _Body(data, ApiError(11))
        return _Body(plain)

    def _send_json(self, status: int, document: Any) -> None:
        body = json.dumps(document, ensure_ascii=False).encode("utf-8")
        self._send(Reply(status, "application/json", body))

    def _send(self, reply: Reply) -> None:
        """Status line, headers and body in one write: two small writes would meet Nagle and
        delayed ACKs on the client and cost tens of milliseconds a call."""
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
