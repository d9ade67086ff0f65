"""`lazada-worker failures`: the failures recorded for an account, newest first."""

from __future__ import annotations

import argparse

from worker.cli.connections import account_name, load_settings, open_sessions
from worker.cli.exits import EXIT_OK
from worker.cli.output import error_text, print_json, seconds
from worker.cli.terminal import print_table
from worker.services import documents


def cmd_failures(args: argparse.Namespace) -> int:
    """`failures`: as JSON, or a table with each error in its one spelling."""
    settings = load_settings()
    sessions = open_sessions(settings)
    account = account_name(args, settings, sessions)
    with sessions() as session:
        rows = documents.failures(session, account)
    if args.json:
        print_json(rows)
    elif rows:
        print_table(
            ["at", "kind", "subject", "error", "attempts"],
            [
                [seconds(f["at"]), f["kind"], f["subject"], error_text(f), f["attempts"]]
                for f in rows
            ],
        )
    else:
        # Failures are per account: say whose, so an empty answer is not mistaken for none.
        print(f"no failures recorded for account {account!r}")
    return EXIT_OK
