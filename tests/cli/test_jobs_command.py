"""`lazada-worker jobs`: removal jobs newest first, of every account or of one, by state, as the
console's jobs page lists them (the same jobs, states and counts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import html
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import Client

from tests.cli.command_line import Cli, assert_one_line_error, controlled_env, json_document
from tests.support.worker_stack import BATCH
from worker.accounts.platforms import PlatformFor
from worker.db.models import RemovalBatch, RemovalJob
from worker.sandbox.sellercenter import Sandbox
from worker.services import removal
from worker.settings import Settings
from worker.web.app import Console

PAGE_COLUMNS = ["account", "key", "state", "removed", "failed", "cancelled", "pending", "total"]


@pytest.fixture
def cli_on(database_url: str, sandbox: Sandbox, tmp_path: Path) -> Cli:
    """The command line on the test's database (SQLite, and PostgreSQL)."""
    return Cli(controlled_env(database_url, sandbox), tmp_path, tmp_path / "results.sqlite3")


@pytest.fixture
def stored_jobs(
    sessions: sessionmaker[Session],
    settings: Settings,
    platforms: PlatformFor,
    monkeypatch: pytest.MonkeyPatch,
) -> list[str]:
    """A done job with failed SKUs, a running one, a pending one, and another account's
    pending one: their keys, oldest first."""
    monkeypatch.setattr(removal, "RUNNER_SECONDS", 0.0)  # a task does one batch
    account = settings.account
    skus = [f"J-{n}" + ("-FAIL" if n % 9 == 0 else "") for n in range(60)]
    _, messages = removal.create_job(sessions, settings, account, "done-job", skus, BATCH)
    queue = list(messages)
    while queue:
        queue += removal.process_batch(sessions, platforms, settings, *queue.pop(0).args)
    running = [f"R-{n}" for n in range(2 * BATCH)]
    _, messages = removal.create_job(sessions, settings, account, "running-job", running, BATCH)
    removal.process_batch(sessions, platforms, settings, *messages[0].args)  # one of two
    removal.create_job(sessions, settings, account, "pending-job", ["P-1", "P-2"], BATCH)
    with sessions.begin() as session:
        job = RemovalJob(account="other-shop", key="elsewhere", total=1, pending_batches=1)
        session.add(job)
        session.flush()
        # As create_job writes a job: its batch holds its SKUs until a call.
        session.add(
            RemovalBatch(account="other-shop", job_id=job.id, first_position=0, skus='["O-1"]')
        )
    return ["done-job", "running-job", "pending-job", "elsewhere"]


def _page_rows(settings: Settings, query: str = "") -> list[dict[str, Any]]:
    """The console's jobs page, its table read back as the CLI's fields."""
    answer = Client(Console(settings, "http://127.0.0.1:8700", send=lambda m: None)).get(
        f"/jobs{query}"
    )
    assert answer.status_code == 200
    rows = []
    for tr in html.fromstring(answer.get_data(as_text=True)).xpath("//table//tr[td[2]]"):
        cells = [td.text_content().strip() for td in tr.xpath("td")][: len(PAGE_COLUMNS)]
        rows.append(
            {
                name: int(value) if name in PAGE_COLUMNS[3:] else value
                for name, value in zip(PAGE_COLUMNS, cells, strict=True)
            }
        )
    return rows


def _fields(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{name: job[name] for name in PAGE_COLUMNS} for job in jobs]


def test_jobs_lists_every_accounts_jobs_newest_first_as_the_console_page_does(
    cli_on: Cli, settings: Settings, stored_jobs: list[str]
) -> None:
    listed = json_document(cli_on("jobs", "--json"))
    assert [job["key"] for job in listed] == stored_jobs[::-1]
    assert {job["key"]: job["state"] for job in listed} == {
        "done-job": "done",
        "running-job": "running",
        "pending-job": "pending",
        "elsewhere": "pending",
    }
    assert _fields(listed) == _page_rows(settings)
    done = listed[-1]
    assert (done["removed"], done["failed"], done["pending"]) == (53, 7, 0)
    assert done["failed_skus_truncated"] is True  # the page's first three failed SKUs


@pytest.mark.parametrize("state", ["pending", "running", "done"])
def test_jobs_state_filter_agrees_with_the_console_page(
    cli_on: Cli, settings: Settings, stored_jobs: list[str], state: str
) -> None:
    listed = json_document(cli_on("jobs", "--state", state, "--json"))
    assert listed, state
    assert {job["state"] for job in listed} == {state}
    assert _fields(listed) == _page_rows(settings, f"?state={state}")


def test_jobs_of_one_account_and_the_newest_few(
    cli_on: Cli, settings: Settings, stored_jobs: list[str]
) -> None:
    mine = json_document(cli_on("jobs", "--account", settings.account, "--json"))
    assert [job["key"] for job in mine] == ["pending-job", "running-job", "done-job"]
    assert _fields(mine) == _page_rows(settings, f"?account={settings.account}")
    newest = json_document(cli_on("jobs", "--limit", "2", "--json"))
    assert [job["key"] for job in newest] == ["elsewhere", "pending-job"]
    assert len(json_document(cli_on("jobs", "--limit", "0", "--json"))) == 4  # 0: all


def test_jobs_prints_a_table_row_per_job(
    cli_on: Cli, settings: Settings, stored_jobs: list[str]
) -> None:
    result = cli_on("jobs", "--state", "running")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split("\t")[:3] == ["account", "key", "state"]
    assert [row.split("\t")[:3] for row in rows] == [[settings.account, "running-job", "running"]]


def test_jobs_refuses_a_negative_limit_and_an_unknown_state_or_account(
    cli_on: Cli, stored_jobs: list[str]
) -> None:
    assert "--limit" in assert_one_line_error(cli_on("jobs", "--limit", "-1"), 2)
    assert cli_on("jobs", "--state", "stuck").returncode == 2
    assert "nobody" in assert_one_line_error(cli_on("jobs", "--account", "nobody"), 2)


def test_jobs_says_so_when_there_are_none(cli_on: Cli) -> None:
    result = cli_on("jobs", "--state", "done")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no done removal jobs for any account"
    assert json_document(cli_on("jobs", "--json")) == []
