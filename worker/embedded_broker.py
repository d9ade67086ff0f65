"""The embedded broker: kombu's filesystem transport, safe with several readers and writers.

kombu's own filesystem transport creates a message file before it writes it, and reads files
without a lock, so a worker can read a half-written message; the JSON error then stops its
consumer. Here a message is written under a hidden name and renamed into the queue (readers see
whole files only), and a reader takes a file by renaming it (one reader wins). A file that still
cannot be decoded (a foreign writer's half-written one) is logged and dropped, never raised:
the database is the source of truth, and the sweepers send the work again.

Published as the transport alias `lazada-files`; the default broker URL is `lazada-files://`.
"""

from __future__ import annotations

import logging
import os
import uuid
from queue import Empty
from time import monotonic_ns
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

ALIAS = "lazada-files"


class Channel(filesystem.Channel):
    # kombu's two base classes name the argument differently; this matches the filesystem one.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # Fixed width: readers take names in text order, which is then the order of sending.
        name = f"{monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        # The leading dot keeps the file out of every reader's match until it is complete.
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))  # type: ignore[no-untyped-call]
            os.replace(partial, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"cannot add a message to {self.data_folder_out!r}: {exc}") from exc

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            path = os.path.join(self.data_folder_in, name)
            taken = f"{path}.taken"
            try:
                os.rename(path, taken)  # atomic in one folder: exactly one reader gets it
            except OSError:
                continue  # another reader took it first
            try:
                with open(taken, "rb") as file:
                    payload = file.read()
                os.remove(taken)
            except OSError as exc:
                raise ChannelError(f"cannot read the message {name!r}: {exc}") from exc
            try:
                return loads(bytes_to_str(payload))  # type: ignore[no-untyped-call]
            except ValueError:
                log.error("dropped an unreadable message file %s (%d bytes)", name, len(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel
    driver_name = ALIAS


TRANSPORT_ALIASES[ALIAS] = "worker.embedded_broker:Transport"
