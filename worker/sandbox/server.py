"""The legacy sandbox's HTTP server: a local stand-in for the Seller Center endpoint.

Lifecycle, connections, bodies and control endpoints are the shared
:class:`~worker.sandbox.http_server.SandboxServer`'s; this module holds the legacy API's order
of checks for a call (each failure is an ErrorResponse with HTTP 200):
fault draw -> query syntax (E005) -> rate limit (E901) -> E001/E002/E004/E003/E007
(:func:`~worker.sandbox.signature.authenticate`) -> unknown Action (E008) -> HTTP method
(E005, with an ErrorDetail naming the method) -> body too big (E011) -> the action itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from worker.sandbox.actions import ACTIONS, SellerCenter
from worker.sandbox.config import SandboxConfig
from worker.sandbox.errors import ApiError, ErrorDetail
from worker.sandbox.http_server import Body, SandboxServer, State
from worker.sandbox.ledger import ServedCall
from worker.sandbox.responses import Reply, render_error, render_success
from worker.sandbox.signature import authenticate, parse_query

__all__ = ["Sandbox"]


def _body_error(body: Body) -> ApiError | None:
    if body.problem == "too_big":
        return ApiError(11)
    if body.problem == "bad_gzip":
        return ApiError(5, details=[ErrorDetail("Body", "Bad gzip body")])
    return None


class Sandbox(SandboxServer[SandboxConfig]):
    """A local Seller Center answering over real HTTP; see the module docstring for the rules."""

    def __init__(
        self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(config if config is not None else SandboxConfig(), host, port)

    @property
    def user_id(self) -> str:
        return self.config.user_id

    @property
    def api_key(self) -> str:
        return self.config.api_key

    def removal_counts(self) -> Counter[str]:
        """How many times each SellerSku was removed (each occurrence in a successful call)."""
        service: SellerCenter = self._state.service
        return service.removal_counts()

    def stats(self) -> dict[str, Any]:
        """JSON-able counters; exact for the whole run (since start or reset)."""
        service: SellerCenter = self._state.service
        distinct, removals, more_than_once = service.removal_summary()
        return {
            **super().stats(),
            "skus_removed": distinct,
            "removals": removals,
            "skus_removed_more_than_once": more_than_once,
            "image_jobs": len(service.images),
        }

    def _new_service(self) -> SellerCenter:
        return SellerCenter(self.config.seed)

    # -- the API -----------------------------------------------------------------------------

    def _answer(
        self, method: str, path: str, raw_query: str, body: Body, arrived: float
    ) -> Reply | None:
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

        fault, answered = self._draw_fault(state)
        if not answered:
            return None
        reply = self._transport_fault(fault)
        if reply is not None:
            pass
        elif fault == "e006" or (fault == "slow" and not config.slow_applies):
            reply = render_error(action, ApiError(6), as_json)
        elif fault == "e901":
            reply = render_error(action, ApiError(901), as_json)
        else:
            reply = self._processed(
                fault,
                lambda apply: self._process(
                    method, pairs, params, body, query_error, config, state, apply=apply
                ),
            )

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
        body: Body,
        query_error: ApiError | None,
        config: SandboxConfig,
        state: State,
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
            body_error = _body_error(body)
            if body_error is not None:
                raise body_error
            service: SellerCenter = state.service
            success = service.call(action, params, body.data, config, apply=apply)
            return render_success(action, success, as_json)
        except ApiError as error:
            return render_error(action, error, as_json)
