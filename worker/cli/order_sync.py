"""Order sync at the command line: `sync-orders` starts one (with --wait, until the account's
orders are synced through the moment it was given), `orders` lists the stored orders."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from worker.accounts.store import get_account
from worker.cli.connections import account_name, load_settings, open_sessions, send
from worker.cli.exits import EXIT_FAILED, EXIT_OK
from worker.cli.output import print_json, wait
from worker.cli.terminal import print_table
from worker.db.models import Order
from worker.inputs import InvalidInput
from worker.services import documents
from worker.services.order_sync import SYNC_TASK, sync_state

DEFAULT_LIMIT = 50


def cmd_sync_orders(args: argparse.Namespace) -> int:
    """`sync-orders`: enqueue a sync of the account and print its task id; with --wait, how
    many orders were new and changed (exit 1 if the sync failed or the account needs
    authorization)."""
    settings = load_settings()
    sessions = open_sessions(settings)
    account = account_name(args, settings, sessions)
    given = datetime.now(UTC)
    task_id = send(SYNC_TASK, [], account=account)
    if not args.wait:
        print(task_id)
        return EXIT_OK
    outcome: dict[str, Any] = {}

    def progress() -> tuple[int, int, bool]:
        with sessions() as session:
            state = sync_state(session, account)
            parked = get_account(session, settings, account).state == "needs_authorization"
        through = state["orders_synced_through"]
        done = through is not None and through >= given and not state["running"]
        failed = not state["running"] and state["error_code"] is not None and not done
        outcome.update(state, parked=parked, failed=failed)
        return int(done), 1, done or failed or parked

    wait(f"syncing the orders of {account}", progress)
    if outcome["parked"]:
        print(
            f"lazada-worker: account {account!r} needs authorization: its sync is parked until "
            f"`lazada-worker accounts authorize {account}`",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if outcome["failed"]:
        print(
            f"lazada-worker: the order sync of {account!r} failed: "
            f"{outcome['error_code']} {outcome['message']}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    through = outcome["orders_synced_through"]
    document = {
        "account": account,
        "new": outcome["new"],
        "changed": outcome["changed"],
        "orders_synced_through": through.isoformat(),
    }
    if args.json:
        print_json(document)
    else:
        print(
            f"{document['new']} new, {document['changed']} changed; the orders of {account} "
            f"are synced through {document['orders_synced_through']}"
        )
    return EXIT_OK


def cmd_orders(args: argparse.Namespace) -> int:
    """`orders`: the account's stored orders, the latest `updated_at` first."""
    since = _since(args.updated_since)
    if args.limit < 0:
        raise InvalidInput(f"--limit must be 0 (all) or more, got {args.limit}")
    settings = load_settings()
    sessions = open_sessions(settings)
    account = account_name(args, settings, sessions)
    query = select(Order).where(Order.account == account, Order.state == "fetched")
    if since is not None:
        query = query.where(Order.order_updated_at >= since)
    query = query.order_by(Order.order_updated_at.desc(), Order.order_id.desc())
    found: list[dict[str, Any]] = []
    with sessions() as session:
        for row in session.scalars(query.execution_options(yield_per=500)):
            if args.status is not None and args.status not in (row.statuses or []):
                continue
            found.append(documents.order_document(row))
            if args.limit and len(found) >= args.limit:
                break
    if args.json:
        print_json(found)
        return EXIT_OK
    print_table(
        ["order", "number", "statuses", "updated_at", "price"],
        [
            [o["order_id"], o["order_number"], ",".join(o["statuses"]), o["updated_at"], o["price"]]
            for o in found
        ],
    )
    print(f"{len(found)} order(s)", file=sys.stderr)
    return EXIT_OK


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidInput(
            f"--updated-since must be an ISO 8601 time with an offset "
            f"(e.g. 2026-12-01T00:00:00+00:00), got {text!r}"
        )
    return moment


def add_order_sync_commands(sub: Any, account_help: str, json_help: str, wait_help: str) -> None:
    p = sub.add_parser(
        "sync-orders",
        help="start an order sync of the account",
        description="start an order sync of the account (or one to follow the running one)",
    )
    p.set_defaults(handler=cmd_sync_orders)
    p.add_argument("--account", metavar="NAME", help=account_help)
    p.add_argument("--wait", action="store_true", help=wait_help)
    p.add_argument("--json", action="store_true", help=json_help)
    p = sub.add_parser(
        "orders",
        help="stored orders, the latest updated first",
        description="stored orders, the latest updated first",
    )
    p.set_defaults(handler=cmd_orders)
    p.add_argument("--account", metavar="NAME", help=account_help)
    p.add_argument("--status", metavar="S", help="only orders whose statuses include S")
    p.add_argument(
        "--updated-since", metavar="ISO", help="only orders updated at or after it (with offset)"
    )
    p.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help="at most N (default 50; 0 for all)"
    )
    p.add_argument("--json", action="store_true", help=json_help)
