"""`lazada-worker fetch-order --wait` with a real worker: each order's outcome, the exit status,
and the order that `order --json` then shows."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.cli.command_line import Cli, is_iso_with_offset, json_document
from tests.support.processes import WorkerProcess, wait_for
from worker.sandbox.sellercenter import Sandbox


@pytest.mark.slow
def test_fetch_order_wait_prints_each_orders_state_and_status_and_exits_1_if_one_failed(
    cli: Cli, worker: WorkerProcess
) -> None:
    result = cli("fetch-order", "190", "1003", "900000001", "--wait", timeout=120)

    assert result.returncode == 1, result.stderr
    assert len(result.stdout.splitlines()) == 3  # the task ids, as without --wait
    lines = result.stderr.splitlines()
    assert any(line.startswith("fetching 3 orders: 3/3") for line in lines), lines
    header = "order\tstate\tstatus\tGetOrder calls\terror"
    rows = {row.split("\t")[0]: row.split("\t")[1:] for row in lines[lines.index(header) + 1 :]}
    sample = rows["190 (#300125759)"]
    assert sample[0] == "fetched" and sample[3] == ""
    assert sample[1].startswith("items in 11 statuses: shipped, returned,")
    assert sample[1].endswith("(open)")
    [other] = [row for label, row in rows.items() if label.startswith("1003 (#")]
    assert other[0] == "fetched" and re.fullmatch(r"status \w+ \((open|final)\)", other[1])
    assert rows["900000001"] == ["failed", "", "1", 'E016 "900000001" Invalid Order ID']
    assert "2 fetched, 1 failed" in lines


@pytest.mark.slow
def test_a_fetched_orders_attempts_count_the_getorder_calls_of_its_fetch(
    cli: Cli, sandbox: Sandbox
) -> None:
    def get_orders() -> int:
        return sum(1 for call in sandbox.calls() if call.action == "GetOrder")

    env = {**cli.env, "LAZADA_RETRY_LADDER": "0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3"}
    worker = WorkerProcess(env, cli.folder / "worker.log").start()
    try:
        sandbox.config.fault_kinds = ("e006",)
        sandbox.config.fault_rate = 1.0  # transient errors until two calls have failed
        fetch = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "fetch-order", "190", "--wait"],
            env=env,
            cwd=cli.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: get_orders() >= 2, what="two failed GetOrder calls")
        sandbox.config.fault_rate = 0.0
        assert fetch.wait(timeout=120) == 0

        first = json_document(cli("order", "190", "--json"))
        assert (first["state"], first["message"]) == ("fetched", None)
        assert first["attempts"] == get_orders() >= 3

        again = cli("fetch-order", "190", "--wait", timeout=120)  # a new fetch counts anew
        assert again.returncode == 0, again.stderr
        assert json_document(cli("order", "190", "--json"))["attempts"] == 1
    finally:
        worker.stop()
        print(worker.log()[-20000:])


@pytest.mark.slow
def test_fetch_order_wait_stores_the_order_that_order_json_shows(
    cli: Cli, worker: WorkerProcess
) -> None:
    result = cli("fetch-order", "190", "--wait", timeout=120)

    assert result.returncode == 0, result.stderr
    order = json_document(cli("order", "190", "--json"))
    assert (order["order_id"], order["state"]) == (190, "fetched")
    assert order["order_number"] == "300125759"
    assert order["price"] == "100.00"
    assert order["gift_option"] is False
    assert isinstance(order["statuses"], list) and "shipped" in order["statuses"]
    billing = order["address_billing"]
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in billing), billing
    assert (billing["post_code"], billing["first_name"]) == ("33333", "First Name 3 Test")
    assert is_iso_with_offset(order["fetched_at"]) and is_iso_with_offset(order["created_at"])


@pytest.mark.slow
def test_fetch_order_wait_on_a_stored_order_returns_once_it_is_stored_again(
    cli: Cli, worker: WorkerProcess, sandbox: Sandbox
) -> None:
    first = cli("fetch-order", "190", "--wait", timeout=120)
    assert first.returncode == 0, first.stderr
    fetched_before = json_document(cli("order", "190", "--json"))["fetched_at"]
    sandbox.config.latency = 2.0  # the new fetch is still in flight when a worker claims it

    second = cli("fetch-order", "190", "--wait", timeout=120)

    assert second.returncode == 0, second.stderr
    order = json_document(cli("order", "190", "--json"))
    assert order["fetched_at"] > fetched_before
