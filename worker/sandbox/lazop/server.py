"""The LAZOP sandbox: a local Lazada Open Platform gateway and auth service over real HTTP.

``{url}rest`` is the venture gateway, ``{url}auth/rest`` the auth service (token calls answer
only there, seller APIs only on the gateway: decision L9). Order of checks for a call (each
failure is an error envelope with HTTP 200, as LAZOP answers): fault draw -> path
(InvalidApiPath) -> request syntax (5) -> system parameters and signature (L1:
MissingParameter, APP_KEY_INVALID, OPEN_API_TIMESTAMP_INVALID, IncompleteSignature) -> HTTP
method -> access token (IllegalAccessToken) -> rate limit (ApiCallLimit) -> the endpoint.
"""

from __future__ import annotations

import html
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from worker.sandbox.http_server import Body, Call, SandboxServer, State
from worker.sandbox.lazop.config import LazopSandboxConfig
from worker.sandbox.lazop.errors import LazopErrorAnswer, render_error, render_success
from worker.sandbox.lazop.service import API_ENDPOINTS, AUTH_ENDPOINTS, OpenPlatform, seller_id
from worker.sandbox.lazop.signature import authenticate
from worker.sandbox.order_book import order_control
from worker.sandbox.replies import TEXT_CONTENT_TYPE, Reply

__all__ = ["LazopSandbox"]

GATEWAY_PREFIX = "/rest"
AUTH_PREFIX = "/auth/rest"
CONSENT_PATH = "/auth/oauth/authorize"  # the auth URL without /rest, then /oauth/authorize
REDACTED = "[redacted]"
_SECRET_PARAMS = ("sign", "access_token", "refresh_token", "code")
_ERROR_FAULTS = {
    "service_timeout": "ServiceTimeout",
    "internal_error": "6",
    "api_call_limit": "ApiCallLimit",
}


@dataclass(kw_only=True)
class LazopCall(Call):
    """A LAZOP call: query and form body merged in ``params``, whether they could be read, and
    the request id its answer carries."""

    syntax_error: LazopErrorAnswer | None = None
    request_id: str = field(default_factory=lambda: secrets.token_hex(7))

    def recorded_params(self) -> dict[str, str]:
        recorded = {
            name: REDACTED if name in _SECRET_PARAMS else value
            for name, value in self.params.items()
        }
        recorded.pop("sign", None)
        return recorded

    def recorded_body(self) -> bytes:
        return b""  # the form body holds the sign and tokens; its fields are in params


