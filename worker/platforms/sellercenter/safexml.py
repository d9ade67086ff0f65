"""Hardened XML parsing for untrusted response bodies.

A response passes through proxies we do not control, so it may carry a DTD with entity bombs
(billion laughs) or external entities (``file:///etc/passwd``). The Seller Center API never
sends a DTD, so any document that has one is refused before anything in it is used.
"""

from lxml import etree

__all__ = ["RefusedDocument", "parse_xml"]


class RefusedDocument(ValueError):
    """The bytes are not a well-formed, DTD-free XML document; the text says why."""


def _parser() -> etree.XMLParser:
    # A new parser per call: lxml parsers are not safe to share between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_xml(data: bytes) -> etree._Element:
    """Parse ``data`` into its root element, refusing DTDs, entities and malformed documents."""
    # Cheap refusal before libxml2 sees a DTD at all (covers UTF-8 and ASCII documents).
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise RefusedDocument("XML document with a DTD (refused: entity expansion risk)")
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise RefusedDocument(f"malformed XML ({_first_line(str(exc))})") from exc
    except ValueError as exc:  # e.g. a str with an encoding declaration, or an empty document
        raise RefusedDocument(f"unparsable XML ({_first_line(str(exc))})") from exc
    # Same check after parsing, for encodings the byte scan above cannot see (e.g. UTF-16).
    info = root.getroottree().docinfo
    doctype: str = getattr(info, "doctype", "")  # missing from lxml-stubs
    if doctype or info.internalDTD is not None:
        raise RefusedDocument("XML document with a DTD (refused: entity expansion risk)")
    if any(isinstance(node, etree._Entity) for node in root.iter()):
        raise RefusedDocument("XML document with entity references (refused)")
    return root


def _first_line(text: str) -> str:
    return text.splitlines()[0][:120] if text else "no detail"
