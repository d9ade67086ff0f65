"""`lazada-worker web`: the operator's console (worker.web), served by this process.

Loopback by default. Beyond loopback the console needs a password (LAZADA_WEB_PASSWORD[_FILE])
and the address browsers reach it at (LAZADA_PUBLIC_URL): without them a console on a network
would let anyone there retry, cancel and connect sellers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from worker.cli.connections import load_settings, open_sessions
from worker.cli.exits import EXIT_FAILED, EXIT_OK
from worker.cli.output import print_json
from worker.inputs import InvalidInput
from worker.settings import SettingsError
from worker.web.security import clean_public_url, is_loopback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
THREADS = 8  # requests served at once; each holds at most one database connection


def add_web_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    help = "the operator's console in a browser, and /healthz, /metrics, /lazada/push"
    p = sub.add_parser("web", help=help, description=help)
    p.set_defaults(handler=cmd_web)
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="the address to listen on (default 127.0.0.1; beyond loopback it needs "
        "LAZADA_WEB_PASSWORD[_FILE] and LAZADA_PUBLIC_URL)",
    )
    p.add_argument("--port", default=str(DEFAULT_PORT), help=f"the port (default {DEFAULT_PORT})")
    help = "whether the database, the broker, a worker and beat are live (exit 0) or not (exit 1)"
    p = sub.add_parser("health", help=help, description=help)
    p.set_defaults(handler=cmd_health)
    p.add_argument("--json", action="store_true", help="print each check with its reason")


def web_password(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """LAZADA_WEB_PASSWORD, or the content of LAZADA_WEB_PASSWORD_FILE; None when neither."""
    value = environ.get("LAZADA_WEB_PASSWORD")
    path = environ.get("LAZADA_WEB_PASSWORD_FILE")
    if value and path:
        raise SettingsError("set LAZADA_WEB_PASSWORD or LAZADA_WEB_PASSWORD_FILE, not both")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeError):
            raise SettingsError(
                f"LAZADA_WEB_PASSWORD_FILE {path!r} cannot be read as UTF-8 text"
            ) from None
        if not value:
            raise SettingsError(f"LAZADA_WEB_PASSWORD_FILE {path!r} is empty")
    return value or None


def check_listening(host: str, port_text: str) -> tuple[str, int, str, str | None]:
    """(host, port, public URL, password) for `web`, or bad input (exit 2)."""
    if not host or len(host) > 255 or not host.isprintable() or "/" in host:
        raise InvalidInput("--host must be an address or a host name, e.g. 127.0.0.1")
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidInput(f"--port must be a number from 1 to 65535, not {port_text[:20]!r}")
    port = int(port_text)
    password = web_password()
    public = os.environ.get("LAZADA_PUBLIC_URL")
    if not is_loopback(host) and (password is None or not public):
        raise InvalidInput(
            f"--host {host} is beyond loopback: set LAZADA_WEB_PASSWORD (or "
            "LAZADA_WEB_PASSWORD_FILE) and LAZADA_PUBLIC_URL first, or listen on 127.0.0.1"
        )
    if public:
        public_url = clean_public_url(public)
    else:
        shown = f"[{host}]" if ":" in host else host
        public_url = f"http://{shown}:{port}"
    return host, port, public_url, password


def cmd_health(args: argparse.Namespace) -> int:
    """`health`: the checks of /healthz from this machine, and a live worker and beat by their
    heartbeats."""
    from worker.web.health import check_heartbeats, checks

    settings = load_settings()
    found: dict[str, dict[str, Any]] = {**checks(settings), **check_heartbeats(settings)}
    ok = all(check["ok"] for check in found.values())
    if args.json:
        print_json({"status": "ok" if ok else "failing", "checks": found})
    else:
        for name, check in found.items():
            print(f"{name}: {'ok' if check['ok'] else 'FAILING'} ({check['reason']})")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_web(args: argparse.Namespace) -> int:
    """`web`: serve the console until interrupted."""
    import waitress

    from worker.web.app import Console

    host, port, public_url, password = check_listening(args.host, args.port)
    settings = load_settings()
    open_sessions(settings)  # a new database is migrated, an unreachable one is exit 2
    console = Console(settings, public_url, password)
    print(
        f"lazada-worker console at {public_url}/ (listening on {host}:{port}); Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    waitress.serve(console, host=host, port=port, threads=THREADS, ident="lazada-worker")
    return EXIT_OK
