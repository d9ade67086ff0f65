"""Encryption of stored secrets (API keys, app secrets, tokens) with Fernet keys.

The keys come from `LAZADA_SECRET_KEY` (comma-separated) or `LAZADA_SECRET_KEY_FILE`: the
first key encrypts, every key decrypts, so a key is rotated by putting a new one first and
keeping the old one after it. On the embedded defaults (a SQLite file) with neither, a key
file is created beside the database; a server database needs a key given, because every
machine of a deployment must share it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import tempfile
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import make_url

from worker.settings import Settings, SettingsError

HOW_TO_MAKE_A_KEY = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)
_SEPARATORS = re.compile(r"[,\s]+")  # Fernet keys are url-safe base64: neither appears in one


class SecretKeyError(SettingsError):
    """No usable key, or a stored secret that the key cannot decrypt (exit 2 at the CLI)."""


class SecretBox:
    """Encrypts with the first key, decrypts with any; the keys never appear in its repr."""

    def __init__(self, keys: list[bytes], source: str) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._count = len(keys)
        self.source = source  # where the keys came from, for error messages

    def __repr__(self) -> str:
        return f"SecretBox({self._count} key(s) from {self.source})"

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def rotate(self, token: str, what: str) -> str:
        """The stored secret encrypted again with the first key (decrypted with any), so that
        an old key can be retired once every secret has been rotated."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise SecretKeyError(
                f"{what} cannot be decrypted with the key(s) from {self.source}: keep the key "
                "it was stored with among the keys (after the new first one) while rotating"
            ) from None

    def decrypt(self, token: str, what: str) -> str:
        """The clear text of a stored secret; `what` names it in the error (never its value)."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretKeyError(
                f"{what} cannot be decrypted with the key(s) from {self.source}: it was stored "
                "with another key (to rotate, put the new key first and keep the old one after "
                "it, comma-separated)"
            ) from None


_lock = threading.Lock()
_boxes: dict[tuple[str | None, str | None, str], SecretBox] = {}


def secret_box(settings: Settings) -> SecretBox:
    """The process's SecretBox for these settings; creates the embedded key file if needed."""
    cache_key = (settings.secret_key, settings.secret_key_file, settings.database_url)
    with _lock:
        box = _boxes.get(cache_key)
        if box is None:
            box = _load(settings)
            _boxes[cache_key] = box
        return box


def _load(settings: Settings) -> SecretBox:
    if settings.secret_key:
        return _box(settings.secret_key, "LAZADA_SECRET_KEY")
    if settings.secret_key_file:
        path = Path(settings.secret_key_file)
        try:
            text = path.read_text(encoding="ascii")
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not a key file"
            raise SecretKeyError(
                f"LAZADA_SECRET_KEY_FILE {str(path)!r} cannot be read ({reason})"
            ) from None
        return _box(text, f"LAZADA_SECRET_KEY_FILE {str(path)!r}")
    embedded = embedded_key_path(settings.database_url)
    if embedded is None:
        raise SecretKeyError(
            "no key to encrypt stored secrets with: set LAZADA_SECRET_KEY (or a file of it in "
            "LAZADA_SECRET_KEY_FILE), the same on every machine, to a key made with: "
            f"{HOW_TO_MAKE_A_KEY}"
        )
    return _box(_read_or_create(embedded, settings.database_url), f"the key file {str(embedded)!r}")


def _box(text: str, source: str) -> SecretBox:
    parts = [part for part in _SEPARATORS.split(text) if part]
    if not parts:
        raise SecretKeyError(f"{source} holds no key; make one with: {HOW_TO_MAKE_A_KEY}")
    for position, part in enumerate(parts, start=1):
        try:
            Fernet(part)
        except ValueError:
            raise SecretKeyError(
                f"{source}: key #{position} is not a Fernet key (32 url-safe base64-encoded "
                f"bytes); make one with: {HOW_TO_MAKE_A_KEY}"
            ) from None
    return SecretBox([part.encode("ascii") for part in parts], source)


def embedded_key_path(database_url: str) -> Path | None:
    """The key file of the embedded defaults, beside a SQLite database file (the name matches
    the `*.sqlite3-*` ignore pattern, so it is not committed by accident); None otherwise."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    database = Path(url.database).resolve()
    return database.with_name(f"{database.name}-secret.key")


def _read_or_create(path: Path, database_url: str) -> str:
    """The key in `path`, written first if there is none. The key is written to a private
    temporary file and linked into place, which fails if the name exists: two processes
    starting together both end up with the one key that won, never a half-written file.

    No key file is made for a database that already holds secrets: they were stored with
    another key (LAZADA_SECRET_KEY, or a key file since lost), and secrets under two keys
    would leave some unreadable whichever key is given later."""
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        pass
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not a key file"
        raise SecretKeyError(f"the key file {str(path)!r} cannot be read ({reason})") from None
    stored = _stored_secrets(database_url)
    if stored:
        raise SecretKeyError(
            f"the database holds {stored} encrypted secret(s) but there is no key file "
            f"{str(path)!r} and no LAZADA_SECRET_KEY: set LAZADA_SECRET_KEY (or "
            "LAZADA_SECRET_KEY_FILE) to the key they were stored with, or restore the key file"
        )
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".secret-key-", dir=path.parent)  # 0600
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(Fernet.generate_key().decode("ascii") + "\n")
            file.flush()
            os.fsync(file.fileno())
        # O_CREAT|O_EXCL semantics, with the content complete; if another process won, its
        # key is the one read below.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
        # The new name must survive a crash as well as the content: a key lost with the
        # secrets it encrypted still stored would leave them unreadable for good.
        _fsync_directory(path.parent)
    except OSError as exc:
        raise SecretKeyError(
            f"the key file {str(path)!r} cannot be created ({exc.strerror or exc}): make its "
            "folder writable, or set LAZADA_SECRET_KEY"
        ) from None
    finally:
        if temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeError) as exc:  # the name is taken by something that is no key
        reason = getattr(exc, "strerror", None) or "not a key file"
        raise SecretKeyError(
            f"the key file {str(path)!r} cannot be created ({reason}): remove what holds its "
            "name, or set LAZADA_SECRET_KEY"
        ) from None


def _stored_secrets(database_url: str) -> int:
    """How many accounts of the SQLite database hold an encrypted value (none where there is
    no database or table yet). Read with a connection of its own that takes no lock: the
    caller may be inside a write transaction of the same database."""
    database = make_url(database_url).database
    if not database or not Path(database).exists():
        return 0
    try:
        with contextlib.closing(
            sqlite3.connect(f"{Path(database).resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        ) as connection:
            row = connection.execute(
                "SELECT count(*) FROM accounts WHERE secret IS NOT NULL "
                "OR access_token IS NOT NULL OR refresh_token IS NOT NULL"
            ).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
