"""Parsing of the XML request payloads both Lazada APIs take, refusing anything risky.

The legacy API's POST actions send them as the body; LAZOP's ``/images/migrate`` sends the same
document in its ``payload`` parameter. A payload that cannot be used raises :class:`PayloadError`
with the Lazada error number (30: empty, 5: malformed), each sandbox answering it in its own form.
The parser loads no DTD, resolves no entity, touches no network, and any document with a
DOCTYPE is refused outright (E005), so an external-entity or billion-laughs body is never
expanded. One parser per thread: lxml parsers must not be shared between threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from lxml import etree

_local = threading.local()

EMPTY = 30
MALFORMED = 5


@dataclass(eq=False)  # exceptions must stay hashable
class PayloadError(Exception):
    """A payload that cannot be used: the error number, and which element was wrong and why
    (empty for an empty payload)."""

    code: int
    field: str = ""
    message: str = ""


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        _local.parser = parser
    return parser


def parse_request(body: bytes) -> etree._Element:
    """The ``<Request>`` root of a body; E030 if the body is empty, E005 if it is not one."""
    if not body.strip():
        raise PayloadError(EMPTY)
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise PayloadError(MALFORMED, "Request", "DTDs and entities are not allowed")
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as error:
        raise PayloadError(MALFORMED, "Request", f"Malformed XML: {error}") from None
    if root.getroottree().docinfo.internalDTD is not None or root.tag != "Request":
        raise PayloadError(MALFORMED, "Request", "The root element must be Request")
    return root


def _texts(root: etree._Element, path: str, field: str) -> list[str]:
    """Stripped texts of the elements at ``path``; E005 for an empty one."""
    texts = []
    for element in root.iterfind(path):
        text = (element.text or "").strip()
        if not text or len(element):
            raise PayloadError(MALFORMED, field, f"{field} must be a non-empty text")
        texts.append(text)
    return texts


def seller_skus(body: bytes) -> list[str]:
    """RemoveProduct: ``Request/Product/Skus/Sku/SellerSku`` texts in order (E030 if none)."""
    skus = _texts(parse_request(body), "Product/Skus/Sku/SellerSku", "SellerSku")
    if not skus:
        raise PayloadError(EMPTY)
    return skus


def image_urls(body: bytes) -> list[str]:
    """MigrateImages: ``Request/Images/Url`` texts in order (E030 if none)."""
    urls = _texts(parse_request(body), "Images/Url", "Url")
    if not urls:
        raise PayloadError(EMPTY)
    return urls


def request_id(body: bytes) -> str:
    """GetResponse: the ``Request/RequestId`` text (E030 if absent or empty)."""
    ids = _texts(parse_request(body), "RequestId", "RequestId")
    if len(ids) != 1:
        raise (PayloadError(EMPTY) if not ids else PayloadError(MALFORMED, "RequestId", "One only"))
    return ids[0]
