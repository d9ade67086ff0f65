"""Who may use the console's pages: the Host they asked for (against DNS rebinding), the
password (HTTP Basic, user `admin`) when one is set, and a CSRF token on every form.

The CSRF token is a random value in a SameSite=Lax cookie that every form repeats in a hidden
field (a double-submit token): any `web` process can check it with nothing stored, and another
site can neither read the cookie nor make the browser send it on a cross-site POST.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from werkzeug.wrappers import Request

from worker.settings import SettingsError

CSRF_COOKIE = "lw_csrf"
CSRF_FIELD = "csrf"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
USER = "admin"


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def clean_public_url(url: str) -> str:
    """LAZADA_PUBLIC_URL without a trailing slash; an http(s) URL with a host and no
    password, query or fragment, else a SettingsError (exit 2)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            "LAZADA_PUBLIC_URL must be an http(s) URL with a host, e.g. https://console.example.com"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise SettingsError(
            "LAZADA_PUBLIC_URL must have no user, password, query or fragment: "
            "it is the console's address as a browser reaches it"
        )
    return url.strip().rstrip("/")


def allowed_hosts(public_url: str) -> frozenset[str]:
    """Host names a page may be asked for: loopback's and LAZADA_PUBLIC_URL's."""
    host = urlsplit(public_url).hostname or ""
    return LOOPBACK_NAMES | {host.lower()}


def request_host(request: Request) -> str:
    """The Host header's name without its port ('' when there is none)."""
    raw = request.headers.get("Host", "")
    if raw.startswith("["):
        return raw[1 : raw.find("]")].lower() if "]" in raw else ""
    return raw.rpartition(":")[0].lower() if ":" in raw else raw.lower()


def password_matches(request: Request, password: str) -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    user_ok = hmac.compare_digest((auth.username or "").encode(), USER.encode())
    password_ok = hmac.compare_digest((auth.password or "").encode(), password.encode())
    return user_ok and password_ok


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_valid(request: Request) -> bool:
    """A POST's hidden token equals its cookie's (both present)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    field = request.form.get(CSRF_FIELD, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), field.encode())
