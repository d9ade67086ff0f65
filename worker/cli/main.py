"""The `lazada-worker` command line.

Exit status: 0 done, 1 the work or a service failed, 2 bad input (one line that says what).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from worker.cli.events import add_event_commands
from worker.cli.run import QUEUE_CHOICES
from worker.inputs import (
    IMAGE_ACTIONS,
    InvalidInput,
    clean_key,
    clean_order_id,
    clean_request_id,
    clean_skus,
    clean_urls,
    read_sku_file,
)
from worker.settings import Settings, SettingsError, mask_url

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
IMAGE_STATES = ("pending", "succeeded", "partial", "failed", "expired", "rejected")


class CommandFailed(RuntimeError):
    """The work or a service failed (exit 1); the message is shown as one line."""


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
        return 130


# --- helpers shared by the commands -------------------------------------------------------


def _settings() -> Settings:
    return Settings.from_env()


def _sessions(settings: Settings) -> Any:
    """A sessionmaker on an up-to-date database; bad URLs and unreachable servers exit 2."""
    from sqlalchemy.orm import sessionmaker

    from worker.db.engine import get_engine
    from worker.db.schema import DatabaseUnavailable, ensure_schema

    try:
        ensure_schema(settings.database_url)
    except DatabaseUnavailable as exc:
        raise SettingsError(f"{exc} (check DATABASE_URL)") from None
    return sessionmaker(get_engine(settings.database_url), expire_on_commit=False)


def _account(args: argparse.Namespace, settings: Settings, sessions: Any = None) -> str:
    """The name of the account a command works for: --account, else the default account; an
    unknown name is bad input (exit 2). The environment's account needs no database, so an
    enqueue for it without --wait opens none (the broker may be all that is reachable)."""
    from worker.accounts.store import environment_account, get_account

    environment = environment_account(settings)
    if (
        environment is not None
        and settings.default_account is None
        and args.account in (None, environment.name)
    ):
        return environment.name
    with (sessions or _sessions(settings))() as session:
        return get_account(session, settings, args.account).name


def _send(name: str, args: Sequence[Any], task_id: str | None = None, **kwargs: Any) -> str:
    """Enqueue a task by name over the configured broker; returns its id."""
    from kombu.exceptions import OperationalError

    from worker.celery_app import app

    task_id = task_id or str(uuid.uuid4())
    try:
        app.send_task(
            name,
            args=list(args),
            kwargs=kwargs,
            task_id=task_id,
            retry_policy={"max_retries": 2, "interval_start": 0.5, "interval_step": 1},
        )
    except OperationalError as exc:
        # Not always unreachable (a full disk under the embedded broker): the broker's own
        # words say what failed.
        raise CommandFailed(
            f"the broker {app.conf.broker_url.split('@')[-1]} did not take the task: {exc}"
        ) from None
    return task_id


def _print_json(document: Any) -> None:
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def _wait(
    describe: str,
    progress: Callable[[], tuple[int, int, bool]],
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll the database until the work is final, showing progress on standard error: a bar
    on a terminal, a line every few seconds elsewhere (worker.cli.terminal)."""
    from worker.cli.terminal import WaitProgress

    started = clock()
    with WaitProgress(describe, clock=clock) as shown:
        while True:
            done, total, final = progress()
            shown.update(done, total, final)
            if final:
                return
            if timeout is not None and clock() - started > timeout:
                raise CommandFailed(f"{describe}: not final after {timeout:.0f}s")
            sleep(0.5)


# --- enqueue commands ---------------------------------------------------------------------


