"""The `lazada-worker` command line as a user types it: the real console module in a subprocess.

Every command runs with a controlled environment: a SQLite results database in the test's own
folder (the embedded broker keeps its messages beside it), the sandbox's URL, UserID and key,
and none of the caller's LAZADA_*, CELERY_* or DATABASE_URL variables. The tests that need a
worker start one `lazada-worker run` on the same environment.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from tests.support.processes import WorkerProcess, wait_for
from tests.support.worker_stack import BATCH
from worker.db.engine import get_engine
from worker.db.models import (
    Failure,
    ImageJob,
    ImageMigration,
    Order,
    RemovalBatch,
    RemovalJob,
    RemovalSku,
)
from worker.db.schema import ensure_schema
from worker.sandbox.sellercenter import Sandbox
from worker.services import removal
from worker.settings import Settings

SECRET_KEY = "TEST-SECRET-KEY-123"
REMOVAL_SKU_KEYS = {"sku", "state", "attempts", "error_code", "message"}
FAILURE_KEYS = {"at", "kind", "subject", "error_code", "message", "attempts"}
CONFIG_KEYS = {"database_url", "broker_url", "api_url", "user_id", "rate_limit", "api_key"}


# -- running the command line ---------------------------------------------------------------


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
                if name != "alembic_version"
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


@pytest.fixture
def cli(tmp_path: Path, sandbox: Sandbox) -> Cli:
    """The command line on a migrated, empty SQLite database (so a stray write would show)."""
    sandbox.config.image_job_seconds = (0.3, 0.6)
    database = tmp_path / "results.sqlite3"
    url = f"sqlite:///{database}"
    ensure_schema(url)
    return Cli(controlled_env(url, sandbox), tmp_path, database)


@pytest.fixture
def worker(cli: Cli) -> Iterator[WorkerProcess]:
    """One `lazada-worker run` on the test's environment; its log is shown when a test fails."""
    process = WorkerProcess(cli.env, cli.folder / "worker.log").start()
    try:
        yield process
    finally:
        process.stop()
        print(process.log()[-20000:])


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


# -- bad input: exit 2, one line, nothing recorded --------------------------------------------


ACCOUNT_COMMANDS = {
    "remove-products": ["remove-products", "A-1"],
    "fetch-order": ["fetch-order", "190"],
    "migrate-images": ["migrate-images", "https://img.example.com/1.jpg"],
    "track-images": ["track-images", "0123456789abcdef"],
    "status": ["status", "K-1"],
    "order": ["order", "190"],
    "image-job": ["image-job", "0123456789abcdef"],
    "image-jobs": ["image-jobs"],
    "failures": ["failures"],
}


@pytest.mark.parametrize("name", list(ACCOUNT_COMMANDS))
def test_every_command_that_enqueues_or_reads_work_refuses_an_unknown_account(
    cli: Cli, name: str
) -> None:
    line = assert_bad_input(cli, cli(*ACCOUNT_COMMANDS[name], "--account", "no-such-shop"))
    assert "no-such-shop" in line and "accounts list" in line


def test_the_environments_account_is_named_by_its_user_id(cli: Cli) -> None:
    user_id = cli.env["LAZADA_USER_ID"]
    result = cli("failures", "--account", user_id)
    assert result.returncode == 0, result.stderr
    assert user_id in result.stdout  # "no failures recorded for account ..."


def test_remove_products_without_skus_is_bad_input(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("remove-products"))
    assert "no SKUs" in line


@pytest.mark.parametrize(
    "args",
    [
        ["remove-products", "A-1", "--key", ""],
        ["remove-products", "A-1", "--key", "   "],
        ["migrate-images", "https://img.example.com/1.jpg", "--key", ""],
        ["status", " "],
        ["image-jobs", "--key", ""],
    ],
    ids=["remove-empty", "remove-blank", "migrate-empty", "status-blank", "image-jobs-empty"],
)
def test_an_empty_or_blank_key_is_bad_input(cli: Cli, args: list[str]) -> None:
    line = assert_bad_input(cli, cli(*args))
    assert "key" in line


def test_a_sku_file_that_does_not_exist_is_bad_input(cli: Cli) -> None:
    missing = cli.folder / "no-such-skus.txt"
    line = assert_bad_input(cli, cli("remove-products", "A-1", "--file", str(missing)))
    assert "no-such-skus.txt" in line


@pytest.mark.parametrize("kind", ["directory", "not-utf8"])
def test_a_sku_file_that_cannot_be_read_is_bad_input(cli: Cli, kind: str) -> None:
    path = cli.folder / "skus"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"A-1\n\xff\xfe\xfa\n")
    line = assert_bad_input(cli, cli("remove-products", "--file", str(path)))
    assert "cannot be read" in line


@pytest.mark.parametrize("command", ["fetch-order", "order"])
@pytest.mark.parametrize("order_id", ["abc", "0", "-3", "1.5", "99999999999999999999", "²", "١٢٣"])
def test_an_order_id_that_is_not_a_positive_integer_is_bad_input(
    cli: Cli, command: str, order_id: str
) -> None:
    line = assert_bad_input(cli, cli(command, order_id))
    assert "order id" in line


