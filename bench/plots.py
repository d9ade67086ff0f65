"""PNG plots from benchmark figures (the JSON that `python -m bench removal|polling --json`
prints).

    python -m bench plots \\
        --throughput bench/data/sweep-embedded-c{1,2,4,8,16}.json \\
        --polling bench/data/polling-redis-2000.json bench/data/polling-redis-200.json \\
        --out bench

writes bench/throughput.png (API calls per second against calls in flight, with the ideal
in-flight / latency) and bench/polling.png (per image job: GetResponse polls and detection
delay against the job's duration, with the schedule's own count of polls and the targets).
Needs matplotlib, a bench-only dependency: `pip install matplotlib`.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    """matplotlib, imported only when a plot is drawn: no other scenario needs it."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def load(paths: list[Path]) -> list[dict[str, Any]]:
    """Every figures object in the files (a list, as workloads print with --json, or one)."""
    figures: list[dict[str, Any]] = []
    for path in paths:
        data = json.loads(path.read_text())
        figures.extend(data if isinstance(data, list) else [data])
    return figures


def throughput(figures: list[dict[str, Any]], out: Path) -> Path:
    """Calls per second (API calls / measured s) against calls in flight, per stack/latency."""
    plt = _pyplot()
    from matplotlib.ticker import ScalarFormatter

    series: dict[tuple[str, str, float], list[tuple[int, float, float | None]]] = {}
    for fig in figures:
        in_flight = fig["processes"] * fig["concurrency"]
        rate = fig["api_calls"] / fig["measured_s"]
        key = (fig["workload"], fig["stack"], fig["latency_s"])
        series.setdefault(key, []).append((in_flight, rate, fig.get("efficiency")))
    fig_, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    top = 0.0
    for (workload, stack, latency), points in sorted(series.items()):
        points.sort()
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        ax.plot(xs, ys, "o-", label=f"measured: {workload}, {stack}, {latency * 1000:.0f} ms")
        for x, y, eff in points:
            if eff is not None:
                ax.annotate(f"{eff:.2f}", (x, y), textcoords="offset points", xytext=(6, -12))
        if latency > 0:
            ideal = [x / latency for x in xs]
            ax.plot(xs, ideal, "--", color="grey", label=f"ideal: in flight / {latency:g} s")
            top = max(top, max(ideal))
        top = max(top, max(ys))
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({p[0] for pts in series.values() for p in pts}))
    ax.get_xaxis().set_major_formatter(ScalarFormatter())
    ax.set_ylim(0, top * 1.1)
    ax.set_xlabel("calls in flight (worker threads x processes)")
    ax.set_ylabel("API calls per second")
    ax.set_title("Removal throughput (labels: efficiency = ideal / measured time)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    fig_.tight_layout()
    path = out / "throughput.png"
    fig_.savefig(path)
    plt.close(fig_)
    return path


def schedule_polls(duration: float, first: float, growth: float, slack: float, cap: float) -> int:
    """GetResponse calls the worker's schedule makes for a job of `duration` s, with no lag:
    the first at `first` s, then every max(first, growth x age + slack) s (at most `cap`)."""
    age, polls = first, 1
    while age < duration:
        age += min(cap, max(first, growth * age + slack))
        polls += 1
    return polls


def polling(figures: list[dict[str, Any]], out: Path, args: argparse.Namespace) -> Path:
    """Per job: polls against duration, and detection delay against duration, with targets."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig_, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=120)
    longest = 0.0
    for fig in figures:
        if "per_job" not in fig:
            raise SystemExit("polling figures without per_job: run `bench polling --json` again")
        durations = [job[0] for job in fig["per_job"]]
        polls = [job[1] for job in fig["per_job"]]
        delays = [job[2] for job in fig["per_job"]]
        longest = max(longest, max(durations))
        label = (
            f"{fig['jobs']} jobs of {fig['duration_range_s'][0]:g}-"
            f"{fig['duration_range_s'][1]:g} s, {fig['stack']}, "
            f"{fig['processes']}x{fig['concurrency']} threads"
            + (
                f" + {fig['poll_workers']}x{fig['concurrency']} for polls"
                if fig.get("poll_workers")
                else ""
            )
            + f" (median {statistics.median(polls):g} polls)"
        )
        size = 6 if len(durations) > 500 else 14
        left.scatter(durations, polls, s=size, alpha=0.45, label=label)
        right.scatter(durations, delays, s=size, alpha=0.45, label=label)
    xs = [longest * i / 400 for i in range(1, 401)]
    plan = [
        schedule_polls(x, args.poll_first, args.poll_growth, args.poll_slack, args.cap) for x in xs
    ]
    left.step(xs, plan, where="post", color="black", lw=1, label="the schedule, without lag")
    left.axhline(8, color="red", ls="--", lw=1, label="target: median <= 8")
    left.set_xlabel("job duration (s)")
    left.set_ylabel("GetResponse calls (image_jobs.polls)")
    left.set_title("Calls per job against job duration")
    left.grid(True, alpha=0.3)
    left.set_ylim(0, max(plan) + 7)  # room for the legend above the points
    left.yaxis.set_major_locator(MaxNLocator(integer=True))
    left.legend(loc="upper left", fontsize=8)
    right.plot(
        [0, longest],
        [5, 0.2 * longest + 5],
        color="red",
        ls="--",
        lw=1,
        label="bound: 20% of duration + 5 s",
    )
    right.set_xlabel("job duration (s)")
    right.set_ylabel("detection delay (s): finished_at - (started_at + duration)")
    right.set_title("Detection delay against job duration")
    right.grid(True, alpha=0.3)
    right.legend(loc="upper left", fontsize=8)
    fig_.tight_layout()
    path = out / "polling.png"
    fig_.savefig(path)
    plt.close(fig_)
    return path


def main(args: argparse.Namespace) -> int:
    if not args.throughput and not args.polling:
        raise SystemExit("nothing to plot: give --throughput and/or --polling files")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.throughput:
        print(throughput(load(args.throughput), args.out))
    if args.polling:
        print(polling(load(args.polling), args.out, args))
    return 0


def register(scenarios: Any) -> None:
    parser = scenarios.add_parser(
        "plots",
        help="PNG plots from --json figures (needs matplotlib)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--throughput",
        type=Path,
        nargs="*",
        default=[],
        help="removal/overhead figures at several concurrencies",
    )
    parser.add_argument("--polling", type=Path, nargs="*", default=[], help="polling figures")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    # The worker's defaults (worker/settings.py), for the schedule's line.
    parser.add_argument("--poll-first", type=float, default=1.0)
    parser.add_argument("--poll-growth", type=float, default=0.2)
    parser.add_argument("--poll-slack", type=float, default=4.5)
    parser.add_argument("--cap", type=float, default=60.0)
    parser.set_defaults(main=main)
