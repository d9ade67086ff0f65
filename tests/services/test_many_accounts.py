"""Many accounts on one worker: each row's calls go to its own account's API, signed with its
own key; an unknown account is bad input; no stored secret is ever in clear.

Real worker processes on each stack, two sandboxes with different UserIDs and keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from tests.support.processes import wait_for
from tests.support.worker_stack import Stack, add_sellercenter_account
from worker.db.models import Failure
from worker.sandbox.sellercenter import Sandbox, SandboxConfig
from worker.services import documents

pytestmark = pytest.mark.slow

SECOND_KEY = "second-sandbox-key-0f3a9c"


@pytest.fixture
def second_sandbox() -> Iterator[Sandbox]:
    server = Sandbox(
        SandboxConfig(user_id="second@lazada-worker.test", api_key=SECOND_KEY), port=0
    ).start()
    try:
        yield server
    finally:
        server.stop()


def _done(stack: Stack, account: str, key: str) -> dict:
    def done() -> dict | None:
        with stack.sessions() as session:
            job = documents.removal_job(session, account, key)
        return job if job and job["state"] == "done" else None

    try:
        return wait_for(done, 120, f"job {key} of {account}")
    except AssertionError:
        print(stack.logs())
        raise


def test_two_accounts_remove_under_the_same_key_each_at_its_own_api(
    stack: Stack, second_sandbox: Sandbox
) -> None:
    add_sellercenter_account(stack, stack.sandbox, "shop-sg")
    add_sellercenter_account(stack, second_sandbox, "shop-my")
    first = [f"SG-{n:04d}" for n in range(120)] + ["SG-BAD-FAIL"]
    second = [f"MY-{n:04d}" for n in range(130)]
    stack.start_worker()

    stack.send("lazada.remove_products", first, key="spring", account="shop-sg")
    stack.send("lazada.remove_products", second, key="spring", account="shop-my")
    sg, my = _done(stack, "shop-sg", "spring"), _done(stack, "shop-my", "spring")

    assert (sg["removed"], sg["failed"], my["removed"], my["failed"]) == (120, 1, 130, 0)
    # Each call reached its own account's sandbox, signed with that account's key: a call
    # signed with the other key would have been refused there (E007) and failed its SKUs.
    assert set(stack.sandbox.removal_counts()) == set(first[:-1])
    assert set(second_sandbox.removal_counts()) == set(second)
    for sandbox in (stack.sandbox, second_sandbox):
        assert all(call.error_code != 7 for call in sandbox.calls())
        assert {call.params["UserID"] for call in sandbox.calls()} == {sandbox.user_id}


def test_work_for_an_unknown_account_fails_as_bad_input_and_records_nothing_else(
    stack: Stack,
) -> None:
    stack.start_worker()
    stack.send("lazada.remove_products", ["U-1"], key="nobody", account="no-such-shop")
    stack.send("lazada.fetch_order", 190, account="no-such-shop")

    def failures() -> list[Failure] | None:
        with stack.sessions() as session:
            rows = list(session.scalars(select(Failure)))
        return rows if len(rows) == 2 else None

    rows = wait_for(failures, 60, "two bad_input failures")
    assert {row.kind for row in rows} == {"bad_input"}
    assert all("no-such-shop" in row.message for row in rows)
    assert stack.sandbox.calls() == []
    with stack.sessions() as session:
        assert documents.removal_job(session, "no-such-shop", "nobody") is None


def test_a_stored_accounts_key_is_in_no_table_and_no_log_in_clear(
    stack: Stack, second_sandbox: Sandbox, tmp_path: Path
) -> None:
    add_sellercenter_account(stack, second_sandbox, "shop-my")
    stack.start_worker()
    stack.send("lazada.remove_products", ["K-1", "K-2-FAIL"], key="secret", account="shop-my")
    stack.send("lazada.fetch_order", 190, account="shop-my")
    _done(stack, "shop-my", "secret")
    wait_for(lambda: _order_fetched(stack), 60, "order 190 of shop-my")

    assert SECOND_KEY not in stack.logs()
    with stack.sessions() as session:
        for table in (
            "accounts",
            "removal_jobs",
            "removal_batches",
            "removal_skus",
            "orders",
            "failures",
            "api_calls",
        ):
            dump = session.execute(text(f"SELECT * FROM {table}")).all()
            assert SECOND_KEY not in repr(dump), table
    if stack.settings.database_url.startswith("sqlite"):
        database = Path(stack.settings.database_url.removeprefix("sqlite:///"))
        for path in database.parent.glob(database.name + "*"):
            if path.is_file():
                assert SECOND_KEY.encode() not in path.read_bytes(), path.name


def _order_fetched(stack: Stack) -> bool:
    with stack.sessions() as session:
        order = documents.order(session, "shop-my", 190)
    return order is not None and order["state"] == "fetched"
