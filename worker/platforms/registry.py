"""The platforms the worker speaks: a platform is one package under worker/platforms/ and one
entry here (its `PlatformEntry`, worker.platforms.base).

Accounts, tokens, the CLI and the database read a platform's name, credentials and token
endpoints from its entry, never from a list of names of their own.
"""

from __future__ import annotations

from worker.platforms.base import PlatformEntry
from worker.platforms.lazop.entry import LAZOP
from worker.platforms.sellercenter.entry import SELLERCENTER

__all__ = ["entry", "names", "register", "registered", "unregister"]

_entries: dict[str, PlatformEntry] = {}


def register(new: PlatformEntry) -> None:
    """Add a platform (the shipped ones are added when this module is imported)."""
    if new.name in _entries and _entries[new.name] is not new:
        raise ValueError(f"platform {new.name!r} is registered already")
    _entries[new.name] = new


def unregister(name: str) -> None:
    """Remove a platform (a test's own platform, when the test is over)."""
    _entries.pop(name, None)


def entry(name: str) -> PlatformEntry:
    """The registered platform `name`; a KeyError naming the registered ones otherwise."""
    try:
        return _entries[name]
    except KeyError:
        raise KeyError(
            f"platform {name!r} is not supported (supported: {', '.join(names())})"
        ) from None


def names() -> tuple[str, ...]:
    """The registered platforms' names, sorted."""
    return tuple(sorted(_entries))


def registered() -> tuple[PlatformEntry, ...]:
    """Every registered platform, in the order they were registered."""
    return tuple(_entries.values())


register(SELLERCENTER)
register(LAZOP)
