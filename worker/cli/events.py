"""The `lazada-worker events`, `retry` and `cancel` commands (worker.outbox.events,
worker.services.job_control).

Retry and cancel change the rows here, in one transaction each, and then send what follows
(the batches to run again, the event's delivery) over the broker: a cancel has taken effect
when the command returns. The CLI's own helpers are passed in by worker.cli.main, so this module
does not import it back.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from worker.broker.dispatch import Message
from worker.inputs import InvalidInput, clean_key
from worker.settings import Settings

SettingsFactory = Callable[[], Settings]
SessionsFactory = Callable[[Settings], Any]  # a sessionmaker on an up-to-date database
PrintJson = Callable[[Any], None]
Send = Callable[..., str]  # worker.cli.main._send: (task name, args, **kwargs) -> task id
EXIT_OK = 0
ACCOUNT_HELP = "the account's name (default: the default account; `events`: every account)"


def add_event_commands(
    sub: Any,
    settings: SettingsFactory,
    sessions: SessionsFactory,
    print_json: PrintJson,
    send: Send,
) -> None:
    """Add `events` (and `events redeliver`), `retry` and `cancel` to the CLI's subparsers."""
    from worker.outbox.events import EVENT_STATES, EVENT_TYPES

    commands = _Commands(settings, sessions, print_json, send)
    help = "recorded events and their deliveries, newest first"
    p = sub.add_parser("events", help=help, description=help)
    p.set_defaults(handler=commands.list)
    p.add_argument("--account", metavar="NAME", help=ACCOUNT_HELP)
    p.add_argument("--type", choices=EVENT_TYPES, help="only events of this type")
    p.add_argument("--state", choices=EVENT_STATES, help="only events in this state")
    p.add_argument("--json", action="store_true", help="print one JSON document, nothing else")
    actions = p.add_subparsers(
        dest="events_command", metavar="ACTION", help="redeliver (none: list the events)"
    )
    r = actions.add_parser("redeliver", help="deliver an event again, to every target")
    r.set_defaults(handler=commands.redeliver)
    r.add_argument("event_id", metavar="ID", help="the event's id (evt_...)")
    r.add_argument("--account", metavar="NAME", help=ACCOUNT_HELP)

    help = "send a done removal job's failed SKUs again (the job finishes again)"
    p = sub.add_parser("retry", help=help, description=help)
    p.set_defaults(handler=commands.retry)
    p.add_argument("key", metavar="KEY", help="the job's idempotency key")
    p.add_argument("--account", metavar="NAME", help=ACCOUNT_HELP)

    help = "cancel a removal job's SKUs not yet sent (calls in flight finish)"
    p = sub.add_parser("cancel", help=help, description=help)
    p.set_defaults(handler=commands.cancel)
    p.add_argument("key", metavar="KEY", help="the job's idempotency key")
    p.add_argument("--account", metavar="NAME", help=ACCOUNT_HELP)


class _Commands:
    def __init__(
        self,
        settings: SettingsFactory,
        sessions: SessionsFactory,
        print_json: PrintJson,
        send: Send,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._print_json = print_json
        self._send = send

    def _open(self, args: argparse.Namespace, every: bool = False) -> tuple[Any, Settings, Any]:
        """(sessions, settings, account name); None for `every` command without --account."""
        from worker.accounts.store import get_account

        settings = self._settings()
        sessions = self._sessions(settings)
        if every and args.account is None:
            return sessions, settings, None
        with sessions() as session:
            return sessions, settings, get_account(session, settings, args.account).name

    def _publish(self, messages: Sequence[Message]) -> None:
        """What follows the commit, sent over the broker (the sweepers send it if this fails)."""
        from worker.outbox.events import take_recorded

        for message in [*messages, *take_recorded()]:
            self._send(message.task, list(message.args), **message.kwargs)

    def list(self, args: argparse.Namespace) -> int:
        from worker.outbox.events import list_events

        sessions, _, account = self._open(args, every=True)
        with sessions() as session:
            rows = list_events(session, account, args.type, args.state)
        if args.json:
            self._print_json(rows)
            return EXIT_OK
        if not rows:
            whose = "any account" if account is None else f"account {account!r}"
            print(f"no events recorded for {whose}")
            return EXIT_OK
        from worker.cli.terminal import print_table

        print_table(
            ["id", "type", "account", "at", "state", "deliveries"],
            [
                [e["id"], e["type"], e["account"], e["at"][:19], e["state"], _deliveries(e)]
                for e in rows
            ],
        )
        return EXIT_OK

    def redeliver(self, args: argparse.Namespace) -> int:
        from worker.db.engine import core_transaction
        from worker.outbox.events import deliver_message, redeliver

        sessions, _, account = self._open(args, every=True)
        with core_transaction(sessions) as connection:
            found = redeliver(connection, args.event_id, account)
        if not found:
            raise InvalidInput(f"no event {args.event_id!r} (see `lazada-worker events`)")
        self._publish([deliver_message(args.event_id)])
        print(f"event {args.event_id} is pending again: it goes to every target")
        return EXIT_OK

    def retry(self, args: argparse.Namespace) -> int:
        from worker.accounts.store import get_account
        from worker.services import job_control, removal

        key = _key(args.key)
        sessions, settings, account = self._open(args)
        with sessions() as session:
            rate = get_account(session, settings, account).rate_limit
        outcome = job_control.retry(sessions, settings, account, key, removal.runners_for(rate))
        self._publish(outcome.messages)
        if outcome.changed:
            print(f"job {key}: {outcome.changed} failed SKUs are sent again")
        elif outcome.done:
            print(f"job {key}: no failed SKUs; nothing to retry")
        else:
            print(f"job {key} is not done yet; nothing to retry")
        return EXIT_OK

    def cancel(self, args: argparse.Namespace) -> int:
        from worker.services import job_control

        key = _key(args.key)
        sessions, _, account = self._open(args)
        outcome = job_control.cancel(sessions, account, key)
        self._publish(outcome.messages)
        state = "done" if outcome.done else "done once the calls in flight are recorded"
        print(f"job {key}: {outcome.changed} SKUs cancelled; the job is {state}")
        return EXIT_OK


def _key(value: str) -> str:
    key = clean_key(value)
    assert key is not None  # a positional argument is never None
    return key


def _deliveries(event: dict[str, Any]) -> str:
    parts = [
        f"{d['target']} {d['state']} x{d['attempts']}"
        + (f" ({d['last_status']})" if d["last_status"] else "")
        for d in event["deliveries"]
    ]
    return "; ".join(parts) or "-"
