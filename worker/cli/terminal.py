"""What the command line draws: progress while it waits, and tables.

On a terminal both are rich's (a live bar with rate and ETA, tables fitted to the width). Off a
terminal (a pipe, a log, CI) redrawing is noise and wrapped cells break grep: progress becomes a
plain line every few seconds, and a table one tab-separated line a row under a header line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from types import TracebackType
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

# Seconds between progress lines off a terminal: often enough to show life in a CI log, rarely
# enough that a long removal does not flood it.
PLAIN_PROGRESS_EVERY = 5.0


class _RateColumn(ProgressColumn):
    """Items a second, as rich estimates it (rich's own speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f}/s", style="progress.data.speed")


class WaitProgress:
    """Progress of one piece of work towards a total, drawn on `stream` (standard error)."""

    def __init__(
        self,
        describe: str,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        every: float = PLAIN_PROGRESS_EVERY,
    ) -> None:
        self.describe = describe
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.clock = clock
        self.every = every
        self._last_line: float | None = None
        # Off a terminal the Progress draws nothing but still keeps the samples that rate and
        # ETA are estimated from.
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
            get_time=clock,
            disable=not self.tty,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> WaitProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def update(self, done: int, total: int, final: bool = False) -> None:
        """Record `done` of `total`; off a terminal, print a line when one is due (or final)."""
        if self._task is None:
            self._task = self._progress.add_task(self.describe, total=total, completed=done)
        else:
            self._progress.update(self._task, total=total, completed=done)
        if self.tty:
            return
        now = self.clock()
        if final or self._last_line is None or now - self._last_line >= self.every:
            self._last_line = now
            print(self.plain_line(), file=self.stream, flush=True)

    def plain_line(self) -> str:
        assert self._task is not None
        task = self._progress.tasks[self._task]
        done, total = int(task.completed), int(task.total or 0)
        line = f"{self.describe}: {done}/{total}"
        if total:
            line += f" ({100 * done // total}%)"
        if task.speed:
            line += f", {task.speed:.1f}/s"
        remaining = task.time_remaining
        if remaining is not None and done < total:
            line += f", about {timedelta(seconds=int(remaining))} left"
        return line


def print_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    stream: IO[str] | None = None,
    title: str | None = None,
) -> None:
    """A table on `stream` (standard output): rich's on a terminal, tab-separated elsewhere.

    Cells are shown as text, never as rich markup: an API message may hold brackets."""
    out = stream if stream is not None else sys.stdout
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    if out.isatty():
        table = Table(title=title, title_justify="left")
        for header in headers:
            # Fold, never cut: a cell may be an id that is only useful whole.
            table.add_column(header, overflow="fold")
        for row in cells:
            table.add_row(*(Text(cell) for cell in row))
        Console(file=out).print(table)
        return
    if title:
        print(title, file=out)
    for row in [list(headers), *cells]:
        print("\t".join(" ".join(cell.split()) for cell in row), file=out)
