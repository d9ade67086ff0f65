"""The JSON envelope of every LAZOP answer (decision L2), parsed defensively.

A body that is not UTF-8 JSON, is nested too deeply, holds absurd numbers, is not an object or
has no ``code`` is no LAZOP answer: ``MalformedResponse``, which the client turns into a
transient ``TransportError``.
"""

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from worker.platforms.lazop.errors import ErrorDetail

__all__ = ["Envelope", "MalformedResponse", "parse_envelope"]

MAX_DEPTH = 32
"""Deeper than any LAZOP answer; json would otherwise recurse until RecursionError."""
MAX_NUMBER_CHARS = 40
"""Longer numerals are refused: int() of a huge one costs quadratic time (CVE-2020-10735)."""


class MalformedResponse(ValueError):
    """The bytes are not a LAZOP envelope; the text says what is wrong with them."""


@dataclass(frozen=True)
class Envelope:
    """``code`` is a string, "0" is success; ``document`` is the whole JSON object."""

    code: str
    message: str
    error_type: str
    request_id: str
    detail: tuple[ErrorDetail, ...]
    document: dict[str, Any]

    @property
    def success(self) -> bool:
        return self.code == "0"

    @property
    def data(self) -> Any:
        return self.document.get("data")


def _number(text: str) -> int | Decimal:
    if len(text) > MAX_NUMBER_CHARS:
        raise MalformedResponse(f"a number of {len(text)} digits")
    return Decimal(text) if any(c in text for c in ".eE") else int(text)


def _constant(text: str) -> Any:
    raise MalformedResponse(f"{text} is not JSON")


def _check_depth(value: Any) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedResponse(f"JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)[:500]
    return str(value)


def _detail(value: Any) -> tuple[ErrorDetail, ...]:
    if not isinstance(value, list):
        return ()
    details = []
    for item in value:
        if isinstance(item, dict):
            details.append(
                ErrorDetail(
                    field=_text(item.get("field")),
                    message=_text(item.get("message") or item.get("msg")),
                    value=_text(item.get("value")),
                    seller_sku=_text(item.get("seller_sku") or item.get("SellerSku")),
                )
            )
    return tuple(details)


def parse_envelope(data: bytes) -> Envelope:
    """The envelope in ``data``; MalformedResponse if it is not one."""
    if not data.strip():
        raise MalformedResponse("empty body")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MalformedResponse("body is not UTF-8") from None
    try:
        document = json.loads(
            text, parse_int=_number, parse_float=_number, parse_constant=_constant
        )
    except RecursionError:
        raise MalformedResponse(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        raise MalformedResponse(f"not JSON ({error.msg} at char {error.pos})") from None
    _check_depth(document)
    if not isinstance(document, dict):
        raise MalformedResponse(f"JSON {type(document).__name__}, not an object")
    code = document.get("code")
    if isinstance(code, bool) or not isinstance(code, (str, int)):
        raise MalformedResponse("JSON object without a string code")
    return Envelope(
        code=str(code),
        message=_text(document.get("message")),
        error_type=_text(document.get("type")),
        request_id=_text(document.get("request_id")),
        detail=_detail(document.get("detail")),
        document=document,
    )
