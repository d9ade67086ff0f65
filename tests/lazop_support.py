"""Helpers shared by the LAZOP tests: a sandbox with a client and one authorized seller."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import requests

from worker.lazop import LazopClient, TokenGrant
from worker.platforms.models import CallRecord
from worker.sandbox.lazop import LazopSandbox
from worker.sandbox.lazop.signature import expected_sign


@dataclass
class Seller:
    """A sandbox seller's current tokens, refreshed the way the lead's account service will."""

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
