"""Values from outside (an API's answer, a SKU recorded before the input rules) made storable:
one function per kind of value, used wherever such a value goes into a row.

Neither SQLite nor PostgreSQL takes a lone surrogate in text (Python cannot encode it as UTF-8),
PostgreSQL refuses NUL in text and a string longer than its VARCHAR, and a JSON body holding a
lone surrogate cannot be sent as UTF-8. What cannot be stored as given is escaped or cut here,
so that the transaction recording an outcome commits; what no rule can make storable fails
that transaction, and the work is failed for it (worker.services.attempts).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, String

from worker.db.models import Failure, table_of


def width(column: Column[Any]) -> int:
    """The characters a VARCHAR column holds (PostgreSQL refuses more; SQLite takes them)."""
    kind = column.type
    assert isinstance(kind, String) and kind.length is not None, column
    return kind.length


# Every error_code column has this width (RemovalSku, Order, ImageJob, Failure, ApiCall).
CODE_WIDTH = width(table_of(Failure).c.error_code)


def text(value: str) -> str:
    """`value` as a text column holds it: each lone surrogate written as its escape
    (``\\udcff``) and each NUL as ``\\x00``; any other text as it is."""
    if value.isprintable():  # the usual case, and no printable character needs escaping
        return value
    escaped = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return escaped.replace("\x00", "\\x00")


def code(value: str | None) -> str | None:
    """An error code as its column holds it: text(), cut to CODE_WIDTH characters."""
    return None if value is None else text(value)[:CODE_WIDTH]


def bounded(value: str | None, column: Column[Any]) -> str | None:
    """Free text for a VARCHAR `column` (a payment method): text(), cut to its width."""
    return None if value is None else text(value)[: width(column)]


def document(value: Any) -> Any:
    """A JSON value (a stored order's fields, an event's data) with every string in it, keys
    too, made text(): it then encodes as UTF-8 and every database stores it."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {document(key): document(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [document(item) for item in value]
    return value
