"""The LAZOP sandbox: a local Lazada Open Platform gateway and auth service over real HTTP.

``{url}rest`` is the venture gateway, ``{url}auth/rest`` the auth service (token calls answer
only there, seller APIs only on the gateway: decision L9). Order of checks for a call (each
failure is an error envelope with HTTP 200, as LAZOP answers): fault draw -> path
(InvalidApiPath) -> request syntax (5) -> system parameters and signature (L1:
MissingParameter, APP_KEY_INVALID, OPEN_API_TIMESTAMP_INVALID, IncompleteSignature) -> HTTP
method -> access token (IllegalAccessToken) -> rate limit (ApiCallLimit) -> the endpoint.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from worker.sandbox.http_server import Body, SandboxServer, State
from worker.sandbox.lazop.config import LazopSandboxConfig
from worker.sandbox.lazop.errors import LazopError, render_error, render_success
from worker.sandbox.lazop.service import API_ENDPOINTS, AUTH_ENDPOINTS, OpenPlatform
from worker.sandbox.lazop.signature import authenticate
from worker.sandbox.ledger import ServedCall
from worker.sandbox.responses import Reply

__all__ = ["LazopSandbox"]

GATEWAY_PREFIX = "/rest"
AUTH_PREFIX = "/auth/rest"
REDACTED = "[redacted]"
_SECRET_PARAMS = ("sign", "access_token", "refresh_token", "code")
_ERROR_FAULTS = {
    "service_timeout": "ServiceTimeout",
    "internal_error": "6",
    "api_call_limit": "ApiCallLimit",
}


class LazopSandbox(SandboxServer[LazopSandboxConfig]):
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

    def stats(self) -> dict[str, Any]:
        removals = self._service.removal_counts()
        return {
            **super().stats(),
            "skus_removed": len(removals),
            "removals": sum(removals.values()),
            "skus_removed_more_than_once": sum(1 for count in removals.values() if count > 1),
            "image_jobs": len(self._service.images),
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
        if endpoint not in actions:
            return None
        if method != "POST":
            return 405, {"error": f"{method} not allowed on /_sandbox/{endpoint}"}
        try:
            seller = query.get("seller", "")
            return 200, actions[endpoint](seller) or {endpoint: seller}
        except ValueError as error:
            return 400, {"error": str(error)}

    # -- the API -------------------------------------------------------------------------------

    def _answer(
        self, method: str, path: str, raw_query: str, body: Body, arrived: float
    ) -> Reply | None:
        state = self._state
        request_id = secrets.token_hex(7)
        params, syntax_error = _params(method, raw_query, body)
        seller: list[str] = []

        fault, answered = self._draw_fault(state)
        if not answered:
            return None
        reply = self._transport_fault(fault)
        if reply is not None:
            pass
        elif fault == "http429":
            reply = Reply(429, "text/plain; charset=utf-8", b"Too Many Requests\n")
        elif fault in _ERROR_FAULTS or (fault == "slow" and not self.config.slow_applies):
            code = _ERROR_FAULTS.get(fault or "", "ServiceTimeout")
            reply = render_error(request_id, LazopError(code))
        else:
            reply = self._processed(
                fault,
                lambda apply: self._process(
                    method, path, params, syntax_error, state, request_id, seller, apply=apply
                ),
            )
        recorded = {
            name: REDACTED if name in _SECRET_PARAMS else value for name, value in params.items()
        }
        recorded.pop("sign", None)
        state.ledger.record(
            ServedCall(
                at=arrived,
                action=_api_path(path) or path,
                method=method,
                params=recorded,
                body=b"",  # the form body holds the sign and tokens; its fields are in params
                http_status=reply.status,
                error_code=reply.error_code,
                fault=fault,
                account=seller[0] if seller else None,
            )
        )
        return reply

    def _process(
        self,
        method: str,
        path: str,
        params: Mapping[str, str],
        syntax_error: LazopError | None,
        state: State,
        request_id: str,
        seller_out: list[str],
        *,
        apply: bool,
    ) -> Reply:
        config = self.config
        service: OpenPlatform = state.service
        try:
            api_path = _api_path(path)
            if path.startswith(AUTH_PREFIX + "/"):
                endpoint = AUTH_ENDPOINTS.get(api_path)
            else:
                endpoint = API_ENDPOINTS.get(api_path)
            if endpoint is None:
                raise LazopError("InvalidApiPath", api_path or path)
            if syntax_error is not None:
                raise syntax_error
            authenticate(
                api_path,
                params,
                app_key=config.app_key,
                app_secret=config.app_secret,
                max_clock_skew=config.max_clock_skew,
                now_ms=int(time.time() * 1000),
            )
            if endpoint.method is not None and method != endpoint.method:
                raise LazopError("InvalidParameter", f"HTTP method {method}")
            seller: str | None = None
            if endpoint.seller_api:
                token = params.get("access_token", "")
                if not token:
                    raise LazopError("MissingParameter", "access_token")
                seller = service.authority.seller_for(token)
                seller_out.append(seller)
            if config.rate_limit is not None and not service.admit(
                seller or "app", config.rate_limit
            ):
                raise LazopError("ApiCallLimit")
            answer = service.call(api_path, seller, params, config, apply=apply)
            return render_success(request_id, answer.data, **(answer.top_level or {}))
        except LazopError as error:
            return render_error(request_id, error)


def _api_path(path: str) -> str:
    """``/order/get`` from ``/rest/order/get`` or ``/auth/rest/auth/token/create``."""
    for prefix in (AUTH_PREFIX, GATEWAY_PREFIX):
        if path.startswith(prefix + "/"):
            return path[len(prefix) :]
    return ""


def _params(method: str, raw_query: str, body: Body) -> tuple[dict[str, str], LazopError | None]:
    """Query and form body merged (the first of a repeated name wins); an error if malformed."""
    if body.problem is not None:
        return {}, LazopError("5", detail=[{"field": "body", "message": body.problem}])
    pairs: list[tuple[str, str]] = []
    try:
        pairs += parse_qsl(raw_query, keep_blank_values=True, strict_parsing=bool(raw_query))
        if method == "POST" and body.data:
            text = body.data.decode("utf-8")
            pairs += parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except (ValueError, UnicodeDecodeError):
        return {}, LazopError("5", detail=[{"field": "body", "message": "Malformed parameters"}])
    params: dict[str, str] = {}
    for name, value in pairs:
        params.setdefault(name, value)
    return params, None
