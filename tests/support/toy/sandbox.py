"""The toy platform's sandbox: the API tests.support.toy.platform speaks, on the sandbox base.

Like the Lazada sandboxes it checks every request's signature, removes SKUs (those matching
`failing_skus` are refused, the others removed: the toy removes per SKU, not all or nothing),
serves orders below `missing_order_from`, and runs image jobs with the shared conventions
(a URL's `sandbox_duration` fixes the job's duration, "broken" URLs fail); latency, faults,
throttling and the ledger come from the base.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeAlias
from urllib.parse import parse_qsl

from tests.support.toy.platform import MAX_SKUS, MAX_URLS, signature
from worker.sandbox import Body, Call, SandboxServer, State
from worker.sandbox.images import ImageJobs
from worker.sandbox.knobs import ServerKnobs
from worker.sandbox.order_book import OrderBook
from worker.sandbox.removals import Removals, failing_skus
from worker.sandbox.replies import Reply, json_reply
from worker.sandbox.routes import Found, Routes


@dataclass
class ToyConfig(ServerKnobs):
    ENV_PREFIX: ClassVar[str] = "TOY_SANDBOX_"
    SECRETS: ClassVar[tuple[str, ...]] = ("shop_secret",)

    shop_id: str = "toy-shop"
    shop_secret: str = "toy-shop-secret"
    failing_skus: tuple[str, ...] = ("*FAIL*",)
    missing_order_from: int = 900_000_000
    image_job_seconds: tuple[float, float] = (0.0, 0.0)
    listed_orders: int = 0


@dataclass(kw_only=True)
class ToyCall(Call):
    found: Found[Handler] | None = None

    def recorded_params(self) -> dict[str, str]:
        return {name: value for name, value in self.params.items() if name != "signature"}


@dataclass
class Toy:
    """The shop's state: what was removed, and its image jobs."""

    removals: Removals = field(default_factory=Removals)
    images: ImageJobs = field(default_factory=lambda: ImageJobs(seed=0))
    book: OrderBook = field(default_factory=lambda: OrderBook(seed=0))
    lock: threading.Lock = field(default_factory=threading.Lock)


Handler: TypeAlias = Callable[[ToyCall, Toy, ToyConfig, bool], Reply]


def _document(call: ToyCall) -> dict[str, Any] | None:
    try:
        document = json.loads(call.body.data or b"{}")
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def remove(call: ToyCall, toy: Toy, config: ToyConfig, apply: bool) -> Reply:
    document = _document(call)
    skus = document.get("skus") if document is not None else None
    if not isinstance(skus, list) or not all(isinstance(s, str) for s in skus) or not skus:
        return json_reply(400, {"error": "skus must be a list of strings"}, "bad_request")
    if len(skus) > MAX_SKUS:
        return json_reply(400, {"error": f"at most {MAX_SKUS} skus"}, "bad_request")
    refused = failing_skus(skus, config.failing_skus)
    removed = [sku for sku in dict.fromkeys(skus) if sku not in refused]
    if apply:
        toy.removals.record(removed, call.account or "")
    return json_reply(
        200, {"removed": removed, "refused": {sku: "the shop refuses it" for sku in refused}}
    )


def get_order(call: ToyCall, toy: Toy, config: ToyConfig, apply: bool) -> Reply:
    assert call.found is not None
    raw = call.found.args["order_id"]
    if not raw.isdigit() or not 0 < int(raw) < config.missing_order_from:
        return json_reply(404, {"error": "no_such_order"}, "not_found")
    order_id = int(raw)
    created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=order_id)
    return json_reply(
        200,
        {
            "order": {
                "id": order_id,
                "number": f"T-{order_id}",
                "customer": "Toy Customer",
                "price": f"{order_id % 1000}.50",
                "created_at": created.isoformat(),
                "updated_at": (created + timedelta(hours=1)).isoformat(),
                "items": 1 + order_id % 3,
                "statuses": ["pending"],
            }
        },
    )


def _toy_order(order_id: int, created: datetime, updated: datetime, step: int) -> dict[str, Any]:
    return {
        "id": order_id,
        "number": f"T-{order_id}",
        "customer": "Toy Customer",
        "price": f"{order_id % 1000}.50",
        "created_at": created.isoformat(),
        "updated_at": updated.isoformat(),
        "items": 1 + order_id % 3,
        "statuses": _toy_statuses(step),
    }


def _toy_statuses(step: int) -> list[str]:
    return ["pending"] if step % 2 == 0 else ["shipped"]


