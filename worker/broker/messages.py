"""The Celery protocol-2 fields a worker unpacks outside its own error handling.

A message with a wrong one (sent by hand, by a buggy client, or a damaged file) raises out of
Celery's consumer and stops the worker; checked first, it is refused like any invalid task.
The embedded broker sets such a file aside; on every broker, tasks.base's request class
refuses such a message before Celery unpacks it.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

from kombu.utils.json import loads


class Unservable(ValueError):
    """A message that will never be a task; the text says why."""


def check_celery_message(headers: dict[str, Any], body: Any, content_type: Any) -> None:
    """The Celery protocol-2 fields its worker unpacks outside any error handling: a message
    with a wrong one raises out of the consumer (Request.__init__, execute_using_pool)."""
    if "task" not in headers:
        return  # not protocol 2: Celery's consumer refuses it by itself
    if not isinstance(headers["task"], str):
        raise Unservable("has a Celery 'task' header that is not text")
    if not isinstance(headers.get("id"), str):
        raise Unservable("has no Celery 'id' header of text")
    limits = headers.get("timelimit")
    if limits is not None and not (
        isinstance(limits, list)
        and len(limits) == 2
        and all(v is None or (isinstance(v, Real) and not isinstance(v, bool)) for v in limits)
    ):
        raise Unservable(f"has a Celery 'timelimit' header {limits!r}, not [hard, soft]")
    if content_type != "application/json":
        return  # Celery refuses other content (accept_content) by itself
    try:
        decoded = loads(body if isinstance(body, str) else bytes(body or b"").decode())  # type: ignore[no-untyped-call]
    except (ValueError, RecursionError, TypeError):
        raise Unservable("has a Celery body that is not JSON") from None
    if not (
        isinstance(decoded, list)
        and len(decoded) == 3
        and isinstance(decoded[0], list)
        and isinstance(decoded[1], dict)
        and isinstance(decoded[2], (dict, type(None)))
    ):
        raise Unservable("has a Celery body that is not [args, kwargs, embed]")
