"""Image jobs: `migrate-images` and `track-images` enqueue them (with --wait, show how each
ended), `image-job` and `image-jobs` show stored ones."""

from __future__ import annotations

import argparse
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from worker.cli.connections import account_name, load_settings, open_sessions, send
from worker.cli.exits import EXIT_FAILED, EXIT_OK
from worker.cli.output import error_text, print_json, show, wait
from worker.cli.terminal import print_table
from worker.inputs import clean_key, clean_request_id, clean_urls
from worker.services import documents

IMAGE_STATES = ("pending", "succeeded", "partial", "failed", "expired", "rejected")
IMAGE_JOB_COLUMNS = ["request id", "action", "state", "images", "errors", "polls", "error"]


def cmd_migrate_images(args: argparse.Namespace) -> int:
    """`migrate-images URL ...`: enqueue a migration and print its key."""
    urls = clean_urls(args.urls)
    key = clean_key(args.key) if args.key is not None else None
    settings = load_settings()
    sessions = open_sessions(settings) if args.wait else None
    account = account_name(args, settings, sessions)
    key = key or str(uuid.uuid4())
    send("lazada.migrate_images", [urls], key=key, account=account)
    print(key)
    if sessions is None:
        return EXIT_OK
    expected = -(-len(urls) // 8)  # one job per MigrateImages call of at most 8 URLs

    def jobs() -> list[dict[str, Any]]:
        with sessions() as session:
            return documents.image_jobs(session, account, key=key)

    return _wait_images(jobs, expected)


def cmd_track_images(args: argparse.Namespace) -> int:
    """`track-images REQUEST_ID ...`: enqueue tracking of jobs the API already has."""
    request_ids = list(dict.fromkeys(clean_request_id(value) for value in args.request_ids))
    settings = load_settings()
    sessions = open_sessions(settings) if args.wait else None
    account = account_name(args, settings, sessions)
    for request_id in request_ids:
        send("lazada.track_image_job", [request_id], action=args.action, account=account)
    print("\n".join(request_ids))
    if sessions is None:
        return EXIT_OK

    def jobs() -> list[dict[str, Any]]:
        with sessions() as session:
            found = (documents.image_job(session, account, r) for r in request_ids)
            return [job for job in found if job is not None]

    return _wait_images(jobs, len(request_ids))


def _wait_images(jobs: Callable[[], list[dict[str, Any]]], expected: int) -> int:
    """Wait for the image jobs, print their states and counts; exit 1 unless all succeeded
    (a partial job failed some images, as a removal with a failed SKU exits 1)."""

    def progress() -> tuple[int, int, bool]:
        current = jobs()
        final = sum(1 for job in current if job["state"] != "pending")
        return final, expected, final >= expected

    wait(f"{expected} image job(s)", progress)
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


def _image_row(job: dict[str, Any]) -> list[Any]:
    return [
        job["request_id"] or "(not submitted)",
        job["action"],
        job["state"],
        len(job["images"]),
        len(job["errors"]),
        job["polls"],
        error_text(job),
    ]


def _image_text(job: dict[str, Any]) -> str:
    error = error_text(job)
    return (
        f"{job['request_id'] or '(not submitted)'} {job['action']}: {job['state']}, "
        f"{len(job['images'])} image(s), {len(job['errors'])} error(s), {job['polls']} poll(s)"
        + (f"; {error}" if error else "")
    )


def cmd_image_job(args: argparse.Namespace) -> int:
    """`image-job REQUEST_ID`: one image job, as JSON or as a line of text."""
    request_id = clean_request_id(args.request_id)
    settings = load_settings()
    sessions = open_sessions(settings)
    account = account_name(args, settings, sessions)
    with sessions() as session:
        job = documents.image_job(session, account, request_id)
    return show(args, job, f"no image job {request_id!r}", _image_text)


def cmd_image_jobs(args: argparse.Namespace) -> int:
    """`image-jobs`: image jobs, newest first, optionally of one migration's key or a state."""
    key = clean_key(args.key) if args.key is not None else None
    settings = load_settings()
    sessions = open_sessions(settings)
    account = account_name(args, settings, sessions)
    with sessions() as session:
        jobs = documents.image_jobs(session, account, key=key, state=args.state)
    if args.json:
        print_json(jobs)
    elif jobs:
        print_table(IMAGE_JOB_COLUMNS, [_image_row(job) for job in jobs])
    else:
        print("no image jobs")
    return EXIT_OK
