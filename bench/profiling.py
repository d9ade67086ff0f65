"""Where a worker's time goes: py-spy sampling the thread that holds each worker's GIL while
a workload runs (`--profile`), and the shares of a profile's samples by where they are.

    python -m bench profile-shares bench/profiles/removal-redis/worker-*.folded

py-spy is a bench-only dependency (`pip install py-spy`); folded stacks go to
`bench/profiles/`, which git ignores.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.stack import REPO, BenchError

PROFILES = Path(__file__).resolve().parent / "profiles"


class Profiler:
    """py-spy sampling the worker processes' GIL holder while a workload runs (if installed)."""

    def __init__(self, pids: list[int], out: Path, rate: int = 250) -> None:
        self.out = out
        self.processes: list[tuple[Path, subprocess.Popen[bytes]]] = []
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            raise BenchError("py-spy is not installed (pip install py-spy)")
        out.mkdir(parents=True, exist_ok=True)
        for pid in pids:
            path = out / f"worker-{pid}.folded"
            command = [py_spy, "record", "--pid", str(pid), "--rate", str(rate)]
            # --gil: only the thread holding the GIL is sampled. A worker of threads is bound by
            # its GIL, so that is where its time goes; threads waiting on sockets are left out.
            command += ["--format", "raw", "--output", str(path), "--nonblocking", "--gil"]
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            self.processes.append((path, process))
        time.sleep(0.5)  # let py-spy attach before the work starts

    def stop(self) -> dict[str, Any]:
        """Stop sampling; return the top frames by own samples and by inclusive samples."""
        for _, process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for _, process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for path, _ in self.processes:
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                stack, _, count_text = line.rpartition(" ")
                if not count_text.isdigit():
                    continue
                count = int(count_text)
                frames = [_short(frame) for frame in stack.split(";")[1:]]  # [0]: the thread
                total += count
                if frames:
                    own[frames[-1]] += count
                for frame in set(frames):
                    inclusive[frame] += count
        return {"samples": total, "own": own, "inclusive": inclusive}


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py:123)"; keeps site-packages apart.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    marker = "site-packages/"
    if marker in where:
        where = where.split(marker, 1)[1]
    elif str(REPO) in where:
        where = where.split(str(REPO) + "/", 1)[1]
    else:
        where = where.rsplit("/", 1)[-1]
    return f"{name} ({where})"


# Where a removal's samples go: each stack counts under the first row whose test matches it.
ROWS: list[tuple[str, Callable[[str], bool]]] = [
    (
        "job task: publishing the batch messages",
        lambda s: "ServiceTask.publish" in s and "remove_products (tasks/removal.py" in s,
    ),
    ("job task: checking the SKUs, recording the job", lambda s: "remove_products (tasks/" in s),
    (
        "batch task: the client call (sign, HTTP, parse, rate limiter)",
        lambda s: "remove_batch" in s and "SellerCenterClient" in s,
    ),
    (
        "batch task: SQLAlchemy and psycopg",
        lambda s: "remove_batch" in s and ("sqlalchemy/" in s or "psycopg/" in s),
    ),
    ("batch task: the rest", lambda s: "remove_batch" in s),
    ("Celery around the tasks, in the threads (trace, ack, log)", lambda s: "_WorkItem.run" in s),
    ("Celery's consumer loop, main thread (receive, QoS, dispatch)", lambda s: "asynloop" in s),
    ("other (stacks py-spy cut short, beat, idle loop)", lambda s: True),
]


def shares(paths: list[Path]) -> int:
    """Print the share of the samples under each row of ROWS, as a Markdown table's rows."""
    counts: Counter[str] = Counter()
    for path in paths:
        with path.open() as folded:
            for line in folded:
                stack, _, samples = line.rstrip().rpartition(" ")
                name = next(name for name, matches in ROWS if matches(stack))
                counts[name] += int(samples)
    total = sum(counts.values()) or 1
    print(f"{sum(counts.values())} samples")
    for name, _ in ROWS:
        print(f"| {100 * counts[name] / total:5.1f}% | {name} |")
    return 0


def register(scenarios: Any) -> None:
    p = scenarios.add_parser(
        "profile-shares",
        help="shares of a --profile run's GIL samples by where they are",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folded", type=Path, nargs="+", help="folded stacks a --profile run wrote")
    p.set_defaults(main=lambda args: shares(args.folded))
