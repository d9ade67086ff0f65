"""The `lazada-worker` command line: the parser of every command, and `main`, which runs one.

Each command group's handlers live in a module of their own (jobs, orders, images, failures,
config, database, run, sandboxes, accounts, events); what they share is in connections (the
settings, the database, the account, the broker), output (JSON, text, waiting with progress)
and exits (the exit statuses).
Exit status: 0 done, 1 the work or a service failed, 2 bad input (one line that says what).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from worker.cli import events, images, jobs, orders
from worker.cli.accounts import add_accounts_commands
from worker.cli.config import cmd_config
from worker.cli.database import cmd_db_upgrade
from worker.cli.demo import run_demo
from worker.cli.events import add_event_commands
from worker.cli.exits import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    CommandFailed,
)
from worker.cli.failures import cmd_failures
from worker.cli.order_sync import add_order_sync_commands
from worker.cli.run import QUEUE_CHOICES, cmd_run
from worker.cli.sandboxes import cmd_sandbox
from worker.cli.secrets import add_secrets_commands
from worker.cli.web import add_web_command
from worker.inputs import IMAGE_ACTIONS, InvalidInput
from worker.sandbox.lazop import config as lazop_config
from worker.sandbox.sellercenter import add_arguments as add_sandbox_arguments
from worker.settings import SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a reader that closes standard output early (`| head`) ends it quietly."""
    # A stored value that no encoding can write (a lone surrogate) is shown escaped, which in
    # a JSON document is the same string, instead of ending the document half-way.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not as a traceback at exit
    except BrokenPipeError:
        # Python's recipe (the signal module's docs): point standard output at devnull so that
        # the interpreter's own flush at exit cannot fail a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except (InvalidInput, SettingsError) as exc:
        print(f"lazada-worker: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except CommandFailed as exc:
        print(f"lazada-worker: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def cmd_demo(args: argparse.Namespace) -> int:
    """`demo`: the main job on embedded defaults against the sandboxes (worker.cli.demo)."""
    return run_demo(concurrency=args.concurrency, timeout=args.timeout)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) like every other bad input."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


ACCOUNT_HELP = (
    "the account's name (default: LAZADA_DEFAULT_ACCOUNT, else the environment's account, "
    "else the one stored account; see `accounts list`)"
)
JSON_HELP = "print one JSON document on standard output (the contract's), nothing else there"
WAIT_HELP = (
    "return when the work is final: progress on standard error (a bar on a terminal, a line "
    "every few seconds elsewhere), then the outcome; exit 1 if any of it failed"
)


def _parser() -> argparse.ArgumentParser:
    """Every command, in the order `lazada-worker --help` lists them."""
    parser = _Parser(
        prog="lazada-worker",
        description="Background worker for Lazada's Seller Center API.",
    )
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        parser_class=_Parser,
        help="what to do (COMMAND --help for its options)",
    )

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help: str, account: bool = False
    ) -> Any:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        if account:
            p.add_argument("--account", metavar="NAME", help=ACCOUNT_HELP)
        return p

    p = command("demo", cmd_demo, "the main job on embedded defaults against the sandbox")
    p.add_argument(
        "--concurrency", type=int, default=8, help="the demo worker's API calls in flight"
    )
    p.add_argument("--timeout", type=float, default=180.0, help="give up after this many s")

    p = command("sandbox", cmd_sandbox, "a local sandbox of either platform's API")
    p.add_argument(
        "--platform",
        choices=("sellercenter", "lazop"),
        default="sellercenter",
        help="the legacy Seller Center (default) or the Lazada Open Platform",
    )
    add_sandbox_arguments(p)
    lazop_config.add_arguments(p)

    p = command("run", cmd_run, "a worker with beat embedded, for a single machine")
    p.add_argument("--concurrency", type=int, default=16, help="API calls in flight")
    p.add_argument(
        "--loglevel",
        default=os.environ.get("LAZADA_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (default: LAZADA_LOG_LEVEL, else INFO)",
    )
    p.add_argument(
        "--only",
        choices=QUEUE_CHOICES,
        default="all",
        help="serve only the main queue (with beat), only the image jobs' polls, or only the "
        "event deliveries; run one of each to keep polls off the bulk work's threads "
        "(default: all; all and work start an events worker beside them)",
    )
    p.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # the events worker's

    p = sub.add_parser("db", help="the results database")
    db = p.add_subparsers(
        dest="db_command", required=True, metavar="DB_COMMAND", help="what to do to it"
    )
    up = db.add_parser("upgrade", help="apply the Alembic migrations")
    up.set_defaults(handler=cmd_db_upgrade)

    p = command("remove-products", jobs.cmd_remove_products, "enqueue a removal job", account=True)
    p.add_argument("skus", nargs="*", metavar="SKU", help="SellerSkus to remove")
    p.add_argument("--file", metavar="PATH", help="SKUs one a line; - for standard input")
    p.add_argument(
        "--key", help="idempotency key: the same key never removes twice (default: the task id)"
    )
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)

    p = command("fetch-order", orders.cmd_fetch_order, "enqueue order fetches", account=True)
    p.add_argument("order_ids", nargs="+", metavar="ORDER_ID", help="Seller Center order ids")
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)

    p = command(
        "migrate-images", images.cmd_migrate_images, "enqueue an image migration", account=True
    )
    p.add_argument("urls", nargs="+", metavar="URL", help="http(s) URLs of the images")
    p.add_argument(
        "--key", help="idempotency key, to list its jobs with image-jobs --key (default: new)"
    )
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)

    p = command(
        "track-images",
        images.cmd_track_images,
        "enqueue tracking of existing image jobs",
        account=True,
    )
    p.add_argument(
        "request_ids", nargs="+", metavar="REQUEST_ID", help="RequestIds the API returned"
    )
    p.add_argument(
        "--action",
        default="MigrateImages",
        choices=IMAGE_ACTIONS,
        help="the action that started the jobs (default: MigrateImages)",
    )
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)

    for name, handler, arg, help, arg_help in (
        ("status", jobs.cmd_status, "key", "a removal job", "the job's idempotency key"),
        ("order", orders.cmd_order, "order_id", "a stored order", "the order's id"),
        ("image-job", images.cmd_image_job, "request_id", "an image job", "the job's RequestId"),
    ):
        p = command(name, handler, help, account=True)
        p.add_argument(arg, metavar=arg.upper(), help=arg_help)
        p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = sub.add_parser(
        "jobs", help="removal jobs, newest first", description="removal jobs, newest first"
    )
    p.set_defaults(handler=jobs.cmd_jobs)
    p.add_argument(
        "--account", metavar="NAME", help="only this account's jobs (default: every account's)"
    )
    p.add_argument("--state", choices=jobs.JOB_STATES, help="only the jobs in this state")
    p.add_argument(
        "--limit",
        type=int,
        default=jobs.DEFAULT_LIMIT,
        help=f"at most N, the newest (default {jobs.DEFAULT_LIMIT}; 0 for all)",
    )
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = command("image-jobs", images.cmd_image_jobs, "image jobs, newest first", account=True)
    p.add_argument("--key", help="only the jobs that the migration with this key started")
    p.add_argument("--state", choices=images.IMAGE_STATES, help="only the jobs in this state")
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = command("failures", cmd_failures, "recorded failures, newest first", account=True)
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = command("config", cmd_config, "every effective setting and where it came from")
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    add_order_sync_commands(sub, ACCOUNT_HELP, JSON_HELP, WAIT_HELP)
    add_accounts_commands(sub)
    add_secrets_commands(sub)
    add_event_commands(sub)
    add_web_command(sub)

    for name, handler, help in (
        (
            "retry",
            jobs.cmd_retry,
            "send a done removal job's failed SKUs again (the job finishes again)",
        ),
        (
            "cancel",
            jobs.cmd_cancel,
            "cancel a removal job's SKUs not yet sent (calls in flight finish)",
        ),
    ):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        p.add_argument("key", metavar="KEY", help="the job's idempotency key")
        p.add_argument("--account", metavar="NAME", help=events.ACCOUNT_HELP)
    return parser