@pytest.mark.parametrize("url", ["ftp://x", "not a url", "https://", "file:///etc/passwd"])
def test_an_image_url_that_is_not_http_is_bad_input(cli: Cli, url: str) -> None:
    line = assert_bad_input(cli, cli("migrate-images", "https://img.example.com/ok.jpg", url))
    assert repr(url) in line


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://a.com:99999/x.jpg", "Port out of range"),
        ("http://exa mple.com/a b.jpg", "U+0020"),
        ("http://a.com/\udcef\udcbf\udcbf.jpg", "U+FFFF"),  # argv bytes \xef\xbf\xbf
        ("http://a.com/\udcff.jpg", "U+DCFF"),  # argv byte \xff
    ],
)
def test_an_image_url_with_a_bad_host_port_space_or_character_is_bad_input(
    cli: Cli, url: str, problem: str
) -> None:
    line = assert_bad_input(cli, cli("migrate-images", "https://img.example.com/ok.jpg", url))
    assert "URL #2" in line and problem in line


@pytest.mark.parametrize(
    "sku",
    ["CLI-BAD\udcff", "CLI-BAD\uffff", "CLI\u200bBAD", "CLI\u202eBAD", "CLI\x7fBAD"],
    ids=["byte-ff", "U+FFFF", "zero-width", "bidi-override", "DEL"],
)
def test_a_sku_holding_a_character_that_is_not_a_visible_one_is_bad_input(
    cli: Cli, sku: str
) -> None:
    # A str with a lone surrogate reaches the command as the byte it stands for (\xff).
    line = assert_bad_input(cli, cli("remove-products", sku, "OK-CLI-1", "--key", "k"))
    assert "SKU #1" in line and "U+" in line


@pytest.mark.parametrize("separator", ["\x0b", "\x85", "\u2028", "\x0c"])
def test_a_sku_file_line_holding_another_line_separator_is_bad_input_not_two_skus(
    cli: Cli, separator: str
) -> None:
    path = cli.folder / "skus.txt"
    path.write_bytes(f"OK-1\nA{separator}B\n".encode())
    line = assert_bad_input(cli, cli("remove-products", "--file", str(path)))
    assert "SKU #2" in line and f"U+{ord(separator):04X}" in line


def test_a_key_holding_a_byte_that_is_not_utf8_is_bad_input(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("remove-products", "A-1", "--key", "job-\udcff"))
    assert "key" in line and "U+DCFF" in line


def test_an_unknown_image_job_state_is_bad_input(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("image-jobs", "--state", "finished"))
    assert "--state" in line


def test_an_unknown_image_action_is_bad_input(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("track-images", "R-1", "--action", "DeleteImages"))
    assert "--action" in line


@pytest.mark.parametrize(
    "database_url", ["nosuchdb://x", "postgresql+psycopg://nobody@127.0.0.1:1/x", "not a url"]
)
@pytest.mark.parametrize(
    "args",
    [
        ["db", "upgrade"],
        ["status", "K-1"],
        ["failures", "--json"],
        ["remove-products", "A-1", "--wait"],
        ["fetch-order", "190", "--wait"],
        ["migrate-images", "https://img.example.com/1.jpg", "--wait"],
    ],
    ids=lambda args: "-".join(a.strip("-") for a in args[:2]),
)
def test_a_database_that_cannot_be_opened_is_bad_input(
    cli: Cli, database_url: str, args: list[str]
) -> None:
    line = assert_bad_input(cli, cli(*args, env={"DATABASE_URL": database_url}))
    assert "DATABASE_URL" in line


def test_a_database_that_cannot_be_opened_is_named_without_its_password(cli: Cli) -> None:
    url = "postgresql+psycopg://shop:TEST-DB-PASSWORD@127.0.0.1:1/shop"
    result = cli("status", "K-1", env={"DATABASE_URL": url})
    line = assert_bad_input(cli, result)
    assert "127.0.0.1" in line
    assert "TEST-DB-PASSWORD" not in result.stdout + result.stderr


def test_run_without_an_api_url_names_the_missing_variable(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("run", env={"LAZADA_API_URL": None}))
    assert "LAZADA_API_URL" in line
    assert "LAZADA_USER_ID" not in line  # only what is missing


def test_run_without_any_api_settings_names_every_missing_variable(cli: Cli) -> None:
    unset = dict.fromkeys(("LAZADA_API_URL", "LAZADA_USER_ID", "LAZADA_API_KEY"))
    line = assert_bad_input(cli, cli("run", env=unset))
    for name in ("LAZADA_API_URL", "LAZADA_USER_ID", "LAZADA_API_KEY"):
        assert name in line


def test_run_with_a_concurrency_below_one_is_bad_input(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("run", "--concurrency", "0"))
    assert "--concurrency" in line


@pytest.mark.parametrize(
    "rate",
    [
        "fast",
        "0",
        "-1",
        "nan",
        "inf",
    ],
)
def test_a_bad_rate_limit_is_bad_input(cli: Cli, rate: str) -> None:
    line = assert_bad_input(cli, cli("remove-products", "A-1", env={"LAZADA_RATE_LIMIT": rate}))
    assert "LAZADA_RATE_LIMIT" in line


@pytest.mark.parametrize(
    "args",
    [["frobnicate"], ["db", "downgrade"], []],
    ids=["unknown", "unknown-db-command", "none"],
)
def test_an_unknown_or_missing_command_is_a_one_line_usage_error(cli: Cli, args: list[str]) -> None:
    line = assert_bad_input(cli, cli(*args))
    assert "error" in line


