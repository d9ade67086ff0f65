"""How a URL is shown: the one rule for every URL a person or a log sees.

A URL may carry a password (``https://user:pw@host``) or a token in its query; the stored URL
keeps them for the calls, and everything shown, logged or sent in an event goes through
`mask_url`.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

_SECRET_PARAMETERS = frozenset({"password", "passwd", "secret", "token", "api_key"})
# `access_token`, `refresh_token`, `app_secret`, `db_password`: a secret by its last word too.
_SECRET_SUFFIXES = ("_password", "_passwd", "_secret", "_token")


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: the one way every URL is shown."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(a URL that cannot be parsed)"
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = "&".join(
        f"{name}=***" if _is_secret_parameter(name) else part
        for part in parts.query.split("&")
        if part
        for name in (part.partition("=")[0],)
    )
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # unchanged: urlunsplit would drop the // of an empty host (sqlite:///x)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _is_secret_parameter(name: str) -> bool:
    name = name.lower()
    return name in _SECRET_PARAMETERS or name.endswith(_SECRET_SUFFIXES)
