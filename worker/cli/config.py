"""`lazada-worker config`: every effective setting and where it came from."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from worker.cli.connections import load_settings
from worker.cli.exits import EXIT_OK
from worker.cli.output import print_json
from worker.cli.terminal import print_table
from worker.settings import Settings
from worker.urls import mask_url

# Each setting's environment variables, the first set one wins (a *_FILE one holds the value in
# a file); a setting not named here has no variable and is always its default. `config` shows
# every field of Settings, so a new one appears there without an edit here.
SETTING_VARIABLES: dict[str, tuple[str, ...]] = {
    "database_url": ("DATABASE_URL",),
    "broker_url": ("CELERY_BROKER_URL",),
    "api_url": ("LAZADA_API_URL",),
    "user_id": ("LAZADA_USER_ID",),
    "api_key": ("LAZADA_API_KEY", "LAZADA_API_KEY_FILE"),
    "rate_limit": ("LAZADA_RATE_LIMIT",),
    "queue": ("LAZADA_QUEUE",),
    "retry_ladder": ("LAZADA_RETRY_LADDER",),
    "poll_first": ("LAZADA_POLL_FIRST",),
    "poll_slack": ("LAZADA_POLL_SLACK",),
    "image_deadline": ("LAZADA_IMAGE_DEADLINE",),
    "lease_seconds": ("LAZADA_LEASE_SECONDS",),
    "redispatch_after": ("LAZADA_REDISPATCH_AFTER",),
    "read_timeout": ("LAZADA_READ_TIMEOUT",),
    "order_refresh_after": ("LAZADA_ORDER_REFRESH_AFTER",),
    "default_account": ("LAZADA_DEFAULT_ACCOUNT",),
    "secret_key": ("LAZADA_SECRET_KEY",),
    "secret_key_file": ("LAZADA_SECRET_KEY_FILE",),
    "callback_queue": ("LAZADA_CALLBACK_QUEUE",),
    "webhook_urls": ("LAZADA_WEBHOOK_URLS",),
    "webhook_secret": ("LAZADA_WEBHOOK_SECRET", "LAZADA_WEBHOOK_SECRET_FILE"),
    "webhook_timeout": ("LAZADA_WEBHOOK_TIMEOUT",),
    "log_level": ("LAZADA_LOG_LEVEL",),  # read by `run`, not part of Settings
}


def cmd_config(args: argparse.Namespace) -> int:
    """`config`: the settings as JSON (with a "sources" object) or as a table."""
    values = _effective_settings(load_settings())
    sources = {name: _setting_source(name) for name in values}
    if args.json:
        document = dict(values)
        document["sources"] = {
            name: {"source": source, "variable": variable}
            for name, (source, variable) in sources.items()
        }
        print_json(document)
        return EXIT_OK

    def shown(value: Any) -> str:
        if isinstance(value, list):
            return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        if value is None:
            return "none"
        return f"{value:g}" if isinstance(value, float) else str(value)

    print_table(
        ["setting", "value", "from"],
        [
            [name, shown(value), f"{sources[name][0]} {sources[name][1] or ''}".rstrip()]
            for name, value in values.items()
        ],
    )
    return EXIT_OK


def _setting_source(name: str) -> tuple[str, str | None]:
    """Where a setting came from: ("environment"|"file", its variable) or ("default", None).

    As Settings.from_env reads them: a variable set to the empty string counts as unset."""
    for variable in SETTING_VARIABLES.get(name, ()):
        if os.environ.get(variable):
            return ("file" if variable.endswith("_FILE") else "environment"), variable
    return "default", None


def _effective_settings(settings: Settings) -> dict[str, Any]:
    """Every setting's effective value: secrets (fields kept out of repr) as set/missing, URLs
    without their passwords, tuples as lists."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if not field.repr:
            value = "set" if value else "missing"
        elif field.name.endswith("_url") and value:
            value = mask_url(value)
        elif isinstance(value, tuple):  # the retry ladder's seconds, the webhooks' URLs
            value = [mask_url(v) if isinstance(v, str) else v for v in value]
        values[field.name] = value
    values["log_level"] = os.environ.get("LAZADA_LOG_LEVEL") or "INFO"
    return values
