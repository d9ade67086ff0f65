"""The `lazada-worker` command line.

Exit status: 0 done, 1 the work or a service failed, 2 bad input (one line that says what).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from worker.inputs import (
    IMAGE_ACTIONS,
    InvalidInput,
    clean_key,
    clean_order_id,
    clean_request_id,
    clean_skus,
    clean_urls,
)
from worker.run import QUEUE_CHOICES
from worker.settings import Settings, SettingsError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
IMAGE_STATES = ("pending", "succeeded", "partial", "failed", "expired", "rejected")


class CommandFailed(RuntimeError):
    """The work or a service failed (exit 1); the message is shown as one line."""


def main(argv: Sequence[str] | None = None) -> int:
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
        raise CommandFailed(
            f"cannot reach the broker {app.conf.broker_url.split('@')[-1]}: {exc}"
        ) from None
    return task_id


def _print_json(document: Any) -> None:
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def _wait(
    describe: str,
    progress: Callable[[], tuple[int, int, bool]],
    timeout: float | None = None,
) -> None:
    """Poll the database until the work is final; a bar on a terminal, nothing otherwise."""
    tty = sys.stderr.isatty()
    started = time.monotonic()
    while True:
        done, total, final = progress()
        if tty:
            width = 30
            filled = int(width * done / total) if total else 0
            bar = "#" * filled + "-" * (width - filled)
            print(f"\r{describe} [{bar}] {done}/{total}", end="", file=sys.stderr, flush=True)
        if final:
            if tty:
                print(file=sys.stderr)
            return
        if timeout is not None and time.monotonic() - started > timeout:
            raise CommandFailed(f"{describe}: not final after {timeout:.0f}s")
        time.sleep(0.5)


# --- enqueue commands ---------------------------------------------------------------------


def _read_sku_file(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidInput(f"SKU file {path!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"SKU file {path!r} cannot be read: {exc}") from None


def cmd_remove_products(args: argparse.Namespace) -> int:
    raw = list(args.skus)
    if args.file:
        # Blank lines in a file are separators, not SKUs.
        raw += [line for line in _read_sku_file(args.file) if line.strip()]
    skus = clean_skus(raw)
    key = clean_key(args.key) if args.key is not None else None
    settings = _settings()
    sessions = _sessions(settings) if args.wait else None
    task_id = _send("lazada.remove_products", [skus], key=key)
    key = key or task_id
    print(key)
    if sessions is not None:
        from worker import documents

        def progress() -> tuple[int, int, bool]:
            with sessions() as session:
                state = documents.removal_progress(session, settings.account, key)
            return state or (0, len(skus), False)

        _wait(f"removing {len(skus)} SKUs", progress)
        with sessions() as session:
            job = documents.removal_job(session, settings.account, key)
        assert job is not None
        print(
            f"removed {job['removed']}, failed {job['failed']} of {job['total']}", file=sys.stderr
        )
        return EXIT_FAILED if job["failed"] else EXIT_OK
    return EXIT_OK


def cmd_fetch_order(args: argparse.Namespace) -> int:
    order_ids = list(dict.fromkeys(clean_order_id(value) for value in args.order_ids))
    settings = _settings()
    sessions = _sessions(settings) if args.wait else None
    started = _now()
    if sessions is not None:
        from worker.services import orders

        # Mark the orders due before sending: a stored order then counts as final only once
        # this fetch has stored it again, not as soon as a worker claims it.
        orders.request_fetch(sessions, settings, order_ids)
    for order_id in order_ids:
        print(_send("lazada.fetch_order", [order_id]))
    if sessions is None:
        return EXIT_OK
    from sqlalchemy import select

    from worker.db.models import Order

    def progress() -> tuple[int, int, bool]:
        with sessions() as session:
            rows = session.execute(
                select(Order.updated_at, Order.next_attempt_at).where(
                    Order.account == settings.account, Order.order_id.in_(order_ids)
                )
            ).all()
        final = sum(1 for updated, due in rows if updated >= started and due is None)
        return final, len(order_ids), final == len(order_ids)

    _wait(f"fetching {len(order_ids)} orders", progress)
    with sessions() as session:
        states = session.scalars(
            select(Order.state).where(
                Order.account == settings.account, Order.order_id.in_(order_ids)
            )
        ).all()
    return EXIT_FAILED if "failed" in states else EXIT_OK


def cmd_migrate_images(args: argparse.Namespace) -> int:
    urls = clean_urls(args.urls)
    key = clean_key(args.key) if args.key is not None else None
    settings = _settings()
    sessions = _sessions(settings) if args.wait else None
    key = key or str(uuid.uuid4())
    _send("lazada.migrate_images", [urls], key=key)
    print(key)
    if sessions is None:
        return EXIT_OK
    from worker import documents

    expected = -(-len(urls) // 8)

    def jobs() -> list[dict[str, Any]]:
        with sessions() as session:
            return documents.image_jobs(session, settings.account, key=key)

    return _wait_images(jobs, expected)


def cmd_track_images(args: argparse.Namespace) -> int:
    request_ids = list(dict.fromkeys(clean_request_id(value) for value in args.request_ids))
    settings = _settings()
    sessions = _sessions(settings) if args.wait else None
    for request_id in request_ids:
        _send("lazada.track_image_job", [request_id], action=args.action)
    print("\n".join(request_ids))
    if sessions is None:
        return EXIT_OK
    from worker import documents

    def jobs() -> list[dict[str, Any]]:
        with sessions() as session:
            found = (documents.image_job(session, settings.account, r) for r in request_ids)
            return [job for job in found if job is not None]

    return _wait_images(jobs, len(request_ids))


def _wait_images(jobs: Callable[[], list[dict[str, Any]]], expected: int) -> int:
    def progress() -> tuple[int, int, bool]:
        current = jobs()
        final = sum(1 for job in current if job["state"] != "pending")
        return final, expected, final >= expected

    _wait(f"{expected} image job(s)", progress)
    return EXIT_OK if all(job["state"] == "succeeded" for job in jobs()) else EXIT_FAILED


# --- read commands ------------------------------------------------------------------------


def _show(args: argparse.Namespace, document: Any, missing: str, text: Callable[[Any], str]) -> int:
    if document is None:
        if args.json:
            _print_json(None)
        print(f"lazada-worker: {missing}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        _print_json(document)
    else:
        print(text(document))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from worker import documents

    key = clean_key(args.key)
    assert key is not None
    settings = _settings()
    with _sessions(settings)() as session:
        job = documents.removal_job(session, settings.account, key)

    def text(job: dict[str, Any]) -> str:
        lines = [
            f"job {job['key']}: {job['state']}, {job['removed']} removed, "
            f"{job['failed']} failed, {job['pending']} pending of {job['total']}"
        ]
        lines += [
            f"  {s['sku']}: failed (E{s['error_code'] or '?'}) {s['message']}"
            for s in job["skus"]
            if s["state"] == "failed"
        ]
        return "\n".join(lines)

    return _show(args, job, f"no removal job with key {key!r}", text)


def cmd_order(args: argparse.Namespace) -> int:
    from worker import documents

    order_id = clean_order_id(args.order_id)
    settings = _settings()
    with _sessions(settings)() as session:
        order = documents.order(session, settings.account, order_id)

    def text(o: dict[str, Any]) -> str:
        if o["state"] != "fetched":
            return f"order {o['order_id']}: {o['state']} {o['message'] or ''}".rstrip()
        return (
            f"order {o['order_id']} (#{o['order_number']}): {', '.join(o['statuses'])}; "
            f"{o['customer_first_name']} {o['customer_last_name']}; {o['price']} "
            f"by {o['payment_method']}; {o['items_count']} items; fetched {o['fetched_at']}"
        )

    return _show(args, order, f"no stored order {order_id}", text)


def _image_text(job: dict[str, Any]) -> str:
    return (
        f"{job['request_id'] or '(not submitted)'} {job['action']}: {job['state']}, "
        f"{len(job['images'])} image(s), {len(job['errors'])} error(s), {job['polls']} poll(s)"
        + (f"; {job['message']}" if job["message"] else "")
    )


def cmd_image_job(args: argparse.Namespace) -> int:
    from worker import documents

    request_id = clean_request_id(args.request_id)
    settings = _settings()
    with _sessions(settings)() as session:
        job = documents.image_job(session, settings.account, request_id)
    return _show(args, job, f"no image job {request_id!r}", _image_text)


def cmd_image_jobs(args: argparse.Namespace) -> int:
    from worker import documents

    key = clean_key(args.key) if args.key is not None else None
    settings = _settings()
    with _sessions(settings)() as session:
        jobs = documents.image_jobs(session, settings.account, key=key, state=args.state)
    if args.json:
        _print_json(jobs)
    else:
        print("\n".join(_image_text(job) for job in jobs) or "no image jobs")
    return EXIT_OK


def cmd_failures(args: argparse.Namespace) -> int:
    from worker import documents

    settings = _settings()
    with _sessions(settings)() as session:
        rows = documents.failures(session, settings.account)
    if args.json:
        _print_json(rows)
    else:
        print(
            "\n".join(
                f"{f['at']} {f['kind']} {f['subject']}: "
                f"{_code_prefix(f['error_code'])}{f['message']} "
                f"({f['attempts']} attempt(s))"
                for f in rows
            )
            or "no failures"
        )
    return EXIT_OK


def _code_prefix(code: int | None) -> str:
    return f"E{code:03d} " if code else ""


def cmd_config(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    settings = _settings()
    document = {
        "database_url": make_url(settings.database_url).render_as_string(hide_password=True),
        "broker_url": _hide_password(settings.broker_url),
        "api_url": settings.api_url,
        "user_id": settings.user_id,
        "rate_limit": settings.rate_limit,
        "api_key": "set" if settings.api_key else "missing",
    }
    if args.json:
        _print_json(document)
    else:
        print("\n".join(f"{name}: {value}" for name, value in document.items()))
    return EXIT_OK


def _hide_password(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


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
    from worker.run import run_worker

    if args.concurrency < 1:
        raise InvalidInput("--concurrency must be at least 1")
    settings = _settings()
    settings.require_api()
    _sessions(settings)
    return run_worker(settings, args.concurrency, args.loglevel, args.only)


def cmd_sandbox(args: argparse.Namespace) -> int:
    from worker.sandbox import Sandbox, config_from_args

    try:
        config = config_from_args(args)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    sandbox = Sandbox(config, host=args.host, port=args.port).start()
    # On standard output, as lines a shell can paste: a newcomer's worker needs these three,
    # and the key is the sandbox's own (not a secret of any real account).
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


def cmd_demo(args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    return run_demo(concurrency=args.concurrency, timeout=args.timeout)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# --- the parser ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) like every other bad input."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lazada-worker",
        description="Background worker for Lazada's Seller Center API.",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    def command(name: str, handler: Callable[[argparse.Namespace], int], help: str) -> Any:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    p = command("demo", cmd_demo, "the main job on embedded defaults against the sandbox")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--timeout", type=float, default=180.0, help="give up after this many s")

    p = command("sandbox", cmd_sandbox, "the local Seller Center sandbox")
    from worker.sandbox import add_arguments

    add_arguments(p)

    p = command("run", cmd_run, "a worker with beat embedded, for a single machine")
    p.add_argument("--concurrency", type=int, default=16, help="API calls in flight")
    p.add_argument("--loglevel", default=os.environ.get("LAZADA_LOG_LEVEL", "INFO"))
    p.add_argument(
        "--only",
        choices=QUEUE_CHOICES,
        default="all",
        help="serve only the main queue (with beat) or only the image jobs' polls; "
        "run one of each to keep polls off the bulk work's threads (default: all)",
    )

    p = sub.add_parser("db", help="the results database")
    db = p.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    up = db.add_parser("upgrade", help="apply the Alembic migrations")
    up.set_defaults(handler=cmd_db_upgrade)

    p = command("remove-products", cmd_remove_products, "enqueue a removal job")
    p.add_argument("skus", nargs="*", metavar="SKU")
    p.add_argument("--file", metavar="PATH", help="SKUs one a line; - for standard input")
    p.add_argument("--key", help="idempotency key (default: the task id)")
    p.add_argument("--wait", action="store_true", help="return when every SKU is final")

    p = command("fetch-order", cmd_fetch_order, "enqueue order fetches")
    p.add_argument("order_ids", nargs="+", metavar="ORDER_ID")
    p.add_argument("--wait", action="store_true")

    p = command("migrate-images", cmd_migrate_images, "enqueue an image migration")
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("--key")
    p.add_argument("--wait", action="store_true")

    p = command("track-images", cmd_track_images, "enqueue tracking of existing image jobs")
    p.add_argument("request_ids", nargs="+", metavar="REQUEST_ID")
    p.add_argument("--action", default="MigrateImages", choices=IMAGE_ACTIONS)
    p.add_argument("--wait", action="store_true")

    for name, handler, arg, help in (
        ("status", cmd_status, "key", "a removal job"),
        ("order", cmd_order, "order_id", "a stored order"),
        ("image-job", cmd_image_job, "request_id", "an image job"),
    ):
        p = command(name, handler, help)
        p.add_argument(arg, metavar=arg.upper())
        p.add_argument("--json", action="store_true")

    p = command("image-jobs", cmd_image_jobs, "image jobs, newest first")
    p.add_argument("--key")
    p.add_argument("--state", choices=IMAGE_STATES)
    p.add_argument("--json", action="store_true")

    p = command("failures", cmd_failures, "recorded failures, newest first")
    p.add_argument("--json", action="store_true")

    p = command("config", cmd_config, "the effective settings")
    p.add_argument("--json", action="store_true")
    return parser


if __name__ == "__main__":
    sys.exit(main())
