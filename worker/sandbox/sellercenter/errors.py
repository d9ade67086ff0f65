"""The Seller Center errors the sandbox answers with, and their catalogue (decision D7)."""

from __future__ import annotations

from dataclasses import dataclass, field

# code -> (text after "Ennn: ", ErrorType). "Platform" marks the server's own trouble (transient);
# "Sender" marks a problem with the request.
CATALOGUE: dict[int, tuple[str, str]] = {
    1: ("Parameter %s is mandatory", "Sender"),
    2: ("Invalid Version", "Sender"),
    3: ("Timestamp has expired", "Sender"),
    4: ("Invalid Timestamp format", "Sender"),
    5: ("Invalid Request Format", "Sender"),
    6: ("Unexpected internal error", "Platform"),
    7: ("Login failed. Signature mismatching", "Sender"),
    8: ("Invalid Action", "Sender"),
    11: ("Request too Big", "Sender"),
    14: ("Invalid Offset", "Sender"),
    16: ('"%s" Invalid Order ID', "Sender"),
    17: ("Invalid Date Format", "Sender"),
    19: ("Invalid Limit", "Sender"),
    36: ("Invalid status filter", "Sender"),
    74: ("Invalid sort filter", "Sender"),
    75: ("Invalid sort direction", "Sender"),
    30: ("Empty Request", "Sender"),
    204: ("Too many SKU in one request", "Sender"),
    503: ("Remove product failed", "Sender"),
    901: ("request too frequent, please try again later", "Platform"),
}


@dataclass(frozen=True)
class ErrorDetail:
    """One ``Body/ErrorDetail`` entry: which field of the request was wrong, and why."""

    field: str
    message: str
    value: str = ""
    seller_sku: str = ""


@dataclass(eq=False)  # exceptions must stay hashable
class SellerCenterErrorAnswer(Exception):
    """Raised to answer the call with an ErrorResponse (always HTTP 200, as the real API does).

    The sandbox's side of the wire: the worker's own errors are ``worker.platforms.errors``.
    """

    code: int
    argument: str | None = None
    """Fills the %s of the catalogue text (E001's parameter name, E016's order id)."""
    details: list[ErrorDetail] = field(default_factory=list)

    @property
    def message(self) -> str:
        """``ErrorMessage`` as the API writes it: ``E016: "7" Invalid Order ID``."""
        text, _kind = CATALOGUE[self.code]
        if "%s" in text:
            text = text.replace("%s", self.argument or "")
        return f"E{self.code:03d}: {text}"

    @property
    def error_type(self) -> str:
        return CATALOGUE[self.code][1]

    def __str__(self) -> str:
        return self.message
