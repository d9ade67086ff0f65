"""Compare kombu's server-less transports for the embedded default broker.

Publishes N messages to one queue, then consumes them one by one (as a worker with prefetch 1
does), with a queue that already holds N messages: prints messages per second for each.
Usage: python bench/embedded_broker.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from kombu import Connection, Exchange, Queue


def measure(url: str, options: dict[str, object], n: int) -> tuple[float, float]:
    queue = Queue("bench", Exchange("bench"), routing_key="bench")
    with Connection(url, transport_options=options) as conn:
        producer = conn.Producer(serializer="json")
        started = time.perf_counter()
        for i in range(n):
            producer.publish(
                {"i": i}, exchange=queue.exchange, routing_key="bench", declare=[queue]
            )
        publish = n / (time.perf_counter() - started)
        simple = conn.SimpleQueue(queue)
        started = time.perf_counter()
        for _ in range(n):
            simple.get(timeout=5).ack()
        consume = n / (time.perf_counter() - started)
        simple.close()
    return publish, consume


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    folder = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    data, control = folder / "fs", folder / "control"
    data.mkdir()
    cases = {
        "filesystem": (
            "filesystem://",
            {
                "data_folder_in": str(data),
                "data_folder_out": str(data),
                # kombu's default is ./control: a run would write into the working directory.
                "control_folder": str(control),
                "polling_interval": 0.05,
            },
        ),
        "sqla+sqlite": (f"sqla+sqlite:///{folder / 'broker.sqlite3'}", {}),
    }
    print(f"{n} messages, one queue, machine: {sys.platform}")
    for name, (url, options) in cases.items():
        publish, consume = measure(url, options, n)
        print(f"{name:12s} publish {publish:8.0f} msg/s   consume {consume:8.0f} msg/s")


if __name__ == "__main__":
    main()
