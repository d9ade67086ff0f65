"""The repository as a fresh clone sees it: what the README names is in it, and runs leave it
as it was."""

from __future__ import annotations

import os
import re
import shlex
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
        [sys.executable, "-m", "bench", "embedded-broker", "--messages", "20"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "filesystem" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _bench_commands(text: str) -> list[str]:
    """Every `python -m bench ...` command a document names, in code spans or code blocks."""
    spans = re.findall(r"`(python -m bench [^`]+)`", text)
    lines = [
        line.strip() for line in text.splitlines() if line.strip().startswith("python -m bench ")
    ]
    return sorted(set(spans) | {line.split("  #")[0].strip() for line in lines})


def test_every_benchmark_command_in_the_results_is_one_the_bench_accepts() -> None:
    from bench.__main__ import parser

    commands = _bench_commands((REPO / "bench" / "RESULTS.md").read_text())
    assert commands, "bench/RESULTS.md names no command"
    refused = []
    for command in commands:
        argv = shlex.split(command)[3:]
        if argv and argv[0].isupper():
            continue  # a pattern (`python -m bench SCENARIO [options]`), not a command
        try:
            parser().parse_args(argv)
        except SystemExit as exit_:  # argparse's way out: 0 after --help, 2 for a bad command
            if exit_.code:
                refused.append(command)
    assert not refused, f"bench/RESULTS.md has commands the bench refuses: {refused}"


def test_every_file_the_results_name_is_in_the_repository() -> None:
    text = (REPO / "bench" / "RESULTS.md").read_text()
    named = set(re.findall(r"\]\(([^)#\s]+)\)", text))  # pictures and links
    named |= set(re.findall(r"`(bench/data/[\w./-]+)`", text))  # the figures' JSON
    missing = sorted(
        path
        for path in named
        if not (REPO / "bench" / path).exists() and not (REPO / path).exists()
    )
    assert not missing, f"bench/RESULTS.md names files the repository does not have: {missing}"