def list_orders(call: ToyCall, toy: Toy, config: ToyConfig, apply: bool) -> Reply:
    """`GET /v1/orders?since=ISO&until=ISO&offset=N&limit=N[&status=S]`: whole orders by
    updated_at, only those under `status` when given (400 for a status the toy has not)."""
    toy.book.populate(config.shop_id, config.listed_orders, 1.0)
    try:
        since = datetime.fromisoformat(call.params["since"])
        until = datetime.fromisoformat(call.params["until"])
        offset, limit = int(call.params.get("offset", "0")), int(call.params.get("limit", "25"))
    except (KeyError, ValueError):
        return json_reply(400, {"error": "since, until, offset, limit"}, "bad_request")
    status = call.params.get("status")
    if status is not None and status not in ("pending", "shipped"):
        return json_reply(400, {"error": "no_such_status"}, "bad_request")
    keep = (lambda row: status in _toy_statuses(row.step)) if status is not None else None
    rows = toy.book.listing(config.shop_id, since, until, offset, min(limit, 25), keep)
    orders = [_toy_order(r.order_id, r.created_at, r.updated_at, r.step) for r in rows]
    return json_reply(200, {"orders": orders})


def submit_images(call: ToyCall, toy: Toy, config: ToyConfig, apply: bool) -> Reply:
    document = _document(call)
    urls = document.get("urls") if document is not None else None
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        return json_reply(400, {"error": "urls must be a list of strings"}, "bad_request")
    if len(urls) > MAX_URLS:
        return json_reply(400, {"error": f"at most {MAX_URLS} urls"}, "bad_request")
    if not apply:
        return json_reply(200, {"job": toy.images.new_request_id()})
    job = toy.images.submit(urls, config.image_job_seconds)
    return json_reply(200, {"job": job.request_id})


def poll_images(call: ToyCall, toy: Toy, config: ToyConfig, apply: bool) -> Reply:
    assert call.found is not None
    job = toy.images.get(call.found.args["job"])
    if job is None:
        return json_reply(404, {"error": "no_such_job"}, "not_found")
    if not job.finished(time.monotonic()):
        return json_reply(200, {"state": "running"})
    return json_reply(
        200,
        {
            "state": "done",
            "images": [
                {"url": i["Url"], "code": i["Code"], "source": i["OriginalUrl"]} for i in job.images
            ],
            "errors": [{"source": e["OriginalUrl"], "message": e["Message"]} for e in job.errors],
        },
    )


ROUTES: Routes[Handler] = Routes(
    [
        ("POST", "/v1/products/remove", remove),
        ("GET", "/v1/orders", list_orders),
        ("GET", "/v1/orders/{order_id}", get_order),
        ("POST", "/v1/images", submit_images),
        ("GET", "/v1/images/{job}", poll_images),
    ]
)


class ToySandbox(SandboxServer[ToyConfig, ToyCall]):
    """A toy shop's API on 127.0.0.1."""

    def _new_service(self) -> Toy:
        return Toy(images=ImageJobs(seed=self.config.seed))

    def _receive(self, method: str, path: str, raw_query: str, body: Body) -> ToyCall:
        found = ROUTES.find(method, path)
        return ToyCall(
            method=method,
            path=path,
            action=found.route.name if found else path,
            params=dict(parse_qsl(raw_query)),
            body=body,
            found=found,
        )

    def _handle(self, call: ToyCall, state: State, *, apply: bool) -> Reply:
        if call.found is None:
            status = 405 if ROUTES.methods(call.path) else 404
            return json_reply(status, {"error": "no such endpoint"}, f"http{status}")
        config = self.config
        expected = signature(config.shop_secret, call.method, call.path, call.body.data)
        given = call.params.get("signature", "")
        if call.params.get("shop") != config.shop_id or not hmac.compare_digest(given, expected):
            return json_reply(401, {"error": "bad_signature"}, "unauthorized")
        call.account = config.shop_id
        if not self._admitted(state, config.shop_id):
            return json_reply(429, {"error": "slow_down"}, "throttled")
        return call.found.route.handler(call, state.service, config, apply)

    def removal_counts(self) -> dict[str, int]:
        """How often each SKU was removed."""
        return dict(self._state.service.removals.counts())

    def change_orders(self, order_ids: list[int]) -> list[int]:
        """The listed orders move one status on, updated now."""
        return self._state.service.book.change(self.config.shop_id, order_ids)