def cmd_remove_products(args: argparse.Namespace) -> int:
    raw = list(args.skus)
    if args.file:
        raw += read_sku_file(args.file)
    skus = clean_skus(raw)
    key = clean_key(args.key) if args.key is not None else None
    settings = _settings()
    # A key is checked against the database before sending (another set under it is refused).
    sessions = _sessions(settings) if args.wait or key is not None else None
    account = _account(args, settings, sessions)
    # The same set under a recorded key: the job is there, nothing to send.
    if key is None or sessions is None or not _key_recorded(sessions, account, key, skus):
        task_id = _send("lazada.remove_products", [skus], key=key, account=account)
        key = key or task_id
    print(key)
    if args.wait and sessions is not None:
        from worker.services import documents

        def progress() -> tuple[int, int, bool]:
            with sessions() as session:
                state = documents.removal_progress(session, account, key)
            return state or (0, len(skus), False)

        _wait(f"removing {len(skus)} SKUs", progress)
        with sessions() as session:
            job = documents.removal_job(session, account, key)
        assert job is not None
        print(
            f"removed {job['removed']}, failed {job['failed']} of {job['total']}", file=sys.stderr
        )
        failed = [sku for sku in job["skus"] if sku["state"] == "failed"]
        for reason, count in documents.failure_reasons(failed):
            print(f"  {count} failed: {reason}", file=sys.stderr)
        return EXIT_FAILED if job["failed"] else EXIT_OK
    return EXIT_OK


def _key_recorded(sessions: Any, account: str, key: str, skus: list[str]) -> bool:
    """True if the key's job holds these SKUs; a job of another set is bad input (exit 2)."""
    from worker.db.engine import core_transaction
    from worker.services.job_keys import check_key

    with core_transaction(sessions) as connection:
        return check_key(connection, account, key, skus)


def cmd_fetch_order(args: argparse.Namespace) -> int:
    order_ids = list(dict.fromkeys(clean_order_id(value) for value in args.order_ids))
    settings = _settings()
    sessions = _sessions(settings) if args.wait else None
    account = _account(args, settings, sessions)
    started = _now()
    if sessions is not None:
        from worker.services import orders

        # Mark the orders due before sending: a stored order then counts as final only once
        # this fetch has stored it again, not as soon as a worker claims it.
        orders.request_fetch(sessions, settings, account, order_ids)
    for order_id in order_ids:
        print(_send("lazada.fetch_order", [order_id], account=account))
    if sessions is None:
        return EXIT_OK
    from sqlalchemy import select

    from worker.db.models import Order

    def progress() -> tuple[int, int, bool]:
        with sessions() as session:
            rows = session.execute(
                select(Order.updated_at, Order.next_attempt_at).where(
                    Order.account == account, Order.order_id.in_(order_ids)
                )
            ).all()
        final = sum(1 for updated, due in rows if updated >= started and due is None)
        return final, len(order_ids), final == len(order_ids)

    _wait(f"fetching {len(order_ids)} orders", progress)
    from worker.cli.terminal import print_table
    from worker.services import documents

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
    from worker.services import documents

    if order["state"] == "fetched":
        state = "fetched" if order["message"] is None else "fetched earlier; this fetch failed"
        status = documents.order_status_text(order)
    else:
        state, status = order["state"], ""
    label = str(order["order_id"])
    if order["order_number"]:
        label += f" (#{order['order_number']})"
    return [label, state, status, order["attempts"], _error_text(order)]


def _seconds(timestamp: str) -> str:
    """An ISO timestamp to the second, for text: the JSON documents keep it whole."""
    from datetime import datetime

    return datetime.fromisoformat(timestamp).replace(microsecond=0).isoformat()


def _error_text(document: dict[str, Any]) -> str:
    """A document's error as one text: its code in the one spelling, then the message."""
    from worker.services.documents import error_code_text

    parts = [error_code_text(document.get("error_code")), document.get("message")]
    return " ".join(str(part) for part in parts if part)


