"""What a sandbox answers with: a complete HTTP reply, and the document trees answers are built of.

A :data:`Node` is a nested dict: a ``str`` is an element's text, a ``dict`` its children in order,
a ``list`` repeats the element once per item. The legacy API renders it as XML or its quirky JSON;
the shared orders and image jobs are kept in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeAlias

Node: TypeAlias = "dict[str, Value]"
Value: TypeAlias = "str | Node | list[Node] | list[str]"

JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Reply:
    """A complete HTTP answer, and what the ledger needs to know about it."""

    status: int
    content_type: str
    body: bytes
    error_code: int | str | None = None
    """The platform's error code the answer carries, counted in stats()'s calls_by_outcome."""


def json_reply(status: int, document: Any, error_code: int | str | None = None) -> Reply:
    """A compact UTF-8 JSON answer; one holding a lone surrogate (a knob's text) with every
    character beyond ASCII escaped, as that is the only way JSON carries it."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    try:
        body = text.encode("utf-8")
    except UnicodeEncodeError:
        body = json.dumps(document, separators=(",", ":")).encode("ascii")
    return Reply(status, JSON_CONTENT_TYPE, body, error_code)
