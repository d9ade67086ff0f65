"""HTTP as both platforms' clients speak it: one pooled session, a capped and timed read of
the answer, and short, scrubbed words for what went wrong.

The platforms differ in what they sign and how they answer; this part they share. Errors come
out as NoAnswer, which each client turns into its own TransportError (a transient error).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Literal

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies

POOL_SIZE = 32  # one client is shared by the worker's threads
_CHUNK_BYTES = 64 * 1024
_PREVIEW_CHARS = 120
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")  # C0, DEL and C1
_OS_ERROR = re.compile(r"\[Errno [^\]]+\][^'\")]*")


class NoAnswer(Exception):
    """No usable answer came: not sent, timed out, too large or cut off (the message says
    which, secrets scrubbed); `http_status` when the answer had begun."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


def session_for(base_url: str) -> requests.Session:
    """A session for one API's base URL, safe to share between threads."""
    session = requests.Session()
    # No urllib3 retries: a retried POST could remove SKUs twice behind the worker's back.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # requests reads the environment again on every request (proxies, CA bundle, ~/.netrc),
    # a large share of a call's CPU (bench/RESULTS.md). Read it once, here;
    # calls are signed, so no netrc credentials are wanted.
    session.trust_env = False
    session.proxies = get_environ_proxies(base_url)
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    session.verify = ca_bundle or True
    session.headers["User-Agent"] = _user_agent()
    return session


def send(
    session: requests.Session,
    method: Literal["GET", "POST"],
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeouts: tuple[float, float],
    max_bytes: int,
    started: float,
    scrub: Callable[[str], str],
) -> tuple[int, str, bytes]:
    """Send a request (`params` in the query, `data` as the body) and read at most
    `max_bytes` of the answer within both timeouts of `started` (time.monotonic()):
    (status, content type, body). The read timeout bounds each socket read, not the whole
    body; the deadline, checked between chunks, also stops a body that keeps trickling in
    for minutes."""
    deadline = started + sum(timeouts)
    try:
        response = session.request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            timeout=timeouts,
            stream=True,
            allow_redirects=False,
        )
    except requests.ConnectTimeout:
        raise NoAnswer(f"no answer: connect timed out after {timeouts[0]}s") from None
    except requests.Timeout:
        raise NoAnswer(f"no answer: read timed out after {timeouts[1]}s") from None
    except requests.RequestException as exc:
        raise NoAnswer(f"no answer: {exception_text(exc, scrub)}") from None
    with response:
        status = response.status_code
        content_type = response.headers.get("Content-Type", "")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise NoAnswer(
                f"response larger than {max_bytes} bytes (Content-Length {declared})", status
            )
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(_CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:
                    raise NoAnswer(f"response larger than {max_bytes} bytes", status)
                if time.monotonic() > deadline:
                    raise NoAnswer(f"timed out reading the body after {size} bytes", status)
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise NoAnswer(
                f"connection broken while reading the body after {size} bytes "
                f"({exception_text(exc, scrub)})",
                status,
            ) from None
    return status, content_type, b"".join(chunks)


def describe(content_type: str, data: bytes) -> str:
    """Say what came back, briefly: ``text/html body: '<html>...'...`` (control chars dropped)."""
    media_type = content_type.split(";", 1)[0].strip()
    if not data:
        return f"empty {media_type} body" if media_type else "empty body"
    media_type = media_type or "no content type"
    head = data[: _PREVIEW_CHARS * 4]
    text = CONTROL_CHARS.sub(" ", head.decode("utf-8", "replace")).strip()
    preview = text[:_PREVIEW_CHARS]
    more = "..." if len(text) > _PREVIEW_CHARS or len(data) > len(head) else ""
    return f"{media_type} body: {preview!r}{more} ({len(data)} bytes)"


def exception_text(exc: BaseException, scrub: Callable[[str], str]) -> str:
    """The useful part of a requests exception: ``[Errno 111] Connection refused`` and the
    like; otherwise its text, which may quote the URL (signature, token), through `scrub`."""
    # requests wraps urllib3's MaxRetryError, whose .reason is the real cause.
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    text = CONTROL_CHARS.sub(" ", str(reason if reason is not None else exc))
    found = _OS_ERROR.search(text)
    if found is not None:
        return found.group(0).strip()
    return f"{type(exc).__name__}: {scrub(text)[:200]}"


def _user_agent() -> str:
    try:
        version = metadata.version("lazada-worker")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    return f"lazada-worker/{version}"
