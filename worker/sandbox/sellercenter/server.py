"""The legacy sandbox's HTTP server: a local stand-in for the Seller Center endpoint.

Lifecycle, connections, bodies, faults, the ledger and control endpoints are the shared
:class:`~worker.sandbox.http_server.SandboxServer`'s; this module holds the legacy API's order
of checks for a call (each failure is an ErrorResponse with HTTP 200):
fault draw -> query syntax (E005) -> rate limit (E901) -> E001/E002/E004/E003/E007
(:func:`~worker.sandbox.sellercenter.signature.authenticate`) -> unknown Action (E008) -> HTTP
method (E005, with an ErrorDetail naming the method) -> body too big (E011) -> the action itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.sandbox.http_server import Body, Call, SandboxServer, State
from worker.sandbox.order_book import order_control
from worker.sandbox.replies import Reply
from worker.sandbox.sellercenter.actions import ACTIONS, SELLER, SellerCenter
from worker.sandbox.sellercenter.config import SandboxConfig
from worker.sandbox.sellercenter.errors import ErrorDetail, SellerCenterErrorAnswer
from worker.sandbox.sellercenter.responses import render_error, render_success
from worker.sandbox.sellercenter.signature import authenticate, parse_query

__all__ = ["Sandbox"]


@dataclass(kw_only=True)
class SellerCenterCall(Call):
    """A legacy call: its query's pairs as sent (the signature covers them all) and whether
    the query could be read. ``params`` has the first value of each name."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    query_error: SellerCenterErrorAnswer | None = None

    @property
    def as_json(self) -> bool:
        return self.params.get("Format", "").upper() == "JSON"

    def recorded_params(self) -> dict[str, str]:
        return {name: value for name, value in self.params.items() if name != "Signature"}


def _body_error(body: Body) -> SellerCenterErrorAnswer | None:
    if body.problem == "too_big":
        return SellerCenterErrorAnswer(11)
    if body.problem == "bad_gzip":
        return SellerCenterErrorAnswer(5, details=[ErrorDetail("Body", "Bad gzip body")])
    return None


class Sandbox(SandboxServer[SandboxConfig, SellerCenterCall]):
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
        return self._service.removal_counts()

    def add_orders(self, count: int, ago: float = 0.0) -> list[int]:
        """`count` new orders in the listing, updated `ago` seconds before now (a row that
        becomes visible late when `ago` > 0); their ids."""
        return self._service.add_orders(count, self.config, ago)

    def change_orders(self, order_ids: list[int], ago: float = 0.0) -> list[int]:
        """The orders move one status on, updated `ago` seconds before now."""
        return self._service.change_orders(order_ids, self.config, ago)

    def garble_orders(self, order_ids: list[int]) -> None:
        """These orders' ``UpdatedAt`` is answered in a shape no decision names."""
        self._service.book.garble(SELLER, order_ids)

    def listed_order_ids(self) -> list[int]:
        """Every order the listing holds."""
        self._service.add_orders(0, self.config)
        return self._service.book.ids(SELLER)

    def _control(
        self, method: str, endpoint: str, query: Mapping[str, str]
    ) -> tuple[int, Any] | None:
        if endpoint != "orders":
            return None
        return order_control(method, query, self.add_orders, self.change_orders)

    def stats(self) -> dict[str, Any]:
        """JSON-able counters; exact for the whole run (since start or reset)."""
        service = self._service
        return {
            **super().stats(),
            **service.removals.stats(),
            "image_jobs": len(service.images),
        }

    @property
    def _service(self) -> SellerCenter:
        service: SellerCenter = self._state.service
        return service

    def _new_service(self) -> SellerCenter:
        return SellerCenter(self.config.seed)

    # -- the API -----------------------------------------------------------------------------

    def _receive(self, method: str, path: str, raw_query: str, body: Body) -> SellerCenterCall:
        query_error: SellerCenterErrorAnswer | None = None
        try:
            pairs = parse_query(raw_query)
        except SellerCenterErrorAnswer as error:
            pairs, query_error = [], error
        params: dict[str, str] = {}
        for name, value in pairs:
            params.setdefault(name, value)
        return SellerCenterCall(
            method=method,
            path=path,
            action=params.get("Action", ""),
            params=params,
            body=body,
            pairs=pairs,
            query_error=query_error,
        )

    def _fault_reply(self, fault: str, call: SellerCenterCall) -> Reply | None:
        reply = super()._fault_reply(fault, call)
        if reply is not None:
            return reply
        if fault == "e006" or (fault == "slow" and not self.config.slow_applies):
            return render_error(call.action, SellerCenterErrorAnswer(6), call.as_json)
        if fault == "e901":
            return render_error(call.action, SellerCenterErrorAnswer(901), call.as_json)
        return None

    def _handle(self, call: SellerCenterCall, state: State, *, apply: bool) -> Reply:
        config = self.config
        action = call.action
        try:
            if call.query_error is not None:
                raise call.query_error
            if not self._admitted(state):
                raise SellerCenterErrorAnswer(901)
            authenticate(
                call.pairs,
                call.params,
                user_id=config.user_id,
                api_key=config.api_key,
                max_clock_skew=config.max_clock_skew,
                now=datetime.now(UTC),
            )
            spec = ACTIONS.get(action)
            if spec is None:
                raise SellerCenterErrorAnswer(8)
            if call.method != spec.method:
                message = f"{action} must be sent with {spec.method}"
                raise SellerCenterErrorAnswer(
                    5, details=[ErrorDetail("HTTPMethod", message, call.method)]
                )
            body_error = _body_error(call.body)
            if body_error is not None:
                raise body_error
            service: SellerCenter = state.service
            success = service.call(action, call.params, call.body.data, config, apply=apply)
            return render_success(action, success, call.as_json)
        except SellerCenterErrorAnswer as error:
            return render_error(action, error, call.as_json)
