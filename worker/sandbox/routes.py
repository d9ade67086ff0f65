"""A route table for a sandbox whose API is addressed by method and path (a REST-ish JSON API).

Templates name path segments in braces: ``/v1/orders/{order_id}`` matches ``/v1/orders/7`` with
``{"order_id": "7"}``. A route's template is also a good ``Call.action``: the ledger then counts
calls per endpoint rather than per id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

HandlerT = TypeVar("HandlerT")

_SEGMENT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Route(Generic[HandlerT]):
    """One endpoint: its method, path template and handler."""

    method: str
    template: str
    handler: HandlerT

    @property
    def name(self) -> str:
        """``GET /v1/orders/{order_id}``."""
        return f"{self.method} {self.template}"


@dataclass(frozen=True)
class Found(Generic[HandlerT]):
    """A route that matched, and the path's named segments."""

    route: Route[HandlerT]
    args: dict[str, str]


class Routes(Generic[HandlerT]):
    """Routes tried in order; a segment matches one non-empty path segment."""

    def __init__(self, routes: Iterable[tuple[str, str, HandlerT]]) -> None:
        self._routes = [
            (Route(method.upper(), template, handler), _pattern(template))
            for method, template, handler in routes
        ]

    def find(self, method: str, path: str) -> Found[HandlerT] | None:
        """The route for this method and path, or None (see :meth:`methods` to tell a 405)."""
        for route, pattern in self._routes:
            match = pattern.fullmatch(path)
            if match is not None and route.method == method.upper():
                return Found(route, match.groupdict())
        return None

    def methods(self, path: str) -> tuple[str, ...]:
        """The methods some route accepts on `path`: none is a 404, others a 405."""
        accepted = [route.method for route, pattern in self._routes if pattern.fullmatch(path)]
        return tuple(dict.fromkeys(accepted))


def _pattern(template: str) -> re.Pattern[str]:
    parts = _SEGMENT.split(template)
    # split() alternates literal text and segment names: text, name, text, name, ..., text.
    regex = "".join(
        re.escape(part) if index % 2 == 0 else f"(?P<{part}>[^/]+)"
        for index, part in enumerate(parts)
    )
    return re.compile(regex)
