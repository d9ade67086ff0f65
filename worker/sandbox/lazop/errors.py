"""The LAZOP answers the sandbox gives: the JSON envelope of decision L2 and its error codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.sandbox.replies import Reply, json_reply

# code -> (message, type). Messages follow Lazada's documented error messages (decisions L2, L5).
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
    "14": ("E014: Invalid Offset", "ISV"),
    "16": ("E016: Invalid Order ID", "ISV"),
    "17": ("E017: Invalid Date Format", "ISV"),
    "19": ("E019: Invalid Limit", "ISV"),
    "36": ("E036: Invalid status filter", "ISV"),
    "37": ("E037: One or more order id in the list are incorrect: %s", "ISV"),
    "38": ("E038: Too many orders were requested (at most 50)", "ISV"),
    "56": ("E056: Invalid Order ID List", "ISV"),
    "74": ("E074: Invalid sort filter", "ISV"),
    "75": ("E075: Invalid sort direction", "ISV"),
    "30": ("E030: Empty Request", "ISV"),
    "204": ("E204: Too many SKU in one request", "ISV"),
    "503": ("E503: Remove product failed", "ISV"),
}


def _catalogued(code: str) -> tuple[str, str]:
    """The code's message and type; a code the catalogue lacks (``removal_error_code``) reads
    as a failed removal."""
    return CATALOGUE.get(code, CATALOGUE["503"])


@dataclass(eq=False)  # exceptions must stay hashable
class LazopErrorAnswer(Exception):
    """Raised to answer the call with ``code != "0"`` (HTTP 200, as the real gateway does).

    The sandbox's side of the wire: the worker's own errors are ``worker.platforms.lazop.errors``.
    """

    code: str
    argument: str = ""
    detail: list[dict[str, str]] = field(default_factory=list)

    @property
    def message(self) -> str:
        return _catalogued(self.code)[0].replace("%s", self.argument)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def render_success(request_id: str, data: Any = None, **top_level: Any) -> Reply:
    """``{"code":"0","data":...,"request_id":...}``; token and migrate answers are top-level."""
    document: dict[str, Any] = {"code": "0"}
    if data is not None:
        document["data"] = data
    document.update(top_level)
    document["request_id"] = request_id
    return json_reply(200, document)


def render_error(request_id: str, error: LazopErrorAnswer) -> Reply:
    document: dict[str, Any] = {
        "code": error.code,
        "type": _catalogued(error.code)[1],
        "message": error.message,
        "request_id": request_id,
    }
    if error.detail:
        document["detail"] = error.detail
    return json_reply(200, document, error.code)
