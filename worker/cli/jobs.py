"""Removal jobs: `remove-products` enqueues one, `status` shows it, `jobs` lists them (as the
console's jobs page does), `retry` sends its failed SKUs again and `cancel` stops the SKUs not
yet sent (worker.services.job_control).

Retry and cancel change the rows here, in one transaction each, and then send what follows
(the batches to run again, the event's delivery) over the broker: a cancel has taken effect
when the command returns.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from worker.accounts.store import get_account
from worker.cli.connections import (
    account_name,
    load_settings,
    open_account,
    open_sessions,
    publish,
    send,
)
from worker.cli.exits import EXIT_FAILED, EXIT_OK
from worker.cli.output import error_text, print_json, seconds, show, wait
from worker.cli.terminal import print_table
from worker.db.engine import core_transaction
from worker.inputs import InvalidInput, clean_key, clean_skus, read_sku_file
from worker.ratelimit.runners import runners_for
from worker.services import documents, job_control
from worker.services.job_keys import check_key, refuse_earlier_accounts_key
from worker.settings import Settings
from worker.web import listings

JOB_STATES = listings.JOB_STATES
DEFAULT_LIMIT = listings.PAGE_SIZE


def cmd_remove_products(args: argparse.Namespace) -> int:
    """`remove-products`: enqueue a removal job and print its key; with --wait, its outcome."""
    raw = list(args.skus)
    if args.file:
        raw += read_sku_file(args.file)
    skus = clean_skus(raw)
    key = clean_key(args.key) if args.key is not None else None
    settings = load_settings()
    # A key is checked against the database before sending (another set under it is refused).
    sessions = open_sessions(settings) if args.wait or key is not None else None
    account = account_name(args, settings, sessions)
    # The same set under a recorded key: the job is there, nothing to send.
    if key is None or sessions is None or not _key_recorded(sessions, settings, account, key, skus):
        task_id = send("lazada.remove_products", [skus], key=key, account=account)
        key = key or task_id
    print(key)
    if not (args.wait and sessions is not None):
        return EXIT_OK

    def progress() -> tuple[int, int, bool]:
        with sessions() as session:
            state = documents.removal_progress(session, account, key)
        return state or (0, len(skus), False)

    wait(f"removing {len(skus)} SKUs", progress)
    with sessions() as session:
        job = documents.removal_job(session, account, key)
    assert job is not None
    print(f"removed {job['removed']}, failed {job['failed']} of {job['total']}", file=sys.stderr)
    failed = [sku for sku in job["skus"] if sku["state"] == "failed"]
    for reason, count in documents.failure_reasons(failed):
        print(f"  {count} failed: {reason}", file=sys.stderr)
    return EXIT_FAILED if job["failed"] else EXIT_OK


def _key_recorded(
    sessions: Any, settings: Settings, account: str, key: str, skus: list[str]
) -> bool:
    """True if the key's job holds these SKUs; a job of another set, or of an earlier account
    of that name, is bad input (exit 2)."""
    with core_transaction(sessions) as connection:
        return check_key(connection, settings, account, key, skus)


def cmd_status(args: argparse.Namespace) -> int:
    """`status KEY`: a removal job, as JSON or as text with the reasons its SKUs failed."""
    key = _key(args.key)
    settings = load_settings()
    sessions = open_sessions(settings)
    account = account_name(args, settings, sessions)
    with sessions() as session:
        job = documents.removal_job(session, account, key)
    try:
        with core_transaction(sessions) as connection:
            refuse_earlier_accounts_key(connection, settings, account, key)
    except InvalidInput as earlier:  # shown, with what it is
        print(f"lazada-worker: note: {earlier}", file=sys.stderr)

    def text(job: dict[str, Any]) -> str:
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
                [[s["sku"], error_text(s), s["attempts"]] for s in failed],
            )
        return ""

    return show(args, job, f"no removal job with key {key!r}", text)


def cmd_jobs(args: argparse.Namespace) -> int:
    """`jobs`: removal jobs newest first, of --account or else of every account, as the
    console's jobs page lists them: a JSON list or a table."""
    if args.limit < 0:
        raise InvalidInput(f"--limit must be 0 (all) or more, got {args.limit}")
    if args.account is None:
        sessions, account = open_sessions(load_settings()), None
    else:
        settings = load_settings()
        sessions = open_sessions(settings)
        account = account_name(args, settings, sessions)
    with sessions() as session:
        rows = listings.removal_jobs(session, account, args.state, 1, args.limit or None).rows
    if args.json:
        print_json(rows)
    elif rows:
        print_table(JOB_COLUMNS, [_job_row(job) for job in rows])
    else:
        whose = "any account" if account is None else f"account {account!r}"
        state = "" if args.state is None else f"{args.state} "
        print(f"no {state}removal jobs for {whose}")
    return EXIT_OK


JOB_COLUMNS = [
    "account",
    "key",
    "state",
    "removed",
    "failed",
    "cancelled",
    "pending",
    "total",
    "created",
    "finished",
]


def _job_row(job: dict[str, Any]) -> list[Any]:
    finished = seconds(job["finished_at"]) if job["finished_at"] else "-"
    counts = [job[name] for name in ("removed", "failed", "cancelled", "pending", "total")]
    return [job["account"], job["key"], job["state"], *counts, seconds(job["created_at"]), finished]


def cmd_retry(args: argparse.Namespace) -> int:
    """`retry KEY`: a done job's failed SKUs are sent again."""
    key = _key(args.key)
    sessions, settings, account = open_account(args)
    with sessions() as session:
        rate = get_account(session, settings, account).rate_limit
    outcome = job_control.retry(sessions, settings, account, key, runners_for(rate))
    publish(outcome.messages)
    if outcome.changed:
        print(f"job {key}: {outcome.changed} failed SKUs are sent again")
    elif outcome.done:
        print(f"job {key}: no failed SKUs; nothing to retry")
    else:
        print(f"job {key} is not done yet; nothing to retry")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    """`cancel KEY`: the job's SKUs not yet sent are cancelled; calls in flight finish."""
    key = _key(args.key)
    sessions, settings, account = open_account(args)
    with core_transaction(sessions) as connection:
        refuse_earlier_accounts_key(connection, settings, account, key)
    outcome = job_control.cancel(sessions, account, key)
    publish(outcome.messages)
    state = "done" if outcome.done else "done once the calls in flight are recorded"
    print(f"job {key}: {outcome.changed} SKUs cancelled; the job is {state}")
    return EXIT_OK


def _key(value: str) -> str:
    key = clean_key(value)
    assert key is not None  # a positional argument is never None
    return key
