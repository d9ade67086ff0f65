"""`lazada-worker secrets rotate`: stored secrets encrypted again with the first key."""

from __future__ import annotations

import argparse
from typing import Any

from worker.accounts import store
from worker.cli.connections import load_settings, open_sessions
from worker.cli.exits import EXIT_OK


def add_secrets_commands(sub: Any) -> None:
    """Add `secrets` and its subcommands to the CLI's subparsers."""
    parser = sub.add_parser(
        "secrets", help="stored secrets' encryption", description="stored secrets' encryption"
    )
    secrets = parser.add_subparsers(
        dest="secrets_command", required=True, metavar="ACTION", help="what to do"
    )
    p = secrets.add_parser(
        "rotate",
        help="encrypt every stored secret again with the first key of LAZADA_SECRET_KEY",
        description=(
            "Encrypt every stored secret (API keys, app secrets, tokens) again with the first "
            "key of LAZADA_SECRET_KEY; afterwards the keys after it can be removed."
        ),
    )
    p.set_defaults(handler=cmd_rotate)


def cmd_rotate(args: argparse.Namespace) -> int:
    settings = load_settings()
    with open_sessions(settings).begin() as session:
        rotated = store.rotate_secrets(session, settings)
    print(
        f"{rotated} stored secret(s) encrypted with the first key; the keys after it can now "
        "be removed from LAZADA_SECRET_KEY"
    )
    return EXIT_OK
