"""`lazada-worker sync-orders` and `orders` with a real worker, and the sync's fields in
`accounts show`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.cli.command_line import Cli, assert_bad_input, is_iso_with_offset, json_document
from tests.support.processes import WorkerProcess
from worker.sandbox.sellercenter import Sandbox


@pytest.mark.slow
def test_sync_orders_wait_reports_the_new_orders_and_orders_lists_them(
    cli: Cli, worker: WorkerProcess, sandbox: Sandbox
) -> None:
    given = datetime.now(UTC)
    added = sandbox.add_orders(5, ago=120)

    result = json_document(cli("sync-orders", "--wait", "--json", timeout=180))

    assert set(result) == {"account", "new", "changed", "orders_synced_through"}
    assert result["account"] == sandbox.user_id
    assert result["new"] >= len(added)
    assert datetime.fromisoformat(result["orders_synced_through"]) >= given
    listed = json_document(cli("orders", "--json", "--limit", "0"))
    assert set(added) <= {order["order_id"] for order in listed}
    moments = [datetime.fromisoformat(order["updated_at"]) for order in listed]
    assert moments == sorted(moments, reverse=True)
    pending = json_document(cli("orders", "--json", "--status", "pending", "--limit", "0"))
    assert pending and all("pending" in order["statuses"] for order in pending)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert json_document(cli("orders", "--json", "--updated-since", later)) == []
    assert len(json_document(cli("orders", "--json", "--limit", "2"))) == 2
    account = json_document(cli("accounts", "show", sandbox.user_id, "--json"))
    assert account["orders_synced_through"] == result["orders_synced_through"]
    assert is_iso_with_offset(account["orders_synced_at"])


def test_orders_refuses_a_time_without_an_offset(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("orders", "--updated-since", "2026-12-01T00:00:00"))
    assert "--updated-since" in line


def test_an_account_never_synced_shows_null_sync_fields(cli: Cli, sandbox: Sandbox) -> None:
    account = json_document(cli("accounts", "show", sandbox.user_id, "--json"))
    assert account["orders_synced_through"] is None and account["orders_synced_at"] is None
