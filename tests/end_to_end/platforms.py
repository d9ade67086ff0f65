"""The platforms the end-to-end specification runs on, and a worker stack with an account of one.

Each entry of PLATFORMS says how to start the platform's sandbox, how to add an account of it
to a stack's database, and the few facts of its API a test has to name (the action a removal is
audited as, the code of a missing order, what a leaked secret looks like). The specification
itself is written once, in terms of behaviour, and `platform_stack` runs it on every entry and
every stack. A new platform is one more `PlatformUnderTest` in PLATFORMS.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from tests.support import lazop
from tests.support.processes import wait_for
from tests.support.worker_stack import Stack, add_sellercenter_account
from worker.accounts.store import get_account
from worker.platforms.lazop.platform import LazopPlatform
from worker.platforms.sellercenter import SellerCenterPlatform
from worker.sandbox.sellercenter import Sandbox, SandboxConfig, ServedCall
from worker.services import documents


class PlatformSandbox(Protocol):
    """What the specification asks of a platform's sandbox."""

    @property
    def config(self) -> Any: ...

    def calls(self) -> list[ServedCall]: ...

    def removal_counts(self) -> Counter[str]: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class PlatformUnderTest:
    """How to stand up one platform for the end-to-end specification, and its API's names."""

    name: str
    start_sandbox: Callable[[], PlatformSandbox]
    """A started sandbox of the platform, on a free port, for one test."""
    add_account: Callable[[Stack, Any, str], None]
    """Store an account of the sandbox under the name on the stack's database, ready to work."""
    secrets: Callable[[Session, Stack, Any, str], list[str]]
    """The account's secrets in clear, none of which may reach a log or a row."""
    max_skus_per_call: int
    removal_action: str
    """The action a removal call is served and audited as."""
    order_action: str
    """The action that fetches an order (one per order, whatever else an order needs)."""
    missing_order_code: str
    """The error code an order the platform does not know is recorded with."""
    transient_faults: tuple[str, ...]
    """The sandbox's fault kinds a retry gets past at once: a slow answer is left out, as it
    costs the client's whole read timeout (the reliability stage injects it)."""
    signature: re.Pattern[str]
    """What a request's signature looks like in text: it must not be logged or stored."""


def _start_sellercenter() -> Sandbox:
    # A UserID of its own: tests running at once share no rate-limit calendar.
    config = SandboxConfig(user_id=f"e2e-{uuid.uuid4().hex[:10]}@lazada-worker.test")
    return Sandbox(config, port=0).start()


def _sellercenter_secrets(session: Session, stack: Stack, sandbox: Sandbox, name: str) -> list[str]:
    return [sandbox.api_key]


def _lazop_secrets(session: Session, stack: Stack, sandbox: Any, name: str) -> list[str]:
    account = get_account(session, stack.settings, name)
    found = [sandbox.app_secret, account.access_token, account.refresh_token]
    return [secret for secret in found if secret]


SELLERCENTER = PlatformUnderTest(
    name="sellercenter",
    start_sandbox=_start_sellercenter,
    add_account=add_sellercenter_account,
    secrets=_sellercenter_secrets,
    max_skus_per_call=SellerCenterPlatform.max_skus_per_call,
    removal_action="RemoveProduct",
    order_action="GetOrder",
    missing_order_code="E016",
    transient_faults=("http500", "http502_html", "e006", "e901", "truncated"),
    signature=re.compile(r"Signature=[0-9a-f]{16}"),
)

LAZOP = PlatformUnderTest(
    name="lazop",
    start_sandbox=lazop.start_sandbox,
    add_account=lazop.add_account,
    secrets=_lazop_secrets,
    max_skus_per_call=LazopPlatform.max_skus_per_call,
    removal_action="/product/remove",
    order_action="/order/get",
    missing_order_code="16",
    transient_faults=(
        "http500",
        "http502_html",
        "http429",
        "service_timeout",
        "internal_error",
        "api_call_limit",
        "truncated",
    ),
    # The upper-case HMAC-SHA256 the client sends as `sign`.
    signature=re.compile(r"[0-9A-F]{64}"),
)

PLATFORMS: dict[str, PlatformUnderTest] = {p.name: p for p in (SELLERCENTER, LAZOP)}


@dataclass
class PlatformStack:
    """A worker stack with one account of a platform, against that platform's own sandbox.

    The stack's environment account (its default) stays on the stack's sandbox: work here
    names its account, and that sandbox sees none of it.
    """

    platform: PlatformUnderTest
    stack: Stack
    sandbox: Any
    account: str

    @property
    def env(self) -> dict[str, str]:
        """The workers' environment: change it before starting one."""
        return self.stack.env

    def start_worker(self, concurrency: int = 8, only: str = "all") -> Any:
        return self.stack.start_worker(concurrency, only)

    def send(self, name: str, *args: Any, task_id: str | None = None, **kwargs: Any) -> str:
        """Send a task by name for this account, as the shop does."""
        return self.stack.send(name, *args, task_id=task_id, account=self.account, **kwargs)

    def calls(self, action: str | None = None) -> list[ServedCall]:
        """The calls the platform's sandbox served (of one action)."""
        return [c for c in self.sandbox.calls() if action is None or c.action == action]

    def removal_counts(self) -> Counter[str]:
        """How many times the sandbox removed each SKU."""
        counts: Counter[str] = self.sandbox.removal_counts()
        return counts

    def job(self, key: str) -> dict | None:
        with self.stack.sessions() as session:
            return documents.removal_job(session, self.account, key)

    def finished(self, key: str, timeout: float = 150) -> dict:
        """The removal job once done; the workers' logs are printed if it never is."""

        def done() -> dict | None:
            job = self.job(key)
            return job if job and job["state"] == "done" else None

        try:
            return wait_for(done, timeout, f"{self.platform.name} removal job {key}")
        except AssertionError:
            print(self.stack.logs())
            raise


def environment_account(stack: Stack) -> PlatformStack:
    """The stack's own legacy account (from the environment), on the stack's sandbox."""
    return PlatformStack(SELLERCENTER, stack, stack.sandbox, stack.settings.account)
