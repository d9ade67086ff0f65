"""Orders: `fetch-order` enqueues fetches (with --wait, shows how each ended), `order` shows a
stored one."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from worker.cli.connections import account_name, load_settings, open_sessions, send
from worker.cli.exits import EXIT_FAILED, EXIT_OK
from worker.cli.output import error_text, show, wait
from worker.cli.terminal import print_table
from worker.db.models import Order
from worker.inputs import clean_order_id
from worker.services import documents
from worker.services.orders import request_fetch


def cmd_fetch_order(args: argparse.Namespace) -> int:
    """`fetch-order ORDER_ID ...`: enqueue the fetches and print their task ids; with --wait,
    each order's outcome (exit 1 if a fetch failed)."""
    order_ids = list(dict.fromkeys(clean_order_id(value) for value in args.order_ids))
    settings = load_settings()
    sessions = open_sessions(settings) if args.wait else None
    account = account_name(args, settings, sessions)
    started = datetime.now(UTC)
    if sessions is not None:
        # Mark the orders due before sending: a stored order then counts as final only once
        # this fetch has stored it again, not as soon as a worker claims it.
        request_fetch(sessions, settings, account, order_ids)
    for order_id in order_ids:
        print(send("lazada.fetch_order", [order_id], account=account))
    if sessions is None:
        return EXIT_OK

    def progress() -> tuple[int, int, bool]:
        with sessions() as session:
            rows = session.execute(
                select(Order.updated_at, Order.next_attempt_at).where(
                    Order.account == account, Order.order_id.in_(order_ids)
                )
            ).all()
        final = sum(1 for updated, due in rows if updated >= started and due is None)
        return final, len(order_ids), final == len(order_ids)

    wait(f"fetching {len(order_ids)} orders", progress)
    with sessions() as session:
        found = [documents.order(session, account, o) for o in order_ids]
    fetched = [o for o in found if o is not None]
    # A fetch that failed leaves its error on the row; an order fetched before keeps its data.
    failed = [o for o in fetched if o["state"] == "failed" or o["message"] is not None]
    print_table(
        ["order", "state", "status", "GetOrder calls", "error"],
        [_order_outcome(o) for o in fetched],
        stream=sys.stderr,
    )
    print(f"{len(fetched) - len(failed)} fetched, {len(failed)} failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _order_outcome(order: dict[str, Any]) -> list[Any]:
    if order["state"] == "fetched":
        state = "fetched" if order["message"] is None else "fetched earlier; this fetch failed"
        status = documents.order_status_text(order)
    else:
        state, status = order["state"], ""
    label = str(order["order_id"])
    if order["order_number"]:
        label += f" (#{order['order_number']})"
    return [label, state, status, order["attempts"], error_text(order)]


def cmd_order(args: argparse.Namespace) -> int:
    """`order ORDER_ID`: a stored order, as JSON or as a line of text."""
    order_id = clean_order_id(args.order_id)
    settings = load_settings()
    sessions = open_sessions(settings)
    account = account_name(args, settings, sessions)
    with sessions() as session:
        order = documents.order(session, account, order_id)

    def text(o: dict[str, Any]) -> str:
        if o["state"] != "fetched":
            return f"order {o['order_id']}: {o['state']} {error_text(o)}".rstrip()
        lines = [
            f"order {o['order_id']} (#{o['order_number']}): {documents.order_status_text(o)}; "
            f"{o['customer_first_name']} {o['customer_last_name']}; {o['price']} "
            f"by {o['payment_method']}; {o['items_count']} items; fetched {o['fetched_at']} "
            f"({o['attempts']} GetOrder call(s))"
        ]
        if o["message"] is not None:
            lines.append(f"  the last fetch failed: {error_text(o)}")
        return "\n".join(lines)

    return show(args, order, f"no stored order {order_id}", text)
