"""--wait's progress on standard error: a bar on a terminal, a plain line every few seconds
elsewhere (with the rate and what is left)."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import sys

import pytest

from worker.cli import output
from worker.cli.terminal import PLAIN_PROGRESS_EVERY


def test_wait_draws_a_progress_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = iter([(0, 4, False), (2, 4, False), (4, 4, True)])
    master, slave = pty.openpty()
    with os.fdopen(slave, "w", encoding="utf-8") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        output.wait("removing 4 SKUs", lambda: next(steps), sleep=lambda _: None)
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
    clock = FakeClock()
    # 100 SKUs, 2 more final at each poll (every 0.5 s): 25 s of work.
    polls = iter(range(51))

    def progress() -> tuple[int, int, bool]:
        done = 2 * next(polls)
        return done, 100, done == 100

    piped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", piped)
    output.wait("removing 100 SKUs", progress, clock=clock, sleep=clock.sleep)

    lines = piped.getvalue().splitlines()
    expected = [int(4 * PLAIN_PROGRESS_EVERY * n) for n in range(int(25 / PLAIN_PROGRESS_EVERY))]
    assert [int(re.match(r"removing 100 SKUs: (\d+)/100", line)[1]) for line in lines] == [
        *expected,
        100,
    ], lines
    assert "4.0/s" in lines[2] and "left" in lines[2]  # the rate and ETA, as rich estimates them
    assert "\r" not in piped.getvalue() and "\x1b" not in piped.getvalue()  # no redrawing
