"""Kombu's server-less transports for the embedded default broker, side by side.

    python -m bench embedded-broker [--messages 2000]

Publishes N messages to one queue, then consumes them one by one (as a worker with prefetch 1
does), with a queue that already holds N messages: prints messages per second for each. Both
transports keep their files in a temporary folder, never in the working directory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def compare(n: int) -> dict[str, Any]:
    """Messages per second published and consumed by each transport."""
    folder = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    try:
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
        figures: dict[str, Any] = {"workload": "embedded broker", "messages": n}
        for name, (url, options) in cases.items():
            publish, consume = measure(url, options, n)
            figures[name] = {"publish_per_s": round(publish), "consume_per_s": round(consume)}
        return figures
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def print_compare(figures: dict[str, Any]) -> None:
    print(f"{figures['messages']} messages, one queue, machine: {sys.platform}")
    for name, value in figures.items():
        if isinstance(value, dict):
            print(
                f"{name:12s} publish {value['publish_per_s']:8.0f} msg/s   "
                f"consume {value['consume_per_s']:8.0f} msg/s"
            )
    sys.stdout.flush()


def main(args: argparse.Namespace) -> int:
    figures = compare(args.messages)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print_compare(figures)
    return 0


def register(scenarios: Any) -> None:
    p = scenarios.add_parser(
        "embedded-broker",
        help="kombu's server-less transports: publish and consume rates",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--messages", type=int, default=2000, help="messages to publish and consume")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(main=main, figures=lambda args: compare(args.messages), show=print_compare)
