"""Request authentication as LAZOP does it (decision L1).

Written independently of ``worker.platforms.lazop`` on purpose: the sandbox is the check of the
client's signing, so the two must not share code.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from worker.sandbox.lazop.errors import LazopErrorAnswer

MANDATORY = ("app_key", "timestamp", "sign_method", "sign")


def expected_sign(api_path: str, params: Mapping[str, str], app_secret: str) -> str:
    """Uppercase hex HMAC-SHA256 of the path and every ``name + value`` but sign, sorted."""
    message = api_path + "".join(name + params[name] for name in sorted(params) if name != "sign")
    digest = hmac.new(app_secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest().upper()


def authenticate(
    api_path: str,
    params: Mapping[str, str],
    *,
    app_key: str,
    app_secret: str,
    max_clock_skew: float,
    now_ms: int,
) -> None:
    """Raise the LazopErrorAnswer the gateway would give for this request's system parameters."""
    for name in MANDATORY:
        if not params.get(name):
            raise LazopErrorAnswer("MissingParameter", name)
    if not hmac.compare_digest(params["app_key"].encode("utf-8"), app_key.encode("utf-8")):
        raise LazopErrorAnswer("APP_KEY_INVALID")
    if params["sign_method"] != "sha256":
        raise LazopErrorAnswer("InvalidParameter", "sign_method")
    stamp = params["timestamp"]
    if (
        not (stamp.isascii() and stamp.isdigit())
        or abs(now_ms - int(stamp)) > max_clock_skew * 1000
    ):
        raise LazopErrorAnswer("OPEN_API_TIMESTAMP_INVALID")
    expected = expected_sign(api_path, params, app_secret).encode("ascii")
    if not hmac.compare_digest(expected, params["sign"].encode("utf-8")):
        raise LazopErrorAnswer("IncompleteSignature")
