"""Our account-wide limiter (worker/ratelimit.py) against pyrate-limiter, both on Redis.

Two processes x 16 threads each take call slots as fast as the limiter lets them, 13 each
(416 in all), at a limit of 20/s. Printed: the achieved rate, the busiest sliding 1-s window
and the smallest gap between two slots. No API is called: this measures the limiters alone.
Usage: python bench/ratelimit_compare.py [REDIS_URL]   (needs `pip install pyrate-limiter`)
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
import uuid
from bisect import bisect_right
from itertools import pairwise

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


def measure(kind: str, url: str) -> dict[str, float]:
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


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/14"
    print(f"limit {RATE}/s, {PROCESSES} processes x {THREADS} threads, Redis {url}")
    for kind in ("ours", "pyrate-limiter"):
        print(f"{kind:15s} {measure(kind, url)}")


if __name__ == "__main__":
    main()
