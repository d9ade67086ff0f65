"""Request bodies (decision D5 for MigrateImages): the XML of each POST, built only from
values it can carry.

A value that cannot be sent raises ``UnsendableRequest`` naming it, before any call: the worker
fails that value for good and sends the rest, instead of retrying a call that can never be made.
"""

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from lxml import etree

from worker.platforms.sellercenter.errors import UnsendableRequest
from worker.urls import mask_url

__all__ = [
    "MAX_SKUS_PER_REMOVAL",
    "MAX_URLS_PER_MIGRATION",
    "NOT_XML_CHARACTERS",
    "get_response_body",
    "migration_body",
    "not_xml_character",
    "removal_body",
]

MAX_SKUS_PER_REMOVAL = 50  # RemoveProduct doc: "maximum number of 50 SellerSkus in one request"
MAX_URLS_PER_MIGRATION = 8  # MigrateImages doc: at most 8 images per call
# XML 1.0 Char: lone surrogates (Python's decoding of undecodable bytes), U+FFFE, U+FFFF and
# most C0 controls have no representation in a document, escaped or not.
NOT_XML_CHARACTERS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def not_xml_character(text: str) -> str | None:
    """The first character of ``text`` that XML 1.0 cannot carry, or None."""
    found = NOT_XML_CHARACTERS.search(text)
    return found.group(0) if found else None


def removal_body(skus: Sequence[str]) -> bytes:
    """RemoveProduct's body for 1 to 50 distinct SellerSkus."""
    action = "RemoveProduct"
    if isinstance(skus, str):
        raise UnsendableRequest("skus must be a list of SellerSkus, not a string", action=action)
    sku_list = list(skus)
    if not 1 <= len(sku_list) <= MAX_SKUS_PER_REMOVAL:
        raise UnsendableRequest(
            f"RemoveProduct takes 1 to {MAX_SKUS_PER_REMOVAL} SKUs, got {len(sku_list)}",
            action=action,
        )
    if not all(isinstance(sku, str) and sku.strip() for sku in sku_list):
        bad = next(sku for sku in sku_list if not isinstance(sku, str) or not sku.strip())
        raise UnsendableRequest(
            f"every SellerSku must be a non-empty string, got {bad!r}", action=action
        )
    if len(set(sku_list)) != len(sku_list):
        raise UnsendableRequest("the SKUs of one call must be distinct", action=action)
    refused = {
        sku: _cannot_carry(char) for sku in sku_list if (char := not_xml_character(sku)) is not None
    }
    if refused:
        sku, reason = next(iter(refused.items()))
        raise UnsendableRequest(f"SellerSku {sku!r}: {reason}", action=action, refused=refused)
    request = etree.Element("Request")
    node = etree.SubElement(etree.SubElement(etree.SubElement(request, "Product"), "Skus"), "Sku")
    for sku in sku_list:
        etree.SubElement(node, "SellerSku").text = sku
    return _xml_body(request)


def migration_body(urls: Sequence[str]) -> bytes:
    """MigrateImages' body for 1 to 8 http(s) image URLs."""
    action = "MigrateImages"
    if isinstance(urls, str):
        raise UnsendableRequest("urls must be a sequence of URLs, not one string", action=action)
    url_list = list(urls)
    if not 1 <= len(url_list) <= MAX_URLS_PER_MIGRATION:
        raise UnsendableRequest(
            f"MigrateImages takes 1 to {MAX_URLS_PER_MIGRATION} URLs, got {len(url_list)}",
            action=action,
        )
    refused: dict[str, str] = {}
    for url in url_list:
        if not isinstance(url, str):
            raise UnsendableRequest(f"not a usable image URL: {mask_url(url)!r}", action=action)
        char = not_xml_character(url)
        if char is not None:
            refused[url] = _cannot_carry(char)
            continue
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            refused[url] = f"not a URL ({exc})"
            continue
        if parts.scheme not in ("http", "https") or not parts.netloc:
            refused[url] = "image URLs must be http(s) with a host"
    if refused:
        url, reason = next(iter(refused.items()))
        raise UnsendableRequest(
            f"image URL {mask_url(url)!r}: {reason}", action=action, refused=refused
        )
    request = etree.Element("Request")
    images = etree.SubElement(request, "Images")
    for url in url_list:
        etree.SubElement(images, "Url").text = url
    return _xml_body(request)


def get_response_body(request_id: str) -> bytes:
    """GetResponse's body for one RequestId."""
    action = "GetResponse"
    if not isinstance(request_id, str) or not request_id.strip():
        raise UnsendableRequest("request_id must be a non-empty string", action=action)
    char = not_xml_character(request_id)
    if char is not None:
        reason = _cannot_carry(char)
        raise UnsendableRequest(
            f"request_id {request_id!r}: {reason}", action=action, refused={request_id: reason}
        )
    request = etree.Element("Request")
    etree.SubElement(request, "RequestId").text = request_id
    return _xml_body(request)


def _cannot_carry(char: str) -> str:
    return f"holds U+{ord(char):04X}, which XML cannot carry; it can never be sent"


def _xml_body(request: etree._Element) -> bytes:
    # lxml would write the declaration with single quotes; use the documented form.
    return _XML_DECLARATION + etree.tostring(request, xml_declaration=False, encoding="UTF-8")