@pytest.mark.parametrize(
    "args",
    [
        ["config", "--bogus"],
        ["remove-products", "A-1", "--bogus"],
        ["status", "K-1", "--jsn"],
        ["fetch-order"],
        ["status"],
    ],
    ids=["config-option", "remove-option", "status-option", "fetch-no-ids", "status-no-key"],
)
def test_an_unknown_option_or_missing_argument_is_a_one_line_usage_error(
    cli: Cli, args: list[str]
) -> None:
    line = assert_bad_input(cli, cli(*args))
    assert "error" in line


# -- a service that fails: exit 1, one line -----------------------------------------------------


def test_an_unreachable_broker_exits_1_without_showing_its_password(cli: Cli) -> None:
    broker = "redis://:TEST-BROKER-PASSWORD@127.0.0.1:1/0"
    result = cli("fetch-order", "190", env={"CELERY_BROKER_URL": broker})
    line = assert_one_line_error(result, 1)
    assert "broker" in line
    assert "TEST-BROKER-PASSWORD" not in result.stdout + result.stderr


# -- config ------------------------------------------------------------------------------------


def test_config_json_says_the_api_key_is_set_and_never_shows_it(cli: Cli) -> None:
    result = cli("config", "--json", env={"LAZADA_API_KEY": SECRET_KEY})
    document = json_document(result)
    assert set(document) >= CONFIG_KEYS
    assert document["api_key"] == "set"
    assert document["api_url"] == cli.env["LAZADA_API_URL"]
    assert document["user_id"] == cli.env["LAZADA_USER_ID"]
    assert document["database_url"] == cli.database_url
    assert document["rate_limit"] == 5
    assert SECRET_KEY not in result.stdout + result.stderr


def test_config_json_says_the_api_key_is_missing_when_none_is_given(cli: Cli) -> None:
    document = json_document(cli("config", "--json", env={"LAZADA_API_KEY": None}))
    assert document["api_key"] == "missing"


def test_config_json_says_a_key_read_from_a_file_is_set_and_never_shows_it(cli: Cli) -> None:
    key_file = cli.folder / "api-key"
    key_file.write_text(SECRET_KEY + "\n")
    result = cli(
        "config", "--json", env={"LAZADA_API_KEY": None, "LAZADA_API_KEY_FILE": str(key_file)}
    )
    assert json_document(result)["api_key"] == "set"
    assert SECRET_KEY not in result.stdout + result.stderr


