"""The errors every platform raises, at the levels the services act on.

``TransientApiError`` is worth retrying later (``ThrottledApiError``: the API said slow down);
``PermanentApiError`` fails the work once. Codes are strings in the platform's own spelling
(``"E016"`` on the legacy API, ``"ApiCallLimit"`` on the Open Platform).
"""

from __future__ import annotations


class ApiError(Exception):
    """A call that did not do what was asked; ``str(e)`` reads ``GetOrder failed: E016 ...``."""

    def __init__(self, message: str, *, action: str, code: str | None = None) -> None:
        self.message = message
        self.action = action
        self.code = code
        super().__init__(message)

    def __str__(self) -> str:
        if self.code is None:
            return f"{self.action} failed: {self.message}"
        return f"{self.action} failed: {self.code} {self.message}"


class TransientApiError(ApiError):
    """The same call may succeed later: the service, the network or the rate recovers."""


class ThrottledApiError(TransientApiError):
    """The API (or the local rate limit) asked for fewer calls: back off first."""


class PermanentApiError(ApiError):
    """Retrying the same call fails the same way: record it once and move on."""


class AuthorizationLostError(PermanentApiError):
    """The seller's authorization is gone (revoked, or its refresh token expired): a person
    must authorize the account again. Its work is parked, not failed (decision L4)."""


class AccountParked(AuthorizationLostError):
    """The account is already known to need authorization: its work waits, and nothing new
    is reported (the loss was, once, when it happened)."""


class TransportError(TransientApiError):
    """No usable answer: a timeout, a connection error, an HTTP status other than 200, a body
    that is not the platform's envelope (a proxy's page, empty, truncated), too large or
    hostile. Each platform's client raises its own subclass, with the platform's details."""


class NotFoundError(PermanentApiError):
    """The object asked for (an order, an image job) does not exist."""


class UnknownInBatch(NotFoundError):
    """A call about several objects named one the API does not know (the Open Platform's
    order items of several orders, code 37): the call did nothing; which one it was is found
    by asking for fewer at a time."""


class UnusableOrder(ValueError):
    """An order the API answered in a shape that cannot be stored (a time in a shape no
    decision names, a price that is not a number): a failure of that order alone."""


class UnsendableRequest(PermanentApiError, ValueError):
    """The request cannot be built from what was given; nothing was sent, and the same values
    never can be. ``refused`` maps each value at fault (a SellerSku, a URL) to the reason, so
    a caller fails those and sends the rest; empty when the call as a whole is wrong."""

    def __init__(
        self,
        message: str,
        *,
        action: str,
        code: str | None = None,
        refused: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, action=action, code=code)
        self.refused = dict(refused or {})
