"""`lazada-worker demo`, the README's first command, as a newcomer runs it."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

KEY = "RECOGNISABLE-demo-key-7c1f0e"


def test_the_demo_does_the_whole_job_and_leaks_the_key_nowhere(tmp_path: Path) -> None:
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
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "removal job demo-removal: 293 removed, 7 failed" in result.stdout
    assert "order 900000001: failed" in result.stdout
    assert re.search(r"image job \w+: partial", result.stdout)

    folder = Path(re.search(r"data in (\S+)", result.stderr).group(1))  # type: ignore[union-attr]
    with sqlite3.connect(folder / "lazada-worker.sqlite3") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = "\n".join(
            repr(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"')
        )
    log = (folder / "worker.log").read_text(errors="replace")
    assert "DEMO-SKU-0040-FAIL" in dump  # the dump holds the outcomes ...
    for text in (output, dump, log):  # ... and never the key
        assert KEY not in text
