"""The rate limiter alone: no worker, broker or API.

    python -m bench slot-calendar [--rate 5] [--seconds 30] [--json]
    python -m bench limiter-compare [--redis-url redis://127.0.0.1:6379/11]

`slot-calendar`: the calendar (worker.ratelimit.place) on a simulated clock: how much of an
account's limit its slots fill, and how the groups share them; what the placement rule does
by itself, in a second. Workloads: a removal job (runners that ask for their next slot
whenever the group holds fewer than its slots ahead) beside one call of another group every
N seconds (orders); and two to four jobs, some of whose runners ask only once their call is
over (0.1 s after their slot). Figures: the share of the limit the slots fill (1/SPACING is
the most), and each group's calls a second.

`limiter-compare`: our account-wide limiter against pyrate-limiter (a bench-only dependency:
`pip install pyrate-limiter`; without it, ours alone), both on Redis. Two processes x 16
threads each take call slots as fast as the limiter lets them, 13 each (416 in all), at a
limit of 20/s. Printed: the achieved rate, the busiest sliding 1-s window and the smallest gap
between two slots.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import random
import threading
import time
import uuid
from bisect import bisect_right
from collections.abc import Collection
from itertools import pairwise
from typing import Any

from bench.stack import REDIS_URL

TICK = 0.01  # s between the simulated clock's looks: every group may ask at each
CALL_SECONDS = 0.1  # a lazy group asks again this long after its slot (its call is over)


def _simulate(
    rate: float,
    seconds: float,
    groups: list[str],
    lazy: Collection[str] = (),
    one_call_every: float | None = None,
) -> dict[str, Any]:
    """Slots each group got from 2 s to 1 s before the end (the start and the tail left out)."""
    from worker.ratelimit import GROUP_AHEAD, SPACING, WINDOW_UP_TO, place

    interval = SPACING / rate
    per_second = int(rate) if rate <= WINDOW_UP_TO else 0
    turns: dict[str, list[float]] = {}
    slots: list[tuple[float, str]] = []
    asks_again = dict.fromkeys(groups, 0.0)
    shuffle = random.Random(1)
    one_calls = 0
    for step in range(int(seconds / TICK)):
        now = step * TICK
        if one_call_every and now >= (one_calls + 1) * one_call_every:
            one_calls += 1
            grant, turns = place(turns, "orders", now, interval, GROUP_AHEAD, per_second=per_second)
            slots.append((now + grant.wait, "orders"))
        order = list(groups)
        shuffle.shuffle(order)
        for group in order:
            if now < asks_again[group]:
                continue
            grant, turns = place(turns, group, now, interval, GROUP_AHEAD, per_second=per_second)
            if grant.reserved:
                slots.append((now + grant.wait, group))
                if group in lazy:
                    asks_again[group] = now + grant.wait + CALL_SECONDS
    span = seconds - 3.0
    counted = [(at, group) for at, group in slots if 2.0 <= at < seconds - 1.0]
    names = [*groups, *(["orders"] if one_call_every else [])]
    return {
        "share_of_limit": round(len(counted) / span / rate, 3),
        "calls_per_s": {g: round(sum(1 for _, x in counted if x == g) / span, 2) for g in names},
    }


def calendar(rate: float, seconds: float) -> dict[str, Any]:
    figures: dict[str, Any] = {"workload": "slot calendar", "rate": rate, "seconds": seconds}
    for every in (5.0, 2.0, 1.0, 0.5):
        figures[f"job and an order every {every:g} s"] = _simulate(
            rate, seconds, ["job"], one_call_every=every
        )
    figures["four eager jobs"] = _simulate(rate, seconds, ["a", "b", "c", "d"])
    figures["two jobs, one lazy"] = _simulate(rate, seconds, ["a", "b"], {"b"})
    figures["four jobs, one lazy"] = _simulate(rate, seconds, ["a", "b", "c", "d"], {"b"})
    figures["four jobs, three lazy"] = _simulate(
        rate, seconds, ["a", "b", "c", "d"], {"b", "c", "d"}
    )
    return figures


def print_calendar(figures: dict[str, Any]) -> None:
    for name, value in figures.items():
        if name != "workload":
            print(f"{name:32} {value}")


def calendar_main(args: argparse.Namespace) -> int:
    figures = calendar(args.rate, args.seconds)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_calendar(figures)
    return 0


# -- against pyrate-limiter -----------------------------------------------------------------

RATE = 20
PROCESSES, THREADS, PER_THREAD = 2, 16, 13


def _ours(url: str, key: str) -> object:
    from worker.ratelimit import RateLimited, RateLimiter, RedisSlots, turn

    limiter = RateLimiter(RedisSlots(url), key, RATE)

    def acquire(name: str) -> None:
        # Blocking, for this comparison: the worker defers instead (a countdown to the slot).
        slot = None
        while True:
            try:
                with turn(name, slot):
                    return limiter.acquire(name)
            except RateLimited as refused:
                time.sleep(max(refused.wait - 0.01, 0))
                slot = refused.slot

    return acquire


def _pyrate(url: str, key: str) -> object:
    from pyrate_limiter import Duration, Limiter, Rate, RedisBucket
    from redis import Redis

    bucket = RedisBucket.init([Rate(RATE, Duration.SECOND)], Redis.from_url(url), key)
    limiter = Limiter(bucket)
    return lambda name: limiter.try_acquire(name, blocking=True)


def _process(kind: str, url: str, key: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    acquire = (_ours if kind == "ours" else _pyrate)(url, key)
    stamps: list[float] = []
    lock = threading.Lock()

    def thread() -> None:
        for _ in range(PER_THREAD):
            acquire("RemoveProduct")  # type: ignore[operator]
            with lock:
                stamps.append(time.time())

    threads = [threading.Thread(target=thread) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(stamps)


def compare_one(kind: str, url: str) -> dict[str, float]:
    key = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [
        multiprocessing.Process(target=_process, args=(kind, url, key, out))
        for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    stamps = sorted(s for _ in procs for s in out.get(timeout=300))
    for p in procs:
        p.join()
    span = stamps[-1] - stamps[0]
    peak = max(bisect_right(stamps, t + 1.0 - 1e-9) - i for i, t in enumerate(stamps))
    gaps = [b - a for a, b in pairwise(stamps)]
    return {
        "slots": len(stamps),
        "achieved_per_s": round((len(stamps) - 1) / span, 2),
        "share_of_limit": round((len(stamps) - 1) / span / RATE, 3),
        "busiest_1s_window": peak,
        "min_gap_ms": round(min(gaps) * 1000, 1),
    }


def compare_main(args: argparse.Namespace) -> int:
    print(f"limit {RATE}/s, {PROCESSES} processes x {THREADS} threads, Redis {args.redis_url}")
    for kind in ("ours", "pyrate-limiter"):
        if kind != "ours" and importlib.util.find_spec("pyrate_limiter") is None:
            print(f"{kind:15s} not installed (pip install pyrate-limiter)")
            continue
        print(f"{kind:15s} {compare_one(kind, args.redis_url)}")
    return 0


def register(scenarios: Any) -> None:
    p = scenarios.add_parser(
        "slot-calendar",
        help="the limiter's calendar alone, on a simulated clock",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rate", type=float, default=5.0, help="calls/s (5)")
    p.add_argument("--seconds", type=float, default=30.0, help="simulated time (30)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(
        main=calendar_main,
        figures=lambda args: calendar(args.rate, args.seconds),
        show=print_calendar,
    )

    p = scenarios.add_parser(
        "limiter-compare",
        help="our limiter against pyrate-limiter on Redis",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--redis-url", default=REDIS_URL)
    p.set_defaults(main=compare_main)
