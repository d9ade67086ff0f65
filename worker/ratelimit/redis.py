"""The slot store in Redis (the broker's server), for deployments whose broker is Redis.

The same steps as calendar.place() and calendar.move_slot(), in Lua scripts (lua/*.lua), so
each runs atomically on the server and on its clock. The account's hash holds next_slot (the
floor), slow_until, and a field "g:<group>" for each group with its slots ("t1,t2"); fields
whose slots are all past go.

This module shares its name with the redis library: its imports are absolute, so
`import redis` here is the library, never this module.
"""

from __future__ import annotations

from importlib.resources import files

from worker.ratelimit.calendar import EPSILON, MAX_SHIFTS, WINDOW, Grant


def _script(name: str) -> str:
    """A Lua script shipped in the package (worker/ratelimit/lua/)."""
    return files("worker.ratelimit").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


class RedisSlots:
    """Slots in Redis (the broker's server), one hash per account."""

    def __init__(self, url: str) -> None:
        # Imported here: the redis library is an optional extra, needed only with this store.
        import redis

        self.client = redis.Redis.from_url(url)
        window_shift = _script("window_shift")
        self._reserve = self.client.register_script(window_shift + _script("reserve"))
        self._throttled = self.client.register_script(_script("throttled"))
        self._move = self.client.register_script(window_shift + _script("move"))

    def reserve(
        self,
        account: str,
        group: str,
        interval: float,
        ahead: int,
        calls: int = 1,
        per_second: int = 0,
    ) -> Grant:
        args: list[str | float] = [interval, ahead, group, EPSILON, calls, per_second]
        args += [WINDOW, MAX_SHIFTS]
        reserved, wait = self._reserve(keys=[_key(account)], args=args)
        return Grant(bool(reserved), float(wait))

    def move(
        self,
        account: str,
        group: str,
        late: float,
        interval: float,
        per_second: int,
        spacing: float = 0.0,
    ) -> bool:
        args: list[str | float] = [late, interval, per_second, group, WINDOW, EPSILON, spacing]
        return bool(self._move(keys=[_key(account)], args=args))

    def throttled(self, account: str, pause: float, slow_for: float) -> None:
        self._throttled(keys=[_key(account)], args=[pause, slow_for])


def _key(account: str) -> str:
    return f"lazada-worker:rate:{account}"
