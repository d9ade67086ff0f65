"""`lazada-worker events` and `events redeliver`: recorded events and their deliveries
(worker.outbox.events).

A redelivery changes the event's rows in one transaction, then sends its delivery over the
broker.
"""

from __future__ import annotations

import argparse
from typing import Any

from worker.cli.connections import load_settings, open_account, open_sessions, publish
from worker.cli.exits import EXIT_OK
from worker.cli.output import print_json
from worker.cli.terminal import print_table
from worker.db.engine import core_transaction
from worker.inputs import InvalidInput
from worker.outbox.events import EVENT_STATES, EVENT_TYPES, deliver_message, list_events, redeliver

ACCOUNT_HELP = "the account's name (default: the default account; `events`: every account)"


def add_event_commands(sub: Any) -> None:
    """Add `events` (and `events redeliver`) to the CLI's subparsers."""
    help = "recorded events and their deliveries, newest first"
    p = sub.add_parser("events", help=help, description=help)
    p.set_defaults(handler=cmd_events)
    p.add_argument("--account", metavar="NAME", help=ACCOUNT_HELP)
    p.add_argument("--type", choices=EVENT_TYPES, help="only events of this type")
    p.add_argument("--state", choices=EVENT_STATES, help="only events in this state")
    p.add_argument("--json", action="store_true", help="print one JSON document, nothing else")
    actions = p.add_subparsers(
        dest="events_command", metavar="ACTION", help="redeliver (none: list the events)"
    )
    r = actions.add_parser("redeliver", help="deliver an event again, to every target")
    r.set_defaults(handler=cmd_redeliver)
    r.add_argument("event_id", metavar="ID", help="the event's id (evt_...)")
    r.add_argument("--account", metavar="NAME", help=ACCOUNT_HELP)


def cmd_events(args: argparse.Namespace) -> int:
    """`events`: the events of --account, else of every account, as JSON or a table."""
    sessions, account = _open(args)
    with sessions() as session:
        rows = list_events(session, account, args.type, args.state)
    if args.json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        whose = "any account" if account is None else f"account {account!r}"
        print(f"no events recorded for {whose}")
        return EXIT_OK
    print_table(
        ["id", "type", "account", "at", "state", "deliveries"],
        [
            [e["id"], e["type"], e["account"], e["at"][:19], e["state"], _deliveries(e)]
            for e in rows
        ],
    )
    return EXIT_OK


def cmd_redeliver(args: argparse.Namespace) -> int:
    """`events redeliver ID`: the event is pending again, for every target."""
    sessions, account = _open(args)
    with core_transaction(sessions) as connection:
        found = redeliver(connection, args.event_id, account)
    if not found:
        raise InvalidInput(f"no event {args.event_id!r} (see `lazada-worker events`)")
    publish([deliver_message(args.event_id)])
    print(f"event {args.event_id} is pending again: it goes to every target")
    return EXIT_OK


def _open(args: argparse.Namespace) -> tuple[Any, str | None]:
    """(sessions, account name); no name without --account: every account's events."""
    if args.account is None:
        return open_sessions(load_settings()), None
    sessions, _, account = open_account(args)
    return sessions, account


def _deliveries(event: dict[str, Any]) -> str:
    parts = [
        f"{d['target']} {d['state']} x{d['attempts']}"
        + (f" ({d['last_status']})" if d["last_status"] else "")
        for d in event["deliveries"]
    ]
    return "; ".join(parts) or "-"
