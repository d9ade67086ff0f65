"""Stopping and starting this machine's PostgreSQL, Redis and RabbitMQ for outage tests.

The commands are the machine's own (see .ci/run). A command that fails fails the test.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def _run(command: str) -> None:
    subprocess.run(["bash", "-c", command], check=True, capture_output=True, timeout=120)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, up: bool, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while port_open(port) != up:
        if time.monotonic() > deadline:
            raise AssertionError(f"port {port} still {'down' if up else 'up'} after {timeout}s")
        time.sleep(0.3)


def _pg_version() -> str:
    return sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]


def stop_postgres() -> None:
    _run(f"pg_ctlcluster --skip-systemctl-redirect {_pg_version()} main stop -m fast")
    wait_port(5432, up=False)


def start_postgres() -> None:
    _run(f"pg_ctlcluster --skip-systemctl-redirect {_pg_version()} main start")
    wait_port(5432, up=True)


def stop_redis() -> None:
    # This Redis keeps nothing on disk: everything in it, queued messages included, is lost.
    _run("redis-cli -p 6379 shutdown nosave")
    wait_port(6379, up=False)


def start_redis() -> None:
    _run(
        'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
        "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
    )
    wait_port(6379, up=True)


def stop_rabbitmq() -> None:
    _run("rabbitmqctl stop_app")


def start_rabbitmq() -> None:
    _run("rabbitmqctl start_app")
    _run("rabbitmqctl await_startup")