def config_rows(result: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    """`config` off a terminal: a header line, then setting, value and source a line."""
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split("\t") == ["setting", "value", "from"]
    return {line.split("\t")[0]: line.split("\t")[1:] for line in lines}


def test_config_text_says_the_api_key_is_set_and_never_shows_it(cli: Cli) -> None:
    result = cli("config", env={"LAZADA_API_KEY": SECRET_KEY})
    rows = config_rows(result)
    assert rows["api_key"] == ["set", "environment LAZADA_API_KEY"]
    assert rows["api_url"] == [cli.env["LAZADA_API_URL"], "environment LAZADA_API_URL"]
    assert SECRET_KEY not in result.stdout + result.stderr


# Every variable of the README's configuration table.
README_VARIABLES = {
    "LAZADA_API_URL",
    "LAZADA_USER_ID",
    "LAZADA_API_KEY",
    "LAZADA_API_KEY_FILE",
    "LAZADA_RATE_LIMIT",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "LAZADA_QUEUE",
    "LAZADA_RETRY_LADDER",
    "LAZADA_IMAGE_DEADLINE",
    "LAZADA_POLL_FIRST",
    "LAZADA_POLL_SLACK",
    "LAZADA_ORDER_REFRESH_AFTER",
    "LAZADA_REDISPATCH_AFTER",
    "LAZADA_READ_TIMEOUT",
    "LAZADA_LEASE_SECONDS",
    "LAZADA_LOG_LEVEL",
}


def test_config_json_shows_every_setting_with_where_it_came_from(cli: Cli) -> None:
    import dataclasses

    from worker.cli.main import SETTING_VARIABLES

    key_file = cli.folder / "api-key"
    key_file.write_text(SECRET_KEY)
    result = cli(
        "config",
        "--json",
        env={
            "LAZADA_API_KEY": None,
            "LAZADA_API_KEY_FILE": str(key_file),
            "LAZADA_QUEUE": "shop-7",
            "LAZADA_RETRY_LADDER": "",  # empty counts as unset, as the settings read it
        },
    )
    document = json_document(result)

    fields = {field.name for field in dataclasses.fields(Settings)}
    assert set(document) >= CONFIG_KEYS | fields | {"log_level", "sources"}
    assert {v for names in SETTING_VARIABLES.values() for v in names} >= README_VARIABLES
    sources = document["sources"]
    assert set(sources) == set(document) - {"sources"}
    assert sources["api_key"] == {"source": "file", "variable": "LAZADA_API_KEY_FILE"}
    assert sources["queue"] == {"source": "environment", "variable": "LAZADA_QUEUE"}
    assert sources["retry_ladder"] == {"source": "default", "variable": None}
    assert sources["poll_cap"] == {"source": "default", "variable": None}  # no variable
    assert (document["queue"], document["retry_ladder"]) == ("shop-7", [1, 2, 5, 15, 30, 60])
    assert (document["api_key"], document["log_level"]) == ("set", "INFO")
    assert SECRET_KEY not in result.stdout + result.stderr


def test_config_text_shows_every_setting_with_where_it_came_from(cli: Cli) -> None:
    import dataclasses

    rows = config_rows(cli("config", env={"LAZADA_LEASE_SECONDS": "120"}))

    assert set(rows) == {field.name for field in dataclasses.fields(Settings)} | {"log_level"}
    assert rows["lease_seconds"] == ["120", "environment LAZADA_LEASE_SECONDS"]
    assert rows["database_url"] == [cli.database_url, "environment DATABASE_URL"]
    assert rows["broker_url"][1] == "default"
    assert rows["retry_ladder"] == ["1,2,5,15,30,60", "default"]


@pytest.mark.parametrize("form", [["--json"], []], ids=["json", "text"])
def test_config_hides_the_database_and_broker_passwords(cli: Cli, form: list[str]) -> None:
    result = cli(
        "config",
        *form,
        env={
            "DATABASE_URL": "postgresql+psycopg://shop:TEST-DB-PASSWORD@db.example.invalid/shop",
            "CELERY_BROKER_URL": "amqp://shop:TEST-BROKER-PASSWORD@mq.example.invalid//",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "db.example.invalid" in result.stdout and "mq.example.invalid" in result.stdout
    assert "TEST-DB-PASSWORD" not in result.stdout + result.stderr
    assert "TEST-BROKER-PASSWORD" not in result.stdout + result.stderr


@pytest.mark.parametrize("form", [["--json"], []], ids=["json", "text"])
def test_config_hides_a_password_in_the_api_url_as_in_the_other_urls(
    cli: Cli, form: list[str]
) -> None:
    api_url = cli.env["LAZADA_API_URL"].replace("://", "://shop:TEST-API-PASSWORD@")
    result = cli("config", *form, env={"LAZADA_API_URL": api_url})
    assert result.returncode == 0, result.stderr
    assert "TEST-API-PASSWORD" not in result.stdout + result.stderr
    assert api_url.replace("TEST-API-PASSWORD", "***") in result.stdout


# -- db upgrade --------------------------------------------------------------------------------


def _schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()
        rows += connection.execute("SELECT 'version', version_num FROM alembic_version").fetchall()
    connection.close()
    return rows


def test_db_upgrade_creates_the_tables_on_a_new_sqlite_file(cli: Cli) -> None:
    fresh = cli.folder / "fresh.sqlite3"
    assert not fresh.exists()

    result = cli("db", "upgrade", env={"DATABASE_URL": f"sqlite:///{fresh}"})

    assert result.returncode == 0, result.stderr
    tables = {name for name, _sql in _schema(fresh)}
    expected = {"removal_jobs", "removal_batches", "removal_skus", "orders", "image_migrations"}
    assert expected | {"image_jobs", "failures", "api_calls", "version"} <= tables


def test_db_upgrade_a_second_time_changes_nothing(cli: Cli) -> None:
    fresh = cli.folder / "fresh.sqlite3"
    env = {"DATABASE_URL": f"sqlite:///{fresh}"}
    first = cli("db", "upgrade", env=env)
    assert first.returncode == 0, first.stderr
    schema = _schema(fresh)

    second = cli("db", "upgrade", env=env)

    assert second.returncode == 0, second.stderr
    assert _schema(fresh) == schema
    assert second.stdout == first.stdout  # the same revision


# -- remove-products: where the SKUs come from ------------------------------------------------


def test_remove_products_enqueues_the_argument_skus_and_prints_the_generated_key(
    cli: Cli,
) -> None:
    result = cli("remove-products", "A-1", " A-2 ", "A-1")

    assert result.returncode == 0, result.stderr
    [(task, args, kwargs, task_id)] = cli.enqueued()
    assert (task, args) == ("lazada.remove_products", [["A-1", "A-2"]])
    assert result.stdout == f"{task_id}\n"  # no key given: the task id is the key
    assert kwargs.get("key") in (None, task_id)


def test_remove_products_prints_the_given_key(cli: Cli) -> None:
    result = cli("remove-products", "A-1", "--key", "clearance-2024")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "clearance-2024\n"
    [(_task, _args, kwargs, _task_id)] = cli.enqueued()
    assert kwargs["key"] == "clearance-2024"


def test_remove_products_reads_a_file_ignoring_blank_lines_and_duplicates(cli: Cli) -> None:
    sku_file = cli.folder / "skus.txt"
    sku_file.write_text("B-1\n\n   \nB-2\r\nA-1\nB-1\n\n")

    result = cli("remove-products", "A-1", "--file", str(sku_file), "--key", "from-file")

    assert result.returncode == 0, result.stderr
    [(_task, args, _kwargs, _task_id)] = cli.enqueued()
    assert args == [["A-1", "B-1", "B-2"]]


def test_remove_products_reads_standard_input_with_file_dash(cli: Cli) -> None:
    result = cli("remove-products", "--file", "-", "--key", "from-stdin", stdin="S-1\n\nS-2\nS-1\n")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "from-stdin\n"
    [(_task, args, _kwargs, _task_id)] = cli.enqueued()
    assert args == [["S-1", "S-2"]]


def test_remove_products_with_only_blank_lines_on_standard_input_is_bad_input(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("remove-products", "--file", "-", stdin="\n  \n\n"))
    assert "no SKUs" in line


# -- read commands on stored rows ---------------------------------------------------------------


@pytest.fixture
def stored(cli: Cli) -> dict[str, str]:
    """One row of each kind, written as the worker would: what the read commands show."""
    settings = Settings.from_env(cli.env)
    sessions = sessionmaker(get_engine(cli.database_url), expire_on_commit=False)
    removal.create_job(sessions, settings, settings.account, "stored-job", ["S-1", "S-2"], BATCH)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.add(
            Order(
                account=settings.account,
                order_id=4242,
                state="fetched",
                order_number="300000042",
                price="12.50",
                gift_option=True,
                items_count=1,
                statuses=["pending"],
                address_billing={"first_name": "Ann", "post_code": "10400"},
                fetched_at=now,
                next_attempt_at=None,
            )
        )
        migration = ImageMigration(account=settings.account, key="stored-images")
        session.add(migration)
        session.flush()
        session.add(
            ImageJob(
                account=settings.account,
                migration_id=migration.id,
                request_id="REQ-STORED-1",
                urls=["https://img.example.com/1.jpg"],
                state="succeeded",
                polls=2,
                images=[{"url": "https://cdn/1.jpg", "code": "", "original_url": "x"}],
                finished_at=now,
            )
        )
        session.add_all(
            [
                Failure(
                    account=settings.account,
                    at=now - timedelta(minutes=5),
                    kind="removal_sku",
                    subject="OLD-FAIL (job k)",
                    error_code="E503",
                    message="Remove product failed",
                    attempts=1,
                ),
                Failure(
                    account=settings.account,
                    at=now,
                    kind="order",
                    subject="900000001",
                    error_code=None,
                    message="no such order",
                    attempts=3,
                ),
            ]
        )
    return {"key": "stored-job", "order_id": "4242", "request_id": "REQ-STORED-1"}


READ_COMMANDS = {
    "status": ["status", "{key}"],
    "order": ["order", "{order_id}"],
    "image-job": ["image-job", "{request_id}"],
    "image-jobs": ["image-jobs"],
    "image-jobs-by-key": ["image-jobs", "--key", "stored-images"],
    "image-jobs-by-state": ["image-jobs", "--state", "succeeded"],
    "failures": ["failures"],
    "config": ["config"],
}


@pytest.mark.parametrize("name", list(READ_COMMANDS))
def test_each_read_command_with_json_prints_one_json_document_and_nothing_else(
    cli: Cli, stored: dict[str, str], name: str
) -> None:
    args = [arg.format(**stored) for arg in READ_COMMANDS[name]]
    result = cli(*args, "--json")
    document = json_document(result)
    assert document  # the stored row, not an empty answer
    assert result.stderr == ""


@pytest.mark.parametrize("name", list(READ_COMMANDS))
def test_each_read_command_without_json_prints_text(
    cli: Cli, stored: dict[str, str], name: str
) -> None:
    args = [arg.format(**stored) for arg in READ_COMMANDS[name]]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() and result.stdout.lstrip()[0] not in "[{"
    assert result.stderr == ""


@pytest.mark.parametrize("sku", ["OLD-BAD\udcff", "OLD-BAD\uffff"], ids=["surrogate", "U+FFFF"])
def test_status_of_a_job_stored_with_a_sku_xml_cannot_carry_prints_a_whole_document(
    cli: Cli, sku: str
) -> None:
    # A job recorded before the input rule refused such SKUs.
    settings = Settings.from_env(cli.env)
    sessions = sessionmaker(get_engine(cli.database_url), expire_on_commit=False)
    removal.create_job(sessions, settings, settings.account, "old-job", [sku, "OK-1"], BATCH)
    job = json_document(cli("status", "old-job", "--json"))
    assert [s["sku"] for s in job["skus"]] == [sku, "OK-1"]
    text = cli("status", "old-job")
    assert text.returncode == 0 and text.stdout.startswith("job old-job: pending"), text.stderr


def test_status_json_of_a_job_not_yet_started_shows_it_pending(
    cli: Cli, stored: dict[str, str]
) -> None:
    job = json_document(cli("status", stored["key"], "--json"))
    assert (job["state"], job["total"], job["removed"], job["failed"]) == ("pending", 2, 0, 0)
    assert job["finished_at"] is None
    assert [s["state"] for s in job["skus"]] == ["pending", "pending"]


def test_failures_json_is_a_list_of_failures_newest_first(cli: Cli, stored: dict[str, str]) -> None:
    failures = json_document(cli("failures", "--json"))
    assert [f["subject"] for f in failures] == ["900000001", "OLD-FAIL (job k)"]
    for failure in failures:
        assert set(failure) >= FAILURE_KEYS
        assert is_iso_with_offset(failure["at"])
    assert (failures[1]["kind"], failures[1]["error_code"], failures[1]["attempts"]) == (
        "removal_sku",
        "E503",
        1,
    )


def test_failures_json_is_an_empty_list_when_nothing_failed(cli: Cli) -> None:
    assert json_document(cli("failures", "--json")) == []


@pytest.mark.parametrize(
    "args",
    [["order", "999"], ["status", "no-such-key"], ["image-job", "NO-SUCH-REQUEST"]],
    ids=["order", "status", "image-job"],
)
def test_looking_up_something_never_stored_exits_1(cli: Cli, args: list[str]) -> None:
    result = cli(*args, "--json")
    assert_one_line_error(result, 1)
    if result.stdout.strip():  # --json: at most one document on standard output
        json.loads(result.stdout)


# -- with a worker -------------------------------------------------------------------------------


@pytest.mark.slow
def test_remove_products_wait_returns_a_done_job_that_status_json_shows(
    cli: Cli, worker: WorkerProcess
) -> None:
    result = cli(
        "remove-products", "R-1", "R-2", "R-3", "R-2", "--key", "cli-job", "--wait", timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "cli-job\n"
    job = json_document(cli("status", "cli-job", "--json"))
    assert job["key"] == "cli-job"
    assert (job["state"], job["total"], job["removed"], job["failed"]) == ("done", 3, 3, 0)
    assert is_iso_with_offset(job["created_at"]) and is_iso_with_offset(job["finished_at"])
    assert [s["sku"] for s in job["skus"]] == ["R-1", "R-2", "R-3"]
    for sku in job["skus"]:
        assert set(sku) >= REMOVAL_SKU_KEYS
        assert (sku["state"], sku["error_code"]) == ("removed", None)
        assert sku["attempts"] >= 1


@pytest.mark.slow
def test_a_sku_the_api_refuses_fails_with_503_and_remove_products_wait_exits_1(
    cli: Cli, worker: WorkerProcess
) -> None:
    result = cli(
        "remove-products", "OK-1", "X-FAIL-1", "--key", "with-failure", "--wait", timeout=120
    )

    assert result.returncode == 1, result.stderr
    assert result.stdout == "with-failure\n"
    job = json_document(cli("status", "with-failure", "--json"))
    assert (job["state"], job["removed"], job["failed"]) == ("done", 1, 1)
    skus = {s["sku"]: s for s in job["skus"]}
    assert skus["OK-1"]["state"] == "removed"
    assert (skus["X-FAIL-1"]["state"], skus["X-FAIL-1"]["error_code"]) == ("failed", "E503")
    assert skus["X-FAIL-1"]["message"]


@pytest.mark.slow
def test_remove_products_wait_off_a_terminal_shows_progress_lines_and_why_skus_failed(
    cli: Cli, worker: WorkerProcess
) -> None:
    skus = ["OK-1", "X-FAIL-1", "OK-2", "Y-FAIL-2"]
    result = cli("remove-products", *skus, "--key", "told", "--wait", timeout=120)

    assert result.returncode == 1, result.stderr
    assert result.stdout == "told\n"  # standard output keeps the key alone
    lines = result.stderr.splitlines()
    progress = [line for line in lines if line.startswith("removing 4 SKUs: ")]
    # Lines counting up to the end (how far the worker got by the first look depends on the
    # machine; the line every few seconds is test_wait_off_a_terminal_prints_a_progress_...).
    counts = [int(line.split(": ")[1].split("/")[0]) for line in progress]
    assert progress and counts == sorted(counts)
    assert progress[-1].startswith("removing 4 SKUs: 4/4 (100%)")
    assert "removed 2, failed 2 of 4" in lines
    assert "  2 failed: E503 SellerSku '…' could not be removed" in lines, lines


@pytest.mark.slow
def test_fetch_order_wait_prints_each_orders_state_and_status_and_exits_1_if_one_failed(
    cli: Cli, worker: WorkerProcess
) -> None:
    result = cli("fetch-order", "190", "1003", "900000001", "--wait", timeout=120)

    assert result.returncode == 1, result.stderr
    assert len(result.stdout.splitlines()) == 3  # the task ids, as without --wait
    lines = result.stderr.splitlines()
    assert any(line.startswith("fetching 3 orders: 3/3") for line in lines), lines
    header = "order\tstate\tstatus\tGetOrder calls\terror"
    rows = {row.split("\t")[0]: row.split("\t")[1:] for row in lines[lines.index(header) + 1 :]}
    sample = rows["190 (#300125759)"]
    assert sample[0] == "fetched" and sample[3] == ""
    assert sample[1].startswith("items in 11 statuses: shipped, returned,")
    assert sample[1].endswith("(open)")
    [other] = [row for label, row in rows.items() if label.startswith("1003 (#")]
    assert other[0] == "fetched" and re.fullmatch(r"status \w+ \((open|final)\)", other[1])
    assert rows["900000001"] == ["failed", "", "1", 'E016 "900000001" Invalid Order ID']
    assert "2 fetched, 1 failed" in lines


@pytest.mark.slow
def test_migrate_images_wait_prints_each_jobs_state_and_counts_and_exits_1_if_images_failed(
    cli: Cli, worker: WorkerProcess
) -> None:
    urls = ["https://img.example.com/fine.jpg", "https://img.example.com/broken-link.jpg"]
    result = cli("migrate-images", *urls, "--key", "half", "--wait", timeout=120)

    assert result.returncode == 1, result.stderr
    assert result.stdout == "half\n"
    lines = result.stderr.splitlines()
    header = "request id\taction\tstate\timages\terrors\tpolls\terror"
    [row] = lines[lines.index(header) + 1 : lines.index(header) + 2]
    assert row.split("\t")[1:5] == ["MigrateImages", "partial", "1", "1"]
    assert "1 image job(s): 1 partial; 1 image(s) migrated, 1 error(s)" in lines


@pytest.mark.slow
def test_a_fetched_orders_attempts_count_the_getorder_calls_of_its_fetch(
    cli: Cli, sandbox: Sandbox
) -> None:
    def get_orders() -> int:
        return sum(1 for call in sandbox.calls() if call.action == "GetOrder")

    env = {**cli.env, "LAZADA_RETRY_LADDER": "0.3,0.3,0.3,0.3,0.3,0.3,0.3,0.3"}
    worker = WorkerProcess(env, cli.folder / "worker.log").start()
    try:
        sandbox.config.fault_kinds = ("e006",)
        sandbox.config.fault_rate = 1.0  # transient errors until two calls have failed
        fetch = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "fetch-order", "190", "--wait"],
            env=env,
            cwd=cli.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: get_orders() >= 2, what="two failed GetOrder calls")
        sandbox.config.fault_rate = 0.0
        assert fetch.wait(timeout=120) == 0

        first = json_document(cli("order", "190", "--json"))
        assert (first["state"], first["message"]) == ("fetched", None)
        assert first["attempts"] == get_orders() >= 3

        again = cli("fetch-order", "190", "--wait", timeout=120)  # a new fetch counts anew
        assert again.returncode == 0, again.stderr
        assert json_document(cli("order", "190", "--json"))["attempts"] == 1
    finally:
        worker.stop()
        print(worker.log()[-20000:])


@pytest.mark.slow
def test_fetch_order_wait_stores_the_order_that_order_json_shows(
    cli: Cli, worker: WorkerProcess
) -> None:
    result = cli("fetch-order", "190", "--wait", timeout=120)

    assert result.returncode == 0, result.stderr
    order = json_document(cli("order", "190", "--json"))
    assert (order["order_id"], order["state"]) == (190, "fetched")
    assert order["order_number"] == "300125759"
    assert order["price"] == "100.00"
    assert order["gift_option"] is False
    assert isinstance(order["statuses"], list) and "shipped" in order["statuses"]
    billing = order["address_billing"]
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in billing), billing
    assert (billing["post_code"], billing["first_name"]) == ("33333", "First Name 3 Test")
    assert is_iso_with_offset(order["fetched_at"]) and is_iso_with_offset(order["created_at"])


@pytest.mark.slow
def test_fetch_order_wait_on_a_stored_order_returns_once_it_is_stored_again(
    cli: Cli, worker: WorkerProcess, sandbox: Sandbox
) -> None:
    first = cli("fetch-order", "190", "--wait", timeout=120)
    assert first.returncode == 0, first.stderr
    fetched_before = json_document(cli("order", "190", "--json"))["fetched_at"]
    sandbox.config.latency = 2.0  # the new fetch is still in flight when a worker claims it

    second = cli("fetch-order", "190", "--wait", timeout=120)

    assert second.returncode == 0, second.stderr
    order = json_document(cli("order", "190", "--json"))
    assert order["fetched_at"] > fetched_before


@pytest.mark.slow
def test_migrate_images_wait_then_image_jobs_lists_the_jobs_newest_first(
    cli: Cli, worker: WorkerProcess
) -> None:
    first = cli(
        "migrate-images", "https://img.example.com/a.jpg", "--key", "older", "--wait", timeout=120
    )
    assert first.returncode == 0, first.stderr
    urls = [f"https://img.example.com/{n}.jpg" for n in range(1, 10)]  # two calls: 8 + 1
    second = cli("migrate-images", *urls, "--key", "newer", "--wait", timeout=120)
    assert second.returncode == 0, second.stderr
    assert second.stdout == "newer\n"

    newer = json_document(cli("image-jobs", "--key", "newer", "--json"))
    everything = json_document(cli("image-jobs", "--json"))

    assert len(newer) == 2
    assert all(job["state"] == "succeeded" and job["request_id"] for job in newer)
    assert sorted(image["original_url"] for job in newer for image in job["images"]) == sorted(urls)
    older = json_document(cli("image-jobs", "--key", "older", "--json"))
    assert [job["request_id"] for job in everything] == [
        *(job["request_id"] for job in newer),
        older[0]["request_id"],
    ]


@pytest.mark.slow
def test_image_job_json_shows_one_job_a_migration_started(cli: Cli, worker: WorkerProcess) -> None:
    result = cli(
        "migrate-images",
        "https://img.example.com/one.jpg",
        "--key",
        "single",
        "--wait",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    [listed] = json_document(cli("image-jobs", "--key", "single", "--json"))

    job = json_document(cli("image-job", listed["request_id"], "--json"))

    assert job == listed
    assert (job["action"], job["state"]) == ("MigrateImages", "succeeded")
    assert [image["original_url"] for image in job["images"]] == ["https://img.example.com/one.jpg"]
    assert job["errors"] == [] and job["polls"] >= 1
    assert is_iso_with_offset(job["created_at"]) and is_iso_with_offset(job["finished_at"])


def test_wait_draws_a_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import pty
    import select

    from worker.cli import main as cli_module

    steps = iter([(0, 4, False), (2, 4, False), (4, 4, True)])
    master, slave = pty.openpty()
    with os.fdopen(slave, "w", encoding="utf-8") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        cli_module._wait("removing 4 SKUs", lambda: next(steps), sleep=lambda _: None)
        terminal.flush()
        drawn = ""
        while select.select([master], [], [], 0.5)[0]:  # all the terminal has, in pieces
            drawn += os.read(master, 4096).decode()
    os.close(master)
    assert "removing 4 SKUs" in drawn and "4/4" in drawn
    assert "━" in drawn  # rich's bar, not lines of text


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_off_a_terminal_prints_a_progress_line_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from worker.cli import main as cli_module
    from worker.cli.terminal import PLAIN_PROGRESS_EVERY

    clock = FakeClock()
    # 100 SKUs, 2 more final at each poll (every 0.5 s): 25 s of work.
    polls = iter(range(51))

    def progress() -> tuple[int, int, bool]:
        done = 2 * next(polls)
        return done, 100, done == 100

    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    cli_module._wait("removing 100 SKUs", progress, clock=clock, sleep=clock.sleep)

    lines = piped.getvalue().splitlines()
    expected = [int(4 * PLAIN_PROGRESS_EVERY * n) for n in range(int(25 / PLAIN_PROGRESS_EVERY))]
    assert [int(re.match(r"removing 100 SKUs: (\d+)/100", line)[1]) for line in lines] == [
        *expected,
        100,
    ], lines
    assert "4.0/s" in lines[2] and "left" in lines[2]  # the rate and ETA, as rich estimates them
    assert "\r" not in piped.getvalue() and "\x1b" not in piped.getvalue()  # no redrawing


def test_every_option_of_every_command_has_help_text() -> None:
    import argparse

    from worker.cli.main import _parser

    def walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            yield path, action
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, f"{path} {name}")

    actions = list(walk(_parser(), "lazada-worker"))
    assert len(actions) > 40  # the walk reached every command
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, action in actions
        if not (action.help and action.help.strip())
    ]
    assert missing == []


