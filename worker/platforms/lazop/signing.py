"""LAZOP request signing (decision L1).

``HEX_UPPER(HMAC_SHA256(app_secret, api_path + name1 + value1 + name2 + value2 ...))`` over
every parameter but ``sign``, sorted by name in code-point order, with no encoding in the
string to sign. Parameters whose value is None or "" are neither signed nor sent.
"""

import hashlib
import hmac
from collections.abc import Mapping

__all__ = ["prepare", "sign", "string_to_sign"]

ParamValue = str | int | bool | None


def prepare(params: Mapping[str, ParamValue]) -> dict[str, str]:
    """The parameters as the exact strings sent and signed: None and "" dropped, booleans
    as ``true``/``false`` (Python's ``True`` is not what the API expects)."""
    prepared: dict[str, str] = {}
    for name, value in params.items():
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            prepared[name] = "true" if value else "false"
        elif isinstance(value, int):
            prepared[name] = str(value)
        elif isinstance(value, str):
            prepared[name] = value
        else:
            raise TypeError(f"parameter {name!r} must be str, int or bool, got {type(value)}")
    return prepared


def string_to_sign(api_path: str, params: Mapping[str, str]) -> str:
    """``/order/getaccess_tokentestapp_key123456...``: the path, then sorted name+value pairs."""
    return api_path + "".join(name + params[name] for name in sorted(params) if name != "sign")


def sign(api_path: str, params: Mapping[str, str], app_secret: str) -> str:
    """Uppercase hex HMAC-SHA256 of :func:`string_to_sign`, keyed with the app secret."""
    message = string_to_sign(api_path, params).encode("utf-8")
    return hmac.new(app_secret.encode("utf-8"), message, hashlib.sha256).hexdigest().upper()
