"""The LAZOP answers the sandbox gives: the JSON envelope of decision L2 and its error codes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from worker.sandbox.responses import JSON_CONTENT_TYPE, Reply

# code -> (message, type). Messages follow the research notes' section 4.2.
CATALOGUE: dict[str, tuple[str, str]] = {
    "MissingParameter": ("The input parameter '%s' that is mandatory for processing", "ISV"),
    "InvalidParameter": ("The specified parameter '%s' is not valid", "ISV"),
    "IncompleteSignature": ("The request signature does not conform to lazop standards", "ISV"),
    "APP_KEY_INVALID": ("The app key is invalid", "ISV"),
    "OPEN_API_TIMESTAMP_INVALID": ("The timestamp is out of range or not epoch millis", "ISV"),
    "InvalidApiPath": ("The specified API path is not available: %s", "ISV"),
    "IllegalAccessToken": ("The specified access token is invalid or expired", "ISV"),
    "IllegalRefreshToken": ("The specified refresh token is invalid or expired", "ISV"),
    "InvalidCode": ("The authorization code is invalid, used or expired", "ISV"),
    "ApiCallLimit": (
        "Api access frequency exceeds the limit. this ban will last 1 seconds",
        "ISP",
    ),
    "ServiceTimeout": ("The request has failed due to service timeout", "ISP"),
    "6": ("E006: Unexpected internal error", "ISP"),
    "1000": ("Internal Application Error", "ISP"),
    "5": ("E005: Invalid Request Format", "ISV"),
    "16": ("E016: Invalid Order ID", "ISV"),
    "30": ("E030: Empty Request", "ISV"),
    "204": ("E204: Too many SKU in one request", "ISV"),
    "503": ("E503: Remove product failed", "ISV"),
}


@dataclass(eq=False)  # exceptions must stay hashable
class LazopError(Exception):
    """An answer with ``code != "0"`` (HTTP 200, as the real gateway does)."""

    code: str
    argument: str = ""
    detail: list[dict[str, str]] = field(default_factory=list)

    @property
    def message(self) -> str:
        return CATALOGUE[self.code][0].replace("%s", self.argument)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _reply(document: dict[str, Any], error_code: str | None) -> Reply:
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return Reply(200, JSON_CONTENT_TYPE, text.encode("utf-8"), error_code)


def render_success(request_id: str, data: Any = None, **top_level: Any) -> Reply:
    """``{"code":"0","data":...,"request_id":...}``; token and migrate answers are top-level."""
    document: dict[str, Any] = {"code": "0"}
    if data is not None:
        document["data"] = data
    document.update(top_level)
    document["request_id"] = request_id
    return _reply(document, None)


def render_error(request_id: str, error: LazopError) -> Reply:
    document: dict[str, Any] = {
        "code": error.code,
        "type": CATALOGUE[error.code][1],
        "message": error.message,
        "request_id": request_id,
    }
    if error.detail:
        document["detail"] = error.detail
    return _reply(document, error.code)
