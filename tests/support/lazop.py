"""Helpers shared by the LAZOP tests: a sandbox with a client and one authorized seller, and
a lazop account on a worker stack."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import requests

from tests.support.processes import wait_for
from tests.support.worker_stack import Stack
from worker.accounts import tokens
from worker.accounts.store import add_account as store_account
from worker.platforms.lazop import LazopClient, TokenGrant
from worker.platforms.models import CallRecord
from worker.sandbox.lazop import LazopSandbox
from worker.sandbox.lazop.config import LazopSandboxConfig
from worker.sandbox.lazop.signature import expected_sign
from worker.services import documents


@dataclass
class Seller:
    """A sandbox seller's current tokens, refreshed the way worker.accounts.tokens does."""

    client: LazopClient
    name: str
    grant: TokenGrant
    refreshes: list[str] = field(default_factory=list)

    def access_token(self) -> str:
        return self.grant.access_token

    def on_illegal_token(self, failed: str) -> str:
        self.refreshes.append(failed)
        self.grant = self.client.refresh_token(self.grant.refresh_token)
        return self.grant.access_token


def make_client(sandbox: LazopSandbox, records: list[CallRecord]) -> LazopClient:
    return LazopClient(
        sandbox.api_url,
        sandbox.app_key,
        sandbox.app_secret,
        auth_url=sandbox.auth_url,
        read_timeout=10.0,
        after_call=records.append,
    )


def authorize(sandbox: LazopSandbox, client: LazopClient, name: str) -> Seller:
    return Seller(client, name, client.create_token(sandbox.authorization_code(name)))


def raw_call(
    sandbox: LazopSandbox,
    api_path: str,
    params: Mapping[str, str],
    *,
    method: str = "GET",
    auth: bool = False,
    secret: str | None = None,
    timestamp: int | None = None,
) -> dict[str, object]:
    """A call signed by the sandbox's own rule (not the client's), for tests of the sandbox."""
    signed = {
        "app_key": sandbox.app_key,
        "timestamp": str(timestamp if timestamp is not None else int(time.time() * 1000)),
        "sign_method": "sha256",
        **params,
    }
    signed["sign"] = expected_sign(api_path, signed, secret or sandbox.app_secret)
    url = (sandbox.auth_url if auth else sandbox.api_url) + api_path
    if method == "GET":
        response = requests.get(url, params=signed, timeout=10)
    else:
        response = requests.post(url, data=signed, timeout=10)
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def started(sandbox: LazopSandbox) -> Iterator[LazopSandbox]:
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


# -- a lazop account on a worker stack (end-to-end tests) ------------------------------------

ACCOUNT = "shop-th"
SELLER = "seller-a"


def start_sandbox() -> LazopSandbox:
    """A started LAZOP sandbox whose image jobs end within a test's patience."""
    return LazopSandbox(LazopSandboxConfig(image_job_seconds=(0.5, 1.5)), port=0).start()


def add_account(stack: Stack, sandbox: LazopSandbox, name: str) -> None:
    """A lazop account of the sandbox's app on the stack's database, authorized by SELLER."""
    with stack.sessions.begin() as session:
        store_account(
            session,
            stack.settings,
            name,
            "lazop",
            {
                "app_key": sandbox.app_key,
                "app_secret": sandbox.app_secret,
                "auth_url": sandbox.auth_url,
            },
            api_url=sandbox.api_url,
        )
    authorize_account(stack, sandbox, name)


def authorize_account(stack: Stack, sandbox: LazopSandbox, name: str) -> None:
    """What `accounts authorize --code` does, with a fresh code from the sandbox."""
    with LazopClient(
        sandbox.api_url, sandbox.app_key, sandbox.app_secret, auth_url=sandbox.auth_url
    ) as client:
        grant = client.create_token(sandbox.authorization_code(SELLER))
    tokens.store_grant(stack.sessions, stack.settings, name, grant)


@dataclass
class Lazop:
    stack: Stack
    sandbox: LazopSandbox

    def authorize(self) -> None:
        """What `accounts authorize --code` does, with a fresh code from the sandbox."""
        authorize_account(self.stack, self.sandbox, ACCOUNT)

    def job(self, key: str) -> dict | None:
        with self.stack.sessions() as session:
            return documents.removal_job(session, ACCOUNT, key)

    def finished(self, key: str, timeout: float = 150) -> dict:
        def done() -> dict | None:
            job = self.job(key)
            return job if job and job["state"] == "done" else None

        try:
            return wait_for(done, timeout, f"lazop job {key}")
        except AssertionError:
            print(self.stack.logs())
            raise


@contextmanager
def lazop_stack(stack: Stack) -> Iterator[Lazop]:
    """A LAZOP sandbox and an authorized lazop account on the stack's database."""
    sandbox = start_sandbox()
    try:
        add_account(stack, sandbox, ACCOUNT)
        yield Lazop(stack, sandbox)
    finally:
        sandbox.stop()
