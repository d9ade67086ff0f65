"""The `lazada-worker` command line as a user types it: the real console module in a subprocess,
and what the tests assert about how a command ended.

Every command runs with a controlled environment: a SQLite results database in the test's own
folder (the embedded broker keeps its messages beside it), the sandbox's URL, UserID and key,
and none of the caller's LAZADA_*, CELERY_* or DATABASE_URL variables.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from worker.sandbox.sellercenter import Sandbox


@dataclass
class Cli:
    """`lazada-worker` in a subprocess, with the test's environment and working directory."""

    env: dict[str, str]
    folder: Path
    database: Path

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    def __call__(
        self,
        *args: str,
        stdin: str = "",
        timeout: float = 60.0,
        env: Mapping[str, str | None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run one command; `env` changes variables for this run (None unsets one).

        The timeout is a liveness deadline (a command that hangs fails the test), not a
        measurement."""
        environment = dict(self.env)
        for name, value in (env or {}).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        return subprocess.run(
            [sys.executable, "-m", "worker.cli", *args],
            env=environment,
            cwd=self.folder,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def enqueued(self) -> list[tuple[str, list[Any], dict[str, Any], str]]:
        """(task name, args, kwargs, task id) of each message waiting in the embedded broker."""
        queue = self.folder / "lazada-worker-broker" / "queue"
        messages = []
        for path in sorted(queue.glob("*")) if queue.exists() else []:
            envelope = json.loads(path.read_text())
            args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
            headers = envelope["headers"]
            messages.append((headers["task"], args, kwargs, headers["id"]))
        return messages

    def rows(self) -> dict[str, int]:
        """Row counts of the results database's tables that hold any (the schema's own aside)."""
        if not self.database.exists():
            return {}
        with sqlite3.connect(self.database) as connection:
            tables = [
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
                if name != "alembic_version" and not name.startswith("sqlite_")
            ]
            counts = {
                table: connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                for table in tables
            }
        connection.close()
        return {table: count for table, count in counts.items() if count}

    def recorded(self) -> dict[str, Any]:
        """Everything a command may have left behind: database rows and broker messages."""
        return {"rows": self.rows(), "messages": self.enqueued()}


def controlled_env(database_url: str, sandbox: Sandbox) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LAZADA_", "CELERY_", "DATABASE_URL"))
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "LAZADA_API_URL": sandbox.url,
            "LAZADA_USER_ID": sandbox.user_id,
            "LAZADA_API_KEY": sandbox.api_key,
            "LAZADA_POLL_FIRST": "0.3",
            "LAZADA_POLL_SLACK": "0.3",
        }
    )
    return env


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The exit status, and exactly one line on standard error that is not a traceback."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lazada-worker"), lines[0]
    return lines[0]


def assert_bad_input(cli: Cli, result: subprocess.CompletedProcess[str]) -> str:
    """Exit 2, one line on standard error, nothing on standard output, nothing recorded."""
    line = assert_one_line_error(result, 2)
    assert result.stdout == ""
    assert cli.recorded() == {"rows": {}, "messages": []}
    return line


def json_document(result: subprocess.CompletedProcess[str]) -> Any:
    """Standard output parsed as exactly one JSON document (json.loads refuses any extra)."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


def is_iso_with_offset(value: Any) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value).utcoffset() is not None
