"""The embedded broker: kombu's filesystem transport, safe with several readers and writers.

Writers: ours writes a message under a hidden name and renames it into the queue, so readers
see whole files only. kombu's own writer (a shop's `Celery(broker="filesystem://")`) creates
the file, locks it, writes, then unlocks: its file is visible empty, then locked while written.

Readers take a file by renaming it (one reader wins) and read it under a shared lock, which a
writer's lock excludes. A file still being written (locked, or empty or cut short but young)
is put back for a later pass. A file that can never be served (old and undecodable, not a kombu
envelope, a Celery message that would stop the worker's consumer, a directory) is set aside in
a `rejected/` folder beside the queue with one log line; it is never dropped and never fatal.

Both writers name a file `<ms>_<rest>.<queue>.msg` with kombu's leading field (milliseconds of
the monotonic clock); readers sort on that field as a number, so messages are served in the
order they were sent, whoever wrote them (ours keep send order within a millisecond too).

Published as the transport alias `lazada-files`; the default broker URL is `lazada-files://`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic_ns
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps, loads

from worker.broker.messages import Unservable, check_celery_message

log = logging.getLogger(__name__)

ALIAS = "lazada-files"
# A file that cannot be decoded is taken for one still being written while it is younger
# than this (seconds since its last write); older, it is set aside.
WRITE_GRACE = 30.0
TAKEN = ".taken"


class _Busy(Exception):
    """A writer holds the file's lock: it is still being written."""


def sending_order(name: str) -> tuple[int, str]:
    """Sort key of a message file name: kombu's leading milliseconds as a number, then the
    rest as text. Names without a number come first, to be looked at (and set aside) soon."""
    lead, _, rest = name.partition("_")
    if lead.isascii() and lead.isdigit():
        return int(lead), rest
    return -1, name


def message_name(queue: str) -> str:
    """A new message file's name: kombu's rounded milliseconds, then the rest of the
    nanoseconds (fixed width, so send order holds within a millisecond), then a uuid."""
    ms, rest = divmod(monotonic_ns() + 500_000, 1_000_000)
    return f"{ms}_{rest:06d}-{uuid.uuid4()}.{queue}.msg"


class Channel(filesystem.Channel):
    # kombu's two base classes name the argument differently; this matches the filesystem one.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = message_name(queue)
        # The leading dot keeps the file out of every reader's match until it is complete.
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))  # type: ignore[no-untyped-call]
            os.replace(partial, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(partial)  # a full disk must not keep the part it did take
            reason = exc.strerror or str(exc)
            raise ChannelError(f"cannot add a message to {self.data_folder_out}: {reason}") from exc

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        wanted = f"{queue}.msg"
        try:
            names = os.listdir(self.data_folder_in)
        except OSError as exc:
            raise ChannelError(
                f"cannot list the queue folder {self.data_folder_in}: {exc.strerror or exc}"
            ) from exc
        for name in sorted((n for n in names if n.partition(".")[2] == wanted), key=sending_order):
            payload = self._take(name)
            if payload is not None:
                return payload
        raise Empty()

    def _take(self, name: str) -> Any:
        """The message in file `name`, or None when it is not one to serve now."""
        path = os.path.join(self.data_folder_in, name)
        taken = path + TAKEN
        try:
            os.rename(path, taken)  # atomic in one folder: exactly one reader gets it
        except OSError:
            return None  # another reader took it first
        try:
            raw, age = _read_under_lock(taken)
        except _Busy:
            os.rename(taken, path)
            return None
        except OSError as exc:
            self._set_aside(taken, name, f"cannot be read ({exc.strerror or exc})")
            return None
        try:
            payload = loads(raw.decode("utf-8"))  # type: ignore[no-untyped-call]
        except (ValueError, RecursionError) as exc:
            if age < WRITE_GRACE:
                os.rename(taken, path)  # still being written, perhaps: look again later
                return None
            reason = "is nested too deep" if isinstance(exc, RecursionError) else "is not JSON"
            self._set_aside(taken, name, f"{reason} ({len(raw)} bytes)")
            return None
        try:
            self._check(payload)
        except Unservable as exc:
            self._set_aside(taken, name, str(exc))
            return None
        os.remove(taken)
        return payload

    def _check(self, payload: Any) -> None:
        """Raise Unservable unless kombu and Celery's consumer can take `payload` whole."""
        check_envelope(payload)
        properties = payload["properties"]
        encoding = properties.get("body_encoding")
        body = payload.get("body")
        if encoding and body:
            try:
                body = self.decode_body(body, encoding)  # type: ignore[no-untyped-call]
            except Exception as exc:
                raise Unservable(f"has a body that is not {encoding} ({exc})") from None
        check_celery_message(payload.get("headers") or {}, body, payload.get("content-type"))

    def _set_aside(self, taken: str, name: str, reason: str) -> None:
        folder = rejected_folder(self.data_folder_in)
        folder.mkdir(exist_ok=True)
        os.replace(taken, folder / name)
        log.error("set aside the message file %s in %s: it %s", name, folder, reason)


def rejected_folder(queue_folder: str) -> Path:
    """Where unservable message files are kept for a person to look at: beside the queue."""
    return Path(queue_folder).resolve().parent / "rejected"


def _read_under_lock(path: str) -> tuple[bytes, float]:
    """The file's bytes and seconds since its last write; _Busy while a writer holds it."""
    with open(path, "rb") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _Busy() from None
        raw = file.read()
        age = time.time() - os.fstat(file.fileno()).st_mtime
    return raw, age


def check_envelope(payload: Any) -> None:
    """kombu's virtual Message indexes these without a check; a wrong shape stops the consumer."""
    if not isinstance(payload, dict):
        kind = _JSON_KINDS.get(type(payload), type(payload).__name__)
        raise Unservable(f"is a JSON {kind}, not a kombu message envelope")
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        raise Unservable("is not a kombu message envelope: it has no 'properties' object")
    if not isinstance(properties.get("delivery_tag"), str):
        raise Unservable("has no 'delivery_tag' text in its properties")
    info = properties.get("delivery_info")
    # Giving a message back (at shutdown) indexes both; a broadcast's routing key is null.
    if not (
        isinstance(info, dict)
        and all(k in info and isinstance(info[k], (str, type(None))) for k in _ROUTE)
    ):
        raise Unservable("has no 'delivery_info' with an exchange and a routing key")
    if properties.get("body_encoding") not in (None, "utf-8", "base64"):
        raise Unservable(f"has an unknown body encoding {properties['body_encoding']!r}")
    for key in ("body", "content-type", "content-encoding"):
        if payload.get(key) is not None and not isinstance(payload[key], str):
            raise Unservable(f"has a {key!r} that is {type(payload[key]).__name__}, not text")
    if payload.get("headers") is not None and not isinstance(payload["headers"], dict):
        raise Unservable("has 'headers' that are not an object")


_ROUTE = ("exchange", "routing_key")
_JSON_KINDS = {type(None): "null", list: "array", str: "string", int: "number", float: "number"}
_JSON_KINDS[bool] = "boolean"


class Transport(filesystem.Transport):
    Channel = Channel
    driver_name = ALIAS

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # A folder, not a server: no default host for kombu to announce it "reverts" to.
        return {"port": self.default_port}


TRANSPORT_ALIASES[ALIAS] = "worker.broker.embedded:Transport"
