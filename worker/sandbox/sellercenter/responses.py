"""Rendering of SuccessResponse / ErrorResponse envelopes as XML or as the API's quirky JSON.

Documents are built as :data:`~worker.sandbox.replies.Node` trees. XML is written by string
joining rather than through lxml because it is much cheaper, and every answer passes here.

JSON follows the legacy API's habits (decision D3): a one-element list becomes an object,
several an array, an empty list disappears; every scalar is a string (ErrorCode too); an empty
element (an empty Body) is ``""``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from worker.sandbox.replies import Node, Reply, Value, json_reply
from worker.sandbox.sellercenter.errors import SellerCenterErrorAnswer

XML_CONTENT_TYPE = "text/xml; charset=utf-8"
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


@dataclass
class Success:
    """What an action returns: the Head's variable fields and the Body."""

    response_type: str
    body: Node = field(default_factory=dict)
    request_id: str = ""


def api_timestamp(moment: datetime | None = None) -> str:
    """Head/Timestamp as the API writes it: ``2015-07-01T11:11:11+0000``."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S+0000")


def render_success(action: str, success: Success, as_json: bool) -> Reply:
    head: Node = {
        "RequestId": success.request_id,
        "RequestAction": action,
        "ResponseType": success.response_type,
        "Timestamp": api_timestamp(),
    }
    return _render("SuccessResponse", {"Head": head, "Body": success.body}, as_json, None)


def render_error(action: str, error: SellerCenterErrorAnswer, as_json: bool) -> Reply:
    head: Node = {
        "RequestAction": action,
        "ErrorType": error.error_type,
        "ErrorCode": str(error.code),
        "ErrorMessage": error.message,
    }
    details: list[Node] = [
        {
            "Field": detail.field,
            "Message": detail.message,
            "Value": detail.value,
            "SellerSku": detail.seller_sku,
        }
        for detail in error.details
    ]
    body: Node = {"ErrorDetail": details} if details else {}
    return _render("ErrorResponse", {"Head": head, "Body": body}, as_json, error.code)


def _render(root: str, document: Node, as_json: bool, error_code: int | None) -> Reply:
    if as_json:
        return json_reply(200, {root: _to_json(document)}, error_code)
    parts = [_XML_DECLARATION]
    _to_xml(parts, root, document)
    return Reply(200, XML_CONTENT_TYPE, "".join(parts).encode("utf-8"), error_code)


def _to_xml(parts: list[str], tag: str, value: Value) -> None:
    if isinstance(value, list):
        for item in value:
            _to_xml(parts, tag, item)
    elif isinstance(value, dict):
        if not value:
            parts.append(f"<{tag}/>")
            return
        parts.append(f"<{tag}>")
        for child, child_value in value.items():
            _to_xml(parts, child, child_value)
        parts.append(f"</{tag}>")
    elif value == "":
        parts.append(f"<{tag}/>")
    else:
        parts.append(f"<{tag}>{escape(value)}</{tag}>")


def _to_json(value: Value) -> object:
    if isinstance(value, list):
        items = [_to_json(item) for item in value]
        return items[0] if len(items) == 1 else items
    if isinstance(value, dict):
        if not value:
            return ""
        return {
            name: _to_json(child)
            for name, child in value.items()
            if not (isinstance(child, list) and not child)
        }
    return value