def cmd_migrate_images(args: argparse.Namespace) -> int:
    urls = clean_urls(args.urls)
    key = clean_key(args.key) if args.key is not None else None
    settings = _settings()
    sessions = _sessions(settings) if args.wait else None
    account = _account(args, settings, sessions)
    key = key or str(uuid.uuid4())
    _send("lazada.migrate_images", [urls], key=key, account=account)
    print(key)
    if sessions is None:
        return EXIT_OK
    from worker.services import documents

    expected = -(-len(urls) // 8)

    def jobs() -> list[dict[str, Any]]:
        with sessions() as session:
            return documents.image_jobs(session, account, key=key)

    return _wait_images(jobs, expected)


def cmd_track_images(args: argparse.Namespace) -> int:
    request_ids = list(dict.fromkeys(clean_request_id(value) for value in args.request_ids))
    settings = _settings()
    sessions = _sessions(settings) if args.wait else None
    account = _account(args, settings, sessions)
    for request_id in request_ids:
        _send("lazada.track_image_job", [request_id], action=args.action, account=account)
    print("\n".join(request_ids))
    if sessions is None:
        return EXIT_OK
    from worker.services import documents

    def jobs() -> list[dict[str, Any]]:
        with sessions() as session:
            found = (documents.image_job(session, account, r) for r in request_ids)
            return [job for job in found if job is not None]

    return _wait_images(jobs, len(request_ids))


def _wait_images(jobs: Callable[[], list[dict[str, Any]]], expected: int) -> int:
    """Wait for the image jobs, print their states and counts; exit 1 unless all succeeded
    (a partial job failed some images, as a removal with a failed SKU exits 1)."""
    from collections import Counter

    from worker.cli.terminal import print_table

    def progress() -> tuple[int, int, bool]:
        current = jobs()
        final = sum(1 for job in current if job["state"] != "pending")
        return final, expected, final >= expected

    _wait(f"{expected} image job(s)", progress)
    final = jobs()
    print_table(IMAGE_JOB_COLUMNS, [_image_row(job) for job in final], stream=sys.stderr)
    states = Counter(job["state"] for job in final)
    images = sum(len(job["images"]) for job in final)
    errors = sum(len(job["errors"]) for job in final)
    print(
        f"{len(final)} image job(s): "
        + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        + f"; {images} image(s) migrated, {errors} error(s)",
        file=sys.stderr,
    )
    return EXIT_OK if final and all(job["state"] == "succeeded" for job in final) else EXIT_FAILED


IMAGE_JOB_COLUMNS = ["request id", "action", "state", "images", "errors", "polls", "error"]


def _image_row(job: dict[str, Any]) -> list[Any]:
    return [
        job["request_id"] or "(not submitted)",
        job["action"],
        job["state"],
        len(job["images"]),
        len(job["errors"]),
        job["polls"],
        _error_text(job),
    ]


# --- read commands ------------------------------------------------------------------------


def _show(args: argparse.Namespace, document: Any, missing: str, text: Callable[[Any], str]) -> int:
    """The document as JSON or as text; `text` may print (tables) and return the rest."""
    if document is None:
        if args.json:
            _print_json(None)
        print(f"lazada-worker: {missing}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        _print_json(document)
    else:
        rest = text(document)
        if rest:
            print(rest)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from worker.services import documents

    key = clean_key(args.key)
    assert key is not None
    settings = _settings()
    sessions = _sessions(settings)
    account = _account(args, settings, sessions)
    with sessions() as session:
        job = documents.removal_job(session, account, key)

    def text(job: dict[str, Any]) -> str:
        from worker.cli.terminal import print_table

        failed = [s for s in job["skus"] if s["state"] == "failed"]
        lines = [
            f"job {job['key']}: {job['state']}, {job['removed']} removed, "
            f"{job['failed']} failed, {job['pending']} pending of {job['total']}"
        ]
        lines += [f"  {n} failed: {reason}" for reason, n in documents.failure_reasons(failed)]
        print("\n".join(lines))
        if failed:
            print_table(
                ["failed SKU", "error", "attempts"],
                [[s["sku"], _error_text(s), s["attempts"]] for s in failed],
            )
        return ""

    return _show(args, job, f"no removal job with key {key!r}", text)


def cmd_order(args: argparse.Namespace) -> int:
    from worker.services import documents

    order_id = clean_order_id(args.order_id)
    settings = _settings()
    sessions = _sessions(settings)
    account = _account(args, settings, sessions)
    with sessions() as session:
        order = documents.order(session, account, order_id)

    def text(o: dict[str, Any]) -> str:
        if o["state"] != "fetched":
            return f"order {o['order_id']}: {o['state']} {_error_text(o)}".rstrip()
        lines = [
            f"order {o['order_id']} (#{o['order_number']}): {documents.order_status_text(o)}; "
            f"{o['customer_first_name']} {o['customer_last_name']}; {o['price']} "
            f"by {o['payment_method']}; {o['items_count']} items; fetched {o['fetched_at']} "
            f"({o['attempts']} GetOrder call(s))"
        ]
        if o["message"] is not None:
            lines.append(f"  the last fetch failed: {_error_text(o)}")
        return "\n".join(lines)

    return _show(args, order, f"no stored order {order_id}", text)


def _image_text(job: dict[str, Any]) -> str:
    error = _error_text(job)
    return (
        f"{job['request_id'] or '(not submitted)'} {job['action']}: {job['state']}, "
        f"{len(job['images'])} image(s), {len(job['errors'])} error(s), {job['polls']} poll(s)"
        + (f"; {error}" if error else "")
    )


def cmd_image_job(args: argparse.Namespace) -> int:
    from worker.services import documents

    request_id = clean_request_id(args.request_id)
    settings = _settings()
    sessions = _sessions(settings)
    account = _account(args, settings, sessions)
    with sessions() as session:
        job = documents.image_job(session, account, request_id)
    return _show(args, job, f"no image job {request_id!r}", _image_text)


def cmd_image_jobs(args: argparse.Namespace) -> int:
    from worker.services import documents

    key = clean_key(args.key) if args.key is not None else None
    settings = _settings()
    sessions = _sessions(settings)
    account = _account(args, settings, sessions)
    with sessions() as session:
        jobs = documents.image_jobs(session, account, key=key, state=args.state)
    if args.json:
        _print_json(jobs)
    elif jobs:
        from worker.cli.terminal import print_table

        print_table(IMAGE_JOB_COLUMNS, [_image_row(job) for job in jobs])
    else:
        print("no image jobs")
    return EXIT_OK


def cmd_failures(args: argparse.Namespace) -> int:
    from worker.services import documents

    settings = _settings()
    sessions = _sessions(settings)
    account = _account(args, settings, sessions)
    with sessions() as session:
        rows = documents.failures(session, account)
    if args.json:
        _print_json(rows)
    elif rows:
        from worker.cli.terminal import print_table

        print_table(
            ["at", "kind", "subject", "error", "attempts"],
            [
                [_seconds(f["at"]), f["kind"], f["subject"], _error_text(f), f["attempts"]]
                for f in rows
            ],
        )
    else:
        # Failures are per account: say whose, so an empty answer is not mistaken for none.
        print(f"no failures recorded for account {account!r}")
    return EXIT_OK


# Each setting's environment variables, the first set one wins (a *_FILE one holds the value in
# a file); a setting not named here has no variable and is always its default. `config` shows
# every field of Settings, so a new one appears there without an edit here.
SETTING_VARIABLES: dict[str, tuple[str, ...]] = {
    "database_url": ("DATABASE_URL",),
    "broker_url": ("CELERY_BROKER_URL",),
    "api_url": ("LAZADA_API_URL",),
    "user_id": ("LAZADA_USER_ID",),
    "api_key": ("LAZADA_API_KEY", "LAZADA_API_KEY_FILE"),
    "rate_limit": ("LAZADA_RATE_LIMIT",),
    "queue": ("LAZADA_QUEUE",),
    "retry_ladder": ("LAZADA_RETRY_LADDER",),
    "poll_first": ("LAZADA_POLL_FIRST",),
    "poll_slack": ("LAZADA_POLL_SLACK",),
    "image_deadline": ("LAZADA_IMAGE_DEADLINE",),
    "lease_seconds": ("LAZADA_LEASE_SECONDS",),
    "redispatch_after": ("LAZADA_REDISPATCH_AFTER",),
    "read_timeout": ("LAZADA_READ_TIMEOUT",),
    "order_refresh_after": ("LAZADA_ORDER_REFRESH_AFTER",),
    "default_account": ("LAZADA_DEFAULT_ACCOUNT",),
    "secret_key": ("LAZADA_SECRET_KEY",),
    "secret_key_file": ("LAZADA_SECRET_KEY_FILE",),
    "callback_queue": ("LAZADA_CALLBACK_QUEUE",),
    "webhook_urls": ("LAZADA_WEBHOOK_URLS",),
    "webhook_secret": ("LAZADA_WEBHOOK_SECRET", "LAZADA_WEBHOOK_SECRET_FILE"),
    "log_level": ("LAZADA_LOG_LEVEL",),  # read by `run`, not part of Settings
}


def _setting_source(name: str) -> tuple[str, str | None]:
    """Where a setting came from: ("environment"|"file", its variable) or ("default", None).

    As Settings.from_env reads them: a variable set to the empty string counts as unset."""
    for variable in SETTING_VARIABLES.get(name, ()):
        if os.environ.get(variable):
            return ("file" if variable.endswith("_FILE") else "environment"), variable
    return "default", None


def _effective_settings(settings: Settings) -> dict[str, Any]:
    """Every setting's effective value: secrets (fields kept out of repr) as set/missing, URLs
    without their passwords, tuples as lists."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if not field.repr:
            value = "set" if value else "missing"
        elif field.name.endswith("_url") and value:
            value = mask_url(value)
        elif isinstance(value, tuple):  # the retry ladder's seconds, the webhooks' URLs
            value = [mask_url(v) if isinstance(v, str) else v for v in value]
        values[field.name] = value
    values["log_level"] = os.environ.get("LAZADA_LOG_LEVEL") or "INFO"
    return values


def cmd_config(args: argparse.Namespace) -> int:
    values = _effective_settings(_settings())
    sources = {name: _setting_source(name) for name in values}
    if args.json:
        document = dict(values)
        document["sources"] = {
            name: {"source": source, "variable": variable}
            for name, (source, variable) in sources.items()
        }
        _print_json(document)
        return EXIT_OK
    from worker.cli.terminal import print_table

    def shown(value: Any) -> str:
        if isinstance(value, list):
            return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        if value is None:
            return "none"
        return f"{value:g}" if isinstance(value, float) else str(value)

    print_table(
        ["setting", "value", "from"],
        [
            [name, shown(value), f"{sources[name][0]} {sources[name][1] or ''}".rstrip()]
            for name, value in values.items()
        ],
    )
    return EXIT_OK


# --- services -----------------------------------------------------------------------------


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from worker.db.schema import DatabaseUnavailable, current_revision, upgrade

    settings = _settings()
    try:
        upgrade(settings.database_url)
        print(f"database at revision {current_revision(settings.database_url)}")
    except DatabaseUnavailable as exc:
        raise SettingsError(f"{exc} (check DATABASE_URL)") from None
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from worker.cli.run import run_worker

    if args.concurrency < 1:
        raise InvalidInput("--concurrency must be at least 1")
    settings = _settings()
    from worker.logs import log_format

    log_format()  # a bad LAZADA_LOG_FORMAT is one line here, not a traceback in Celery's import
    sessions = _sessions(settings)
    from worker.accounts.store import list_accounts

    with sessions() as session:
        if not list_accounts(session, settings):  # also checks the secret key decrypts them
            raise SettingsError(
                "no account to work for: set LAZADA_API_URL, LAZADA_USER_ID and LAZADA_API_KEY, "
                "or add one with `lazada-worker accounts add` (or run `lazada-worker demo`)"
            )
    return run_worker(settings, args.concurrency, args.loglevel, args.only)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from worker.sandbox.lazop import LazopSandbox
    from worker.sandbox.lazop import config as lazop_config
    from worker.sandbox.sellercenter import Sandbox, config_from_args

    lazop = args.platform == "lazop"
    foreign = (
        lazop_config.legacy_only_options(args) if lazop else lazop_config.lazop_only_options(args)
    )
    if foreign:
        other = "sellercenter" if lazop else "lazop"
        raise InvalidInput(f"{', '.join(foreign)}: only for --platform {other}")
    try:
        config = lazop_config.config_from_args(args) if lazop else config_from_args(args)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if isinstance(config, lazop_config.LazopSandboxConfig):
        sandbox: Sandbox | LazopSandbox = LazopSandbox(config, host=args.host, port=args.port)
        print(_lazop_banner(sandbox.start()), file=sys.stderr)
    else:
        sandbox = Sandbox(config, host=args.host, port=args.port).start()
        # On standard output, as lines a shell can paste: a newcomer's worker needs these
        # three, and the key is the sandbox's own (not a secret of any real account).
        print(
            f"Seller Center sandbox at {sandbox.url}; point a worker at it with:\n"
            f"  export LAZADA_API_URL={shlex.quote(sandbox.url)}\n"
            f"  export LAZADA_USER_ID={shlex.quote(config.user_id)}\n"
            f"  export LAZADA_API_KEY={shlex.quote(config.api_key)}",
            flush=True,
        )
        print("Ctrl-C stops it", file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    finally:
        sandbox.stop()


def _lazop_banner(sandbox: Any) -> str:
    """What an operator needs to connect an account to the LAZOP sandbox. Its app secret and
    codes are the sandbox's own test values, not real secrets, so they are printed."""
    lines = [
        "LAZOP sandbox (the sandbox's own test values, not real secrets); Ctrl-C stops it",
        f"  gateway URL:  {sandbox.api_url}",
        f"  auth URL:     {sandbox.auth_url}",
        f"  app key:      {sandbox.app_key}",
        f"  app secret:   {sandbox.app_secret}",
    ]
    for seller in sandbox.sellers:
        code = sandbox.authorization_code(seller)
        lines.append(f"  authorization code for {seller}: {code} (single use, 30 minutes)")
    lines.append(f"  more codes:   POST {sandbox.url}_sandbox/authorization-code?seller=NAME")
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    from worker.cli.demo import run_demo

    return run_demo(concurrency=args.concurrency, timeout=args.timeout)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# --- the parser ---------------------------------------------------------------------------


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
    from worker.sandbox.lazop import config as lazop_config
    from worker.sandbox.sellercenter import add_arguments

    p.add_argument(
        "--platform",
        choices=("sellercenter", "lazop"),
        default="sellercenter",
        help="the legacy Seller Center (default) or the Lazada Open Platform",
    )
    add_arguments(p)
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
        help="serve only the main queue (with beat) or only the image jobs' polls; "
        "run one of each to keep polls off the bulk work's threads (default: all)",
    )

    p = sub.add_parser("db", help="the results database")
    db = p.add_subparsers(
        dest="db_command", required=True, metavar="DB_COMMAND", help="what to do to it"
    )
    up = db.add_parser("upgrade", help="apply the Alembic migrations")
    up.set_defaults(handler=cmd_db_upgrade)

    p = command("remove-products", cmd_remove_products, "enqueue a removal job", account=True)
    p.add_argument("skus", nargs="*", metavar="SKU", help="SellerSkus to remove")
    p.add_argument("--file", metavar="PATH", help="SKUs one a line; - for standard input")
    p.add_argument(
        "--key", help="idempotency key: the same key never removes twice (default: the task id)"
    )
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)

    p = command("fetch-order", cmd_fetch_order, "enqueue order fetches", account=True)
    p.add_argument("order_ids", nargs="+", metavar="ORDER_ID", help="Seller Center order ids")
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)

    p = command("migrate-images", cmd_migrate_images, "enqueue an image migration", account=True)
    p.add_argument("urls", nargs="+", metavar="URL", help="http(s) URLs of the images")
    p.add_argument(
        "--key", help="idempotency key, to list its jobs with image-jobs --key (default: new)"
    )
    p.add_argument("--wait", action="store_true", help=WAIT_HELP)

    p = command(
        "track-images", cmd_track_images, "enqueue tracking of existing image jobs", account=True
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
        ("status", cmd_status, "key", "a removal job", "the job's idempotency key"),
        ("order", cmd_order, "order_id", "a stored order", "the order's id"),
        ("image-job", cmd_image_job, "request_id", "an image job", "the job's RequestId"),
    ):
        p = command(name, handler, help, account=True)
        p.add_argument(arg, metavar=arg.upper(), help=arg_help)
        p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = command("image-jobs", cmd_image_jobs, "image jobs, newest first", account=True)
    p.add_argument("--key", help="only the jobs that the migration with this key started")
    p.add_argument("--state", choices=IMAGE_STATES, help="only the jobs in this state")
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = command("failures", cmd_failures, "recorded failures, newest first", account=True)
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = command("config", cmd_config, "every effective setting and where it came from")
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    from worker.cli.accounts import add_accounts_commands

    add_accounts_commands(sub, _settings, _sessions, _print_json)
    add_event_commands(sub, _settings, _sessions, _print_json, _send)
    return parser
