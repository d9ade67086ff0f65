"""What a command prints: JSON documents, documents as text, and progress while it waits."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from worker.cli.exits import EXIT_FAILED, EXIT_OK, CommandFailed
from worker.cli.terminal import WaitProgress
from worker.services.documents import error_code_text


def print_json(document: Any) -> None:
    """One JSON document on standard output."""
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def show(args: argparse.Namespace, document: Any, missing: str, text: Callable[[Any], str]) -> int:
    """The document as JSON or as text; `text` may print (tables) and return the rest. No
    document: `missing` on standard error, exit 1."""
    if document is None:
        if args.json:
            print_json(None)
        print(f"lazada-worker: {missing}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print_json(document)
    else:
        rest = text(document)
        if rest:
            print(rest)
    return EXIT_OK


def wait(
    describe: str,
    progress: Callable[[], tuple[int, int, bool]],
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll the database until the work is final, showing progress on standard error: a bar
    on a terminal, a line every few seconds elsewhere (worker.cli.terminal)."""
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


def seconds(timestamp: str) -> str:
    """An ISO timestamp to the second, for text: the JSON documents keep it whole."""
    return datetime.fromisoformat(timestamp).replace(microsecond=0).isoformat()


def error_text(document: dict[str, Any]) -> str:
    """A document's error as one text: its code in the one spelling, then the message."""
    parts = [error_code_text(document.get("error_code")), document.get("message")]
    return " ".join(str(part) for part in parts if part)
