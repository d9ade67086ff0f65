"""The rate limiter's calendar alone (worker.ratelimit.place), on a simulated clock: how much
of an account's limit its slots fill, and how the groups share them. No worker, broker or
API: what the placement rule does by itself, in a second.

    .venv/bin/python -m bench.slot_calendar [--rate 5] [--seconds 30] [--json]

Workloads: a removal job (runners that ask for their next slot whenever the group holds
fewer than its slots ahead) beside one call of another group every N seconds (orders); and
two to four jobs, some of whose runners ask only once their call is over (0.1 s after their
slot). Figures: the share of the limit the slots fill (1/SPACING, 0.971, is the most), and
each group's calls a second.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Collection
from typing import Any

from worker.ratelimit import GROUP_AHEAD, SPACING, WINDOW_UP_TO, place

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slot_calendar", description=__doc__)
    parser.add_argument("--rate", type=float, default=5.0, help="calls/s (5)")
    parser.add_argument("--seconds", type=float, default=30.0, help="simulated time (30)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {"rate": args.rate, "seconds": args.seconds}
    for every in (5.0, 2.0, 1.0, 0.5):
        figures[f"job and an order every {every:g} s"] = _simulate(
            args.rate, args.seconds, ["job"], one_call_every=every
        )
    figures["four eager jobs"] = _simulate(args.rate, args.seconds, ["a", "b", "c", "d"])
    figures["two jobs, one lazy"] = _simulate(args.rate, args.seconds, ["a", "b"], {"b"})
    figures["four jobs, one lazy"] = _simulate(args.rate, args.seconds, ["a", "b", "c", "d"], {"b"})
    figures["four jobs, three lazy"] = _simulate(
        args.rate, args.seconds, ["a", "b", "c", "d"], {"b", "c", "d"}
    )
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for name, value in figures.items():
            print(f"{name:32} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
