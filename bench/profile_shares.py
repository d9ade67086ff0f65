"""Shares of a removal profile's GIL-holding samples by where they are (bench/RESULTS.md).

    python bench/profile_shares.py bench/profiles/removal-redis/worker-*.folded

Reads the folded stacks that `bench/run.py removal --profile` writes; each stack counts under
the first row whose test matches it.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable

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


def main(paths: list[str]) -> int:
    counts: Counter[str] = Counter()
    for path in paths:
        with open(path) as folded:
            for line in folded:
                stack, _, samples = line.rstrip().rpartition(" ")
                name = next(name for name, matches in ROWS if matches(stack))
                counts[name] += int(samples)
    total = sum(counts.values()) or 1
    print(f"{sum(counts.values())} samples")
    for name, _ in ROWS:
        print(f"| {100 * counts[name] / total:5.1f}% | {name} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
