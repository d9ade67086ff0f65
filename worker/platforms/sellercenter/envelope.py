"""Response envelopes (decision D3): XML or JSON bytes -> one normalised ``Envelope``.

JSON answers are converted into the same element tree an XML answer gives, so one parser
(``parsing.py``) serves both formats and the JSON quirks (one-element lists as objects, numbers
as strings or numbers, ``"Body": ""``) disappear here.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from lxml import etree

from worker.platforms.sellercenter.bodies import NOT_XML_CHARACTERS
from worker.platforms.sellercenter.safexml import RefusedDocument, parse_xml

__all__ = ["Envelope", "MalformedResponse", "parse_envelope"]

SUCCESS = "SuccessResponse"
ERROR = "ErrorResponse"

# Element names we create from JSON keys; anything else is kept as JSON text (see _append).
_ELEMENT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_MAX_JSON_DEPTH = 64
_CODE_IN_MESSAGE = re.compile(r"^\s*E(\d+)\b")


class MalformedResponse(ValueError):
    """The body is not a usable Seller Center answer; the text says what was wrong with it."""


@dataclass(frozen=True)
class Envelope:
    """The Head of a SuccessResponse or ErrorResponse, plus its Body as an element tree."""

    success: bool
    action: str
    request_id: str
    response_type: str
    timestamp: str
    error_code: int | None
    error_type: str
    error_message: str
    body: etree._Element


def parse_envelope(data: bytes, expected_action: str) -> Envelope:
    """Parse a response body (XML or JSON, sniffed) for a call of ``expected_action``.

    Raises ``MalformedResponse`` for anything but a SuccessResponse/ErrorResponse document, and
    for a SuccessResponse that answers another action (a mixed-up proxy or cache).
    """
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if not start:
        raise MalformedResponse("empty body")
    if start == b"{":
        root = _json_to_tree(data)
    elif start == b"<":
        if _looks_like_html(data):
            raise MalformedResponse("HTML page instead of an API answer")
        try:
            root = parse_xml(data)
        except RefusedDocument as exc:
            raise MalformedResponse(str(exc)) from exc
    else:
        raise MalformedResponse("body is neither XML nor JSON")
    return _envelope_from_tree(root, expected_action)


def _looks_like_html(data: bytes) -> bool:
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html"))


def _envelope_from_tree(root: etree._Element, expected_action: str) -> Envelope:
    if root.tag not in (SUCCESS, ERROR):
        raise MalformedResponse(f"unexpected root element <{_tag_for_message(root)}>")
    head = root.find("Head")
    body = root.find("Body")
    if body is None:
        body = etree.Element("Body")
    action = _text(head, "RequestAction")
    success = root.tag == SUCCESS
    if success and action and action != expected_action:
        raise MalformedResponse(f"SuccessResponse for {action!r}, expected {expected_action!r}")
    error_message = _text(head, "ErrorMessage")
    return Envelope(
        success=success,
        action=action or expected_action,
        request_id=_text(head, "RequestId"),
        response_type=_text(head, "ResponseType"),
        timestamp=_text(head, "Timestamp"),
        error_code=None if success else _error_code(_text(head, "ErrorCode"), error_message),
        error_type=_text(head, "ErrorType"),
        error_message=error_message,
        body=body,
    )


def _error_code(raw: str, message: str) -> int | None:
    # ErrorCode is "16", 16 or "E016"; without one, ErrorMessage starts with "E016:".
    digits = raw.strip().lstrip("Ee")
    if digits.isdigit():
        return int(digits)
    found = _CODE_IN_MESSAGE.match(message)
    return int(found.group(1)) if found else None


def _text(parent: etree._Element | None, tag: str) -> str:
    if parent is None:
        return ""
    child = parent.find(tag)
    if child is None or child.text is None:
        return ""
    return child.text.strip()


def _tag_for_message(element: etree._Element) -> str:
    tag = element.tag
    return tag[:40] if isinstance(tag, str) else "?"


# --- JSON -> element tree -------------------------------------------------------------------


def _json_to_tree(data: bytes) -> etree._Element:
    try:
        # Numbers stay text, exactly as sent ("100.00" must not become 100.0).
        document = json.loads(data, parse_int=str, parse_float=str, parse_constant=str)
    except (ValueError, RecursionError) as exc:
        raise MalformedResponse(f"malformed JSON ({str(exc)[:80]})") from exc
    if not isinstance(document, dict):
        raise MalformedResponse("JSON document is not an object")
    if SUCCESS in document and ERROR in document:
        raise MalformedResponse("JSON document is both a SuccessResponse and an ErrorResponse")
    for name in (SUCCESS, ERROR):
        if name in document:
            root = etree.Element(name)
            _fill(root, document[name], depth=0)
            return root
    keys = ", ".join(sorted(str(key)[:40] for key in document)[:5])
    raise MalformedResponse(f"unexpected JSON document (keys: {keys or 'none'})")


def _fill(element: etree._Element, value: Any, depth: int) -> None:
    """Put a JSON value into ``element``: objects become children, scalars text."""
    if depth > _MAX_JSON_DEPTH:
        raise MalformedResponse("JSON nested too deeply")
    if isinstance(value, dict):
        if all(isinstance(key, str) and _ELEMENT_NAME.match(key) for key in value):
            for key, item in value.items():
                _append(element, key, item, depth + 1)
        else:
            # Keys that cannot be element names (free-form data such as ExtraAttributes sent
            # as an object) are kept as JSON text, which is how the API sends them in XML.
            element.text = _xml_text(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, list):
        # A list directly inside a list has no name of its own; keep it as JSON text.
        element.text = _xml_text(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is None:
        element.text = None
    else:
        element.text = _xml_text(str(value))


def _append(parent: etree._Element, name: str, value: Any, depth: int) -> None:
    if isinstance(value, list):
        if not value:
            # "Images": [] still says the key was there; an empty element keeps that.
            etree.SubElement(parent, name)
        for item in value:  # a list becomes repeated same-name elements, as in XML
            _fill(etree.SubElement(parent, name), item, depth)
    else:
        _fill(etree.SubElement(parent, name), value, depth)


def _xml_text(text: str) -> str:
    # JSON strings can hold what XML cannot (e.g. "\u0000", lone surrogates).
    return NOT_XML_CHARACTERS.sub("\ufffd", text)