class LazopSandbox(SandboxServer[LazopSandboxConfig, LazopCall]):
    """A local Lazada Open Platform for several sellers of one app; see the module docstring."""

    server_version = "LazopSandbox/1.0"
    thread_name = "lazop-sandbox"

    def __init__(
        self, config: LazopSandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(config if config is not None else LazopSandboxConfig(), host, port)

    # -- what an operator or a test needs ------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The venture gateway, as ``https://api.lazada.sg/rest`` is for Singapore."""
        return self.url.rstrip("/") + GATEWAY_PREFIX

    @property
    def auth_url(self) -> str:
        """The auth service, as ``https://auth.lazada.com/rest`` is for every venture."""
        return self.url.rstrip("/") + AUTH_PREFIX

    @property
    def app_key(self) -> str:
        return self.config.app_key

    @property
    def app_secret(self) -> str:
        return self.config.app_secret

    @property
    def sellers(self) -> tuple[str, ...]:
        return self.config.sellers

    def authorization_code(self, seller: str) -> str:
        """A single-use code for ``seller``, as the consent page hands out (30 minutes)."""
        self._check_seller(seller)
        return self._service.authority.authorization_code(seller)

    def revoke(self, seller: str) -> None:
        """The seller withdraws the app's authorization: their tokens stop working at once."""
        self._check_seller(seller)
        self._service.authority.revoke(seller)

    def expire_access_tokens(self, seller: str) -> None:
        """The seller's access tokens expire now (refresh tokens still work)."""
        self._check_seller(seller)
        self._service.authority.expire_access_tokens(seller)

    def removal_counts(self, seller: str | None = None) -> Counter[str]:
        """How many times each SellerSku was removed (for one seller, or all of them)."""
        return self._service.removal_counts(seller)

    def add_orders(self, seller: str, count: int, ago: float = 0.0) -> list[int]:
        """`count` new orders in the seller's listing, updated `ago` seconds before now (a row
        that becomes visible late when `ago` > 0); their ids."""
        self._check_seller(seller)
        return self._service.add_orders(seller, count, self.config, ago)

    def change_orders(self, seller: str, order_ids: list[int], ago: float = 0.0) -> list[int]:
        """The seller's orders move one status on, updated `ago` seconds before now."""
        self._check_seller(seller)
        return self._service.change_orders(seller, order_ids, self.config, ago)

    def refuse_items(self, seller: str, order_ids: list[int]) -> None:
        """``/orders/items/get`` answers 37 for these orders (``/order/get`` still knows them)."""
        self._check_seller(seller)
        self._service.book.refuse_items(seller, order_ids)

    def garble_orders(self, seller: str, order_ids: list[int]) -> None:
        """These orders' ``updated_at`` is answered in a shape no decision names."""
        self._check_seller(seller)
        self._service.book.garble(seller, order_ids)

    def listed_order_ids(self, seller: str) -> list[int]:
        """Every order the seller's listing holds."""
        self.add_orders(seller, 0)
        return self._service.book.ids(seller)

    def stats(self) -> dict[str, Any]:
        """JSON-able counters; exact for the whole run (since start or reset)."""
        service = self._service
        return {
            **super().stats(),
            **service.removals.stats(),
            "image_jobs": len(service.images),
        }

    @property
    def _service(self) -> OpenPlatform:
        service: OpenPlatform = self._state.service
        return service

    def _new_service(self) -> OpenPlatform:
        return OpenPlatform(self.config.seed)

    def _check_seller(self, seller: str) -> None:
        if seller not in self.config.sellers:
            raise ValueError(f"no seller {seller!r} in this sandbox (sellers: {self.sellers})")

    def _control(
        self, method: str, endpoint: str, query: Mapping[str, str]
    ) -> tuple[int, Any] | None:
        actions: dict[str, Callable[[str], Any]] = {
            "authorization-code": lambda seller: {"code": self.authorization_code(seller)},
            "revoke": self.revoke,
            "expire-access-tokens": self.expire_access_tokens,
        }
        if endpoint == "orders":
            seller = query.get("seller", "")
            return order_control(
                method,
                query,
                lambda count, ago: self.add_orders(seller, count, ago),
                lambda ids, ago: self.change_orders(seller, ids, ago),
            )
        if endpoint not in actions:
            return None
        if method != "POST":
            return 405, {"error": f"{method} not allowed on /_sandbox/{endpoint}"}
        try:
            seller = query.get("seller", "")
            return 200, actions[endpoint](seller) or {endpoint: seller}
        except ValueError as error:
            return 400, {"error": str(error)}

    # -- the seller's consent page -------------------------------------------------------------

    def _answer(
        self, method: str, path: str, raw_query: str, body: Body, arrived: float
    ) -> Reply | None:
        if path == CONSENT_PATH:  # a page for a browser, not an API call: no faults, no ledger
            return self._consent_page(method, raw_query)
        return super()._answer(method, path, raw_query, body, arrived)

    def _consent_page(self, method: str, raw_query: str) -> Reply:
        """Where `accounts authorize-url` and the console's Connect send a seller: one button
        per seller of the sandbox, each back to `redirect_uri` with a fresh code and the
        `state` it was given (a GET form, so the redirect URI's own query is replaced)."""
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        redirect_uri = query.get("redirect_uri", "")
        problem = None
        if method != "GET":
            problem = f"{method} not allowed on the consent page"
        elif query.get("client_id") != self.config.app_key:
            problem = "unknown client_id: it must be the app key"
        elif query.get("response_type") != "code":
            problem = "response_type must be code"
        elif not redirect_uri.startswith(("http://", "https://")):
            problem = "redirect_uri must be an http(s) URL"
        if problem is not None:
            return Reply(400, TEXT_CONTENT_TYPE, f"{problem}\n".encode())
        state = html.escape(query.get("state", ""))
        buttons = "".join(
            f'<form method="get" action="{html.escape(redirect_uri)}">'
            f'<input type="hidden" name="code" value="{self.authorization_code(seller)}">'
            + (f'<input type="hidden" name="state" value="{state}">' if state else "")
            + f'<button type="submit" name="authorize" value="{html.escape(seller)}">'
            f"Authorize as {html.escape(seller)} (seller {seller_id(seller)})</button></form>"
            for seller in self.config.sellers
        )
        page = (
            "<!doctype html><html><head><meta charset=utf-8><title>Authorize the app</title>"
            "</head><body><h1>LAZOP sandbox: authorize the app</h1>"
            f"<p>App {html.escape(self.config.app_key)} asks to act for your shop.</p>"
            f"{buttons}</body></html>"
        )
        return Reply(200, "text/html; charset=utf-8", page.encode("utf-8"))

    # -- the API -------------------------------------------------------------------------------

    def _receive(self, method: str, path: str, raw_query: str, body: Body) -> LazopCall:
        params, syntax_error = _params(method, raw_query, body)
        return LazopCall(
            method=method,
            path=path,
            action=_api_path(path) or path,
            params=params,
            body=body,
            syntax_error=syntax_error,
        )

    def _fault_reply(self, fault: str, call: LazopCall) -> Reply | None:
        reply = super()._fault_reply(fault, call)
        if reply is not None:
            return reply
        if fault == "http429":
            return Reply(429, TEXT_CONTENT_TYPE, b"Too Many Requests\n")
        if fault in _ERROR_FAULTS or (fault == "slow" and not self.config.slow_applies):
            code = _ERROR_FAULTS.get(fault, "ServiceTimeout")
            return render_error(call.request_id, LazopErrorAnswer(code))
        return None

    def _handle(self, call: LazopCall, state: State, *, apply: bool) -> Reply:
        config = self.config
        service: OpenPlatform = state.service
        path, params = call.path, call.params
        try:
            api_path = _api_path(path)
            token_call = path.startswith(AUTH_PREFIX + "/")
            endpoint = (AUTH_ENDPOINTS if token_call else API_ENDPOINTS).get(api_path)
            if endpoint is None:
                raise LazopErrorAnswer("InvalidApiPath", api_path or path)
            if call.syntax_error is not None:
                raise call.syntax_error
            authenticate(
                api_path,
                params,
                app_key=config.app_key,
                app_secret=config.app_secret,
                max_clock_skew=config.max_clock_skew,
                now_ms=int(time.time() * 1000),
            )
            if endpoint.method is not None and call.method != endpoint.method:
                raise LazopErrorAnswer("InvalidParameter", f"HTTP method {call.method}")
            seller: str | None = None
            if endpoint.seller_api:
                token = params.get("access_token", "")
                if not token:
                    raise LazopErrorAnswer("MissingParameter", "access_token")
                seller = service.authority.seller_for(token)
                call.account = seller
            # Per seller; token calls count against the app.
            if not self._admitted(state, seller or "app"):
                raise LazopErrorAnswer("ApiCallLimit")
            answer = service.call(api_path, seller, params, config, apply=apply)
            if token_call and config.token_answer == "not_json":  # noqa: S105 (a knob value)
                return Reply(200, "text/html", _NOT_JSON)  # issued all the same
            return render_success(call.request_id, answer.data, **(answer.top_level or {}))
        except LazopErrorAnswer as error:
            return render_error(call.request_id, error)


_NOT_JSON = b"<html><body><h1>Service temporarily unavailable</h1></body></html>\n"
"""A token call's answer under the ``token_answer`` knob "not_json"."""


def _api_path(path: str) -> str:
    """``/order/get`` from ``/rest/order/get`` or ``/auth/rest/auth/token/create``."""
    for prefix in (AUTH_PREFIX, GATEWAY_PREFIX):
        if path.startswith(prefix + "/"):
            return path[len(prefix) :]
    return ""


def _params(
    method: str, raw_query: str, body: Body
) -> tuple[dict[str, str], LazopErrorAnswer | None]:
    """Query and form body merged (the first of a repeated name wins); an error if malformed."""
    if body.problem is not None:
        return {}, LazopErrorAnswer("5", detail=[{"field": "body", "message": body.problem}])
    pairs: list[tuple[str, str]] = []
    try:
        pairs += parse_qsl(raw_query, keep_blank_values=True, strict_parsing=bool(raw_query))
        if method == "POST" and body.data:
            text = body.data.decode("utf-8")
            pairs += parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except (ValueError, UnicodeDecodeError):
        return {}, LazopErrorAnswer(
            "5", detail=[{"field": "body", "message": "Malformed parameters"}]
        )
    params: dict[str, str] = {}
    for name, value in pairs:
        params.setdefault(name, value)
    return params, None
