"""`lazada-worker demo`, the README's first command, as a newcomer runs it."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from worker.sandbox.lazop.config import LazopSandboxConfig

pytestmark = pytest.mark.slow

KEY = "RECOGNISABLE-demo-key-7c1f0e"


@dataclass
class DemoRun:
    result: subprocess.CompletedProcess[str]
    env: dict[str, str]
    cwd: Path


def section(demo: DemoRun, account: str) -> str:
    """The summary of one of the demo's accounts (each begins "== account NAME (...)")."""
    parts = re.split(r"^== account (\S+) .*$", demo.result.stdout, flags=re.M)
    found = dict(zip(parts[1::2], parts[2::2], strict=True))
    assert account in found, demo.result.stdout
    return found[account]


LEGACY = "demo-sellercenter"
LAZOP = "demo-lazop"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """One run of the demo as a newcomer starts it (it takes a while: the tests share it)."""
    tmp_path = tmp_path_factory.mktemp("demo")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LAZADA_", "CELERY_", "DATABASE_URL"))
    }
    env["LAZADA_SANDBOX_API_KEY"] = KEY
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo", "--timeout", "150"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
    )
    env.pop("LAZADA_SANDBOX_API_KEY")
    return DemoRun(result, env, tmp_path)


def test_the_demo_does_the_whole_job_and_leaks_the_key_nowhere(demo: DemoRun) -> None:
    result = demo.result
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    legacy = section(demo, LEGACY)
    assert "removal job demo-removal: 293 removed, 7 failed" in legacy
    assert re.search(r"order 900000001: failed: E016 .*Invalid Order ID", legacy)
    assert re.search(r"image job \w+: partial", legacy)

    folder = Path(re.search(r"data in (\S+)", result.stderr).group(1))  # type: ignore[union-attr]
    with sqlite3.connect(folder / "lazada-worker.sqlite3") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = "\n".join(
            repr(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"')
        )
    log = (folder / "worker.log").read_text(errors="replace")
    assert "DEMO-SKU-0040-FAIL" in dump  # the dump holds the outcomes ...
    lazop_secret = LazopSandboxConfig().app_secret
    for text in (output, dump, log):  # ... and never the key, nor the lazop app's secret
        assert KEY not in text
        assert lazop_secret not in text


@pytest.mark.parametrize("account", [LEGACY, LAZOP])
def test_the_demos_failures_hint_works_as_printed(demo: DemoRun, account: str) -> None:
    lines = section(demo, account).splitlines()
    [at] = [
        n for n, line in enumerate(lines) if line.endswith("failure(s) recorded; see them with:")
    ]
    recorded = int(lines[at].split()[0])
    command = lines[at + 1].strip()

    shown = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        env=demo.env,  # no LAZADA_* and no DATABASE_URL: only what the hint says
        cwd=demo.cwd,
        timeout=60,
    )

    assert shown.returncode == 0, shown.stderr
    header, *rows = shown.stdout.splitlines()
    assert header.startswith("at\tkind\tsubject")
    assert len(rows) == recorded == 9
    code = "E503" if account == LEGACY else "503"  # each platform spells its own codes
    assert sum("DEMO-SKU-" in row and code in row for row in rows) == 7


def test_the_demo_says_why_its_skus_failed(demo: DemoRun) -> None:
    assert "  7 SKU(s) failed: E503 SellerSku '…' could not be removed" in section(demo, LEGACY)


def test_the_demo_shows_each_orders_status_as_the_api_defines_it(demo: DemoRun) -> None:
    orders = {
        int(match[1]): match[2]
        for match in re.finditer(
            r"^  order (\d+) [^:]*: fetched; (.*)$", section(demo, LEGACY), re.M
        )
    }
    assert sorted(orders) == [190, 1001, 1002, 1003]
    assert orders[190].startswith("items in 11 statuses: shipped, returned, ")
    assert "(open)" in orders[190]
    for order_id in (1001, 1002, 1003):  # one status each: the order's own, open or final
        assert re.match(r"status \w+ \((open|final)\); ", orders[order_id]), orders[order_id]
    assert "GetOrder gives each item group's status" in demo.result.stdout


def test_the_demo_does_the_same_jobs_on_an_open_platform_account_side_by_side(
    demo: DemoRun,
) -> None:
    lazop = section(demo, LAZOP)
    assert "(lazop: the Lazada Open Platform)" in demo.result.stdout
    assert "removal job demo-removal: 293 removed, 7 failed" in lazop
    assert len(re.findall(r"^  order \d+ [^:]*: fetched; ", lazop, re.M)) == 4
    assert re.search(r"order 900000001: failed: 16 ", lazop)
    assert re.search(r"image job \w+: (partial|succeeded)", lazop)
    assert "/product/remove" in lazop  # its calls, in its own API's names


def test_the_demo_prints_the_consoles_address_and_the_console_reads_its_database(
    demo: DemoRun,
) -> None:
    from werkzeug.test import Client

    from worker.settings import Settings
    from worker.web.app import Console

    hint = re.search(
        r"^see it all in the console: (DATABASE_URL=(\S+) .* web)$", demo.result.stdout, re.M
    )
    assert hint is not None, demo.result.stdout
    assert "http://127.0.0.1:8700/" in demo.result.stdout
    env = {**demo.env, "DATABASE_URL": hint.group(2).strip("'")}  # only what the hint says
    console = Console(Settings.from_env(env), "http://127.0.0.1:8700", send=lambda m: None)
    page = Client(console).get("/").get_data(as_text=True)
    for account in (LEGACY, LAZOP):
        assert account in page
