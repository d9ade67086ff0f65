"""The Open Platform's own behaviour end to end: its orders come with their items (a second
call), its access tokens expire and are refreshed mid-job, and a seller can revoke the app's
authorization, which parks the account's work until an operator authorizes it again.

The legacy platform has none of these: its key neither expires nor is revoked by a seller.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import select

from tests.end_to_end.platforms import PlatformStack
from tests.support.lazop import SELLER
from tests.support.processes import REPO, wait_for
from worker.accounts.store import get_account
from worker.db.models import Event, Failure
from worker.services import documents

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("platform_stack", ["lazop"], indirect=True),
]


def test_an_order_is_stored_with_the_items_of_its_second_call(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    at.start_worker()
    for order_id in (1001, 900_000_001):
        at.send("lazada.fetch_order", order_id)

    def both() -> list[dict] | None:
        with at.stack.sessions() as session:
            found = [documents.order(session, at.account, o) for o in (1001, 900_000_001)]
        final = [o for o in found if o and o["state"] in ("fetched", "failed")]
        return final if len(final) == 2 else None

    fetched, missing = wait_for(both, 90, "two lazop orders")
    assert fetched["state"] == "fetched" and fetched["items"], fetched
    assert len(fetched["items"]) == fetched["items_count"]
    assert (missing["state"], missing["error_code"]) == ("failed", "16")


def test_tokens_that_expire_mid_removal_are_refreshed_and_no_sku_fails(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    skus = [f"EXP-{n:05d}" for n in range(3000)]
    # Slow enough that most of the job is still to come when the tokens expire.
    at.sandbox.config.latency = 0.3
    at.start_worker()
    at.send("lazada.remove_products", skus, key="th-expiring")
    wait_for(lambda: (at.job("th-expiring") or {}).get("removed", 0) > 300, 60, "a start")
    at.sandbox.expire_access_tokens(SELLER)
    assert at.job("th-expiring")["state"] != "done"  # expired mid-run, as meant
    job = at.finished("th-expiring")

    assert (job["removed"], job["failed"]) == (3000, 0)
    assert set(at.sandbox.removal_counts(SELLER)) == set(skus)
    paths = [call.action for call in at.calls()]
    assert "/auth/token/refresh" in paths


def test_a_revoked_authorization_parks_the_work_which_resumes_after_authorize(
    platform_stack: PlatformStack,
) -> None:
    at = platform_stack
    skus = [f"REV-{n:05d}" for n in range(2000)]
    at.sandbox.config.latency = 0.05
    at.start_worker()
    at.send("lazada.remove_products", skus, key="th-revoked")
    wait_for(lambda: (at.job("th-revoked") or {}).get("removed", 0) > 200, 60, "a start")
    at.sandbox.revoke(SELLER)

    def parked() -> bool:
        with at.stack.sessions() as session:
            return get_account(session, at.stack.settings, at.account).state == (
                "needs_authorization"
            )

    wait_for(parked, 60, "the account to need authorization")
    with at.stack.sessions() as session:
        reported = session.scalars(select(Failure).where(Failure.kind == "account")).all()
    assert [f.subject for f in reported] == [at.account]
    assert at.job("th-revoked")["failed"] == 0  # parked, not failed
    with at.stack.sessions() as session:
        told = session.scalars(
            select(Event.data).where(Event.type == "account.needs_authorization")
        ).all()
    assert [(d["name"], d["state"], d["secret"]) for d in told] == [
        (at.account, "needs_authorization", "set")
    ]

    # The operator authorizes again, as the README says; the work resumes by itself.
    code = at.sandbox.authorization_code(SELLER)
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "accounts", "authorize", at.account, "--code", code],
        env=at.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    job = at.finished("th-revoked")
    assert (job["removed"], job["failed"]) == (2000, 0)
    assert set(at.sandbox.removal_counts(SELLER)) == set(skus)
    assert max(at.sandbox.removal_counts(SELLER).values()) == 1


def test_a_refresh_answered_with_an_unreadable_pair_parks_the_work_saying_so_until_authorize(
    platform_stack: PlatformStack,
) -> None:
    # The server issues a new pair mid-removal (the access tokens expired) and answers with a
    # page that is not JSON: the pair is lost and the old refresh token is dead. The account
    # is parked saying so, nothing fails, and an operator's authorize resumes the work.
    at = platform_stack
    skus = [f"UNR-{n:05d}" for n in range(1000)]
    at.sandbox.config.latency = 0.05
    at.start_worker()
    at.send("lazada.remove_products", skus, key="th-unreadable")
    wait_for(lambda: (at.job("th-unreadable") or {}).get("removed", 0) > 100, 60, "a start")
    at.sandbox.configure({"token_answer": "not_json"})
    at.sandbox.expire_access_tokens(SELLER)

    def parked() -> bool:
        with at.stack.sessions() as session:
            return get_account(session, at.stack.settings, at.account).state == (
                "needs_authorization"
            )

    wait_for(parked, 90, "the account to need authorization")
    with at.stack.sessions() as session:
        reported = session.scalars(select(Failure).where(Failure.kind == "account")).all()
    assert len(reported) == 1
    assert "could not be read" in reported[0].message and "was lost" in reported[0].message
    assert f"accounts authorize {at.account}" in reported[0].message
    assert at.job("th-unreadable")["failed"] == 0  # parked, not failed

    at.sandbox.configure({"token_answer": ""})
    code = at.sandbox.authorization_code(SELLER)
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "accounts", "authorize", at.account, "--code", code],
        env=at.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    job = at.finished("th-unreadable")
    assert (job["removed"], job["failed"]) == (1000, 0)
    assert set(at.sandbox.removal_counts(SELLER)) == set(skus)
    assert max(at.sandbox.removal_counts(SELLER).values()) == 1