# -- a closed pipe ---------------------------------------------------------------------------


@pytest.fixture
def many_stored(cli: Cli) -> str:
    """A job of 3,000 SKUs and 1,000 failures: more output than a pipe holds."""
    settings = Settings.from_env(cli.env)
    sessions = sessionmaker(get_engine(cli.database_url), expire_on_commit=False)
    removal.create_job(
        sessions,
        settings,
        settings.account,
        "big-job",
        [f"BIG-SKU-{n:05d}" for n in range(3000)],
        BATCH,
    )
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.add_all(
            Failure(
                account=settings.account,
                at=now - timedelta(seconds=n),
                kind="removal_sku",
                subject=f"BIG-SKU-{n:05d} (job big-job)",
                error_code=503,
                message=f"SellerSku 'BIG-SKU-{n:05d}' could not be removed",
                attempts=1,
            )
            for n in range(1000)
        )
    return "big-job"


@pytest.mark.parametrize(
    "args", [["status", "big-job", "--json"], ["failures"], ["failures", "--json"]]
)
def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(
    cli: Cli, many_stored: str, args: list[str]
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", *args],
        env=cli.env,
        cwd=cli.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()  # `| head -1`: one line, then the reader is gone
    process.stdout.close()
    status = process.wait(timeout=60)
    errors = process.stderr.read().decode()
    assert first.strip()
    assert errors == ""  # no BrokenPipeError traceback, no "Exception ignored"
    assert status == 1


# -- one spelling of an error code ----------------------------------------------------------


@pytest.fixture
def failed_sku(cli: Cli) -> str:
    """A job whose SKU failed with code E007, and its failure row, as the worker records them."""
    settings = Settings.from_env(cli.env)
    sessions = sessionmaker(get_engine(cli.database_url), expire_on_commit=False)
    removal.create_job(sessions, settings, settings.account, "coded-job", ["OK-1", "BAD-7"], BATCH)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        job = session.scalars(select(RemovalJob).where(RemovalJob.key == "coded-job")).one()
        batch = session.scalars(select(RemovalBatch).where(RemovalBatch.job_id == job.id)).one()
        batch.skus, batch.first_position, batch.state = None, None, "done"
        job.finished_at = now
        for position, (sku, state, code) in enumerate(
            [("OK-1", "removed", None), ("BAD-7", "failed", "E007")]
        ):
            session.add(
                RemovalSku(
                    account=settings.account,
                    job_id=job.id,
                    batch_id=batch.id,
                    position=position,
                    sku=sku,
                    state=state,
                    attempts=1,
                    error_code=code,
                    message="Login failed. Signature mismatching" if code else None,
                )
            )
        session.add(
            Failure(
                account=settings.account,
                at=now,
                kind="removal_sku",
                subject="BAD-7 (job coded-job)",
                error_code="E007",
                message="Login failed. Signature mismatching",
                attempts=1,
            )
        )
    return "coded-job"


def test_status_and_failures_spell_an_error_code_the_same_way(cli: Cli, failed_sku: str) -> None:
    status = cli("status", failed_sku)
    failures = cli("failures")

    assert status.returncode == 0 and failures.returncode == 0, status.stderr + failures.stderr
    for output in (status.stdout, failures.stdout):
        assert "E007" in output, output
        assert not re.search(r"\bE7\b", output), output


def test_status_text_groups_the_reasons_skus_failed(cli: Cli, failed_sku: str) -> None:
    result = cli("status", failed_sku)
    assert result.returncode == 0, result.stderr
    assert "1 failed: E007 Login failed. Signature mismatching" in result.stdout
