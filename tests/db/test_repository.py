"""The repository as a fresh clone sees it: what the README names is in it, and runs leave it
as it was."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.processes import REPO


def test_every_path_the_readme_names_is_a_file_in_the_repository() -> None:
    text = (REPO / "README.md").read_text()
    # Paths in backticks or in links: `docs/contract.md`, [the contract](docs/contract.md).
    named = set(re.findall(r"`([\w./-]+/[\w.-]+\.(?:md|py|toml|png))`", text))
    named |= {link for link in re.findall(r"\]\(([^)#\s]+)\)", text) if "://" not in link}
    assert named, "the README names no file"
    missing = sorted(
        path
        for path in named
        if not (REPO / path).resolve().is_relative_to(REPO) or not (REPO / path).exists()
    )
    assert not missing, f"README names files a clone does not have: {missing}"


def test_the_broker_benchmark_writes_nothing_in_the_working_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "embedded_broker.py"), "20"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
