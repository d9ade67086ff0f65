"""The input rules (worker/inputs.py): what a SellerSku, key, RequestId, image URL, order id
and SKU file line may hold, and that whatever they accept can be sent."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from lxml import etree

from worker.inputs import (
    InvalidInput,
    clean_key,
    clean_order_id,
    clean_request_id,
    clean_skus,
    clean_urls,
    read_sku_file,
    sku_lines,
)
from worker.platforms.sellercenter.bodies import get_response_body, migration_body, removal_body

# Characters XML 1.0 cannot carry: a lone surrogate (Python's decoding of the byte \xff in
# argv), the non-characters U+FFFE, U+FFFF and others, NUL.
NOT_XML = ["\udcff", "\ud800", "\uffff", "\ufffe", "\x00", "\x1b"]
# Characters XML can carry that a visible identifier must not hold: DEL, C1 controls, line
# and paragraph separators, bidi controls, zero-width characters, the BOM, other spaces,
# private use, non-characters outside the BMP.
INVISIBLE = [
    "\x7f",
    "\x85",
    "\x9b",
    "\x0b",
    "\x0c",
    "\u2028",
    "\u2029",
    "\u202e",
    "\u2066",
    "\u200f",
    "\u061c",
    "\u200b",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u00ad",
    "\u00a0",
    "\u3000",
    "\ue000",
    "\ufdd0",
    "\U0001fffe",
    "\U0010ffff",
]
REFUSED = NOT_XML + INVISIBLE
# Category by category, what the rule refuses (str.isprintable's complement).
REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"}


def _ids(chars: list[str]) -> list[str]:
    return [f"U+{ord(c):04X}" for c in chars]


@pytest.mark.parametrize("char", REFUSED, ids=_ids(REFUSED))
def test_a_sku_holding_an_invisible_or_unsendable_character_is_refused_and_named(
    char: str,
) -> None:
    with pytest.raises(InvalidInput) as refused:
        clean_skus(["OK-1", f"BAD{char}X"])
    message = str(refused.value)
    assert "SKU #2" in message and f"U+{ord(char):04X}" in message
    assert message.isprintable()  # one line, whatever the SKU held


@pytest.mark.parametrize("char", REFUSED, ids=_ids(REFUSED))
def test_a_key_holding_an_invisible_or_unsendable_character_is_refused(char: str) -> None:
    with pytest.raises(InvalidInput, match="key"):
        clean_key(f"job{char}1")


@pytest.mark.parametrize("char", REFUSED, ids=_ids(REFUSED))
def test_a_request_id_holding_an_invisible_or_unsendable_character_is_refused(char: str) -> None:
    with pytest.raises(InvalidInput, match="request id"):
        clean_request_id(f"0123{char}abcd")


@pytest.mark.parametrize("char", REFUSED, ids=_ids(REFUSED))
def test_an_image_url_holding_an_invisible_or_unsendable_character_is_refused(char: str) -> None:
    with pytest.raises(InvalidInput, match="URL #1"):
        clean_urls([f"http://a.com/{char}.jpg"])


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://a.com:99999/x.jpg", "Port out of range"),
        ("http://a.com:0/x.jpg", "port 0"),
        ("http://exa mple.com/a b.jpg", "percent-encode"),
        ("http://a.com/a b.jpg", "percent-encode"),
        ("http://-a.com/x.jpg", "invalid host"),
        ("http://a..com/x.jpg", "invalid host"),
    ],
)
def test_an_image_url_with_a_bad_host_port_or_a_space_is_refused_with_what_is_wrong(
    url: str, problem: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        clean_urls(["https://img.example.com/ok.jpg", url])
    assert f"URL #2 {url!r}" in str(refused.value) and problem in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://img.example.com/a.jpg?w=800&h=600",
        "http://[::1]:8080/a.jpg",
        "http://127.0.0.1:65535/a.jpg",
        "https://例え.jp/画像.jpg",
        "https://img.example.com/a%20b.jpg",
    ],
)
def test_image_urls_with_valid_hosts_and_ports_are_accepted_as_given(url: str) -> None:
    assert clean_urls([f"  {url}\t"]) == [url]


@pytest.mark.parametrize("order_id", ["²", "¹²", "١٢٣", "12\u00a0", "0x10", "+5", " "])
def test_an_order_id_of_anything_but_ascii_digits_is_refused_as_bad_input(order_id: str) -> None:
    with pytest.raises(InvalidInput, match="order id"):
        clean_order_id(order_id)


def test_an_order_id_of_ascii_digits_with_surrounding_spaces_is_accepted() -> None:
    assert clean_order_id(" 190 ") == 190


def test_sku_lines_end_only_at_a_newline_so_other_separators_stay_in_the_sku() -> None:
    text = "A\x0bB\nC\x85D\r\nE\u2028F\n\n \t\nG\rH\nLAST"
    assert sku_lines(text) == ["A\x0bB", "C\x85D", "E\u2028F", "G\rH", "LAST"]


@pytest.mark.parametrize("separator", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\r"])
def test_a_sku_file_line_holding_another_line_separator_is_one_sku_and_refused(
    tmp_path: Path, separator: str
) -> None:
    path = tmp_path / "skus.txt"
    path.write_bytes(f"OK-1\nA{separator}B\nOK-2\n".encode())
    lines = read_sku_file(str(path))
    assert lines == ["OK-1", f"A{separator}B", "OK-2"]
    with pytest.raises(InvalidInput, match="SKU #2"):
        clean_skus(lines)


def test_a_sku_file_with_windows_line_ends_gives_one_sku_a_line(tmp_path: Path) -> None:
    path = tmp_path / "skus.txt"
    path.write_bytes(b"A-1\r\nA-2\r\n\r\nA-3")
    assert clean_skus(read_sku_file(str(path))) == ["A-1", "A-2", "A-3"]


_ANY_CHARACTER = st.one_of(
    st.characters(),  # every category but surrogates
    st.characters(categories=["Cs"]),
    st.sampled_from(REFUSED),
)


@hypothesis_settings(max_examples=500)
@given(st.lists(st.text(_ANY_CHARACTER, max_size=12), min_size=1, max_size=50))
def test_any_skus_clean_skus_accepts_can_be_sent_in_a_removal_request(skus: list[str]) -> None:
    try:
        cleaned = clean_skus(skus)
    except InvalidInput as exc:
        assert str(exc).isprintable()
        return
    for sku in cleaned:
        assert not REFUSED_CATEGORIES & {unicodedata.category(c) for c in sku.replace(" ", "")}
    sent = etree.fromstring(removal_body(cleaned)).findall("Product/Skus/Sku/SellerSku")
    assert [element.text for element in sent] == cleaned


@hypothesis_settings(max_examples=300)
@given(st.text(_ANY_CHARACTER, min_size=1, max_size=20))
def test_any_request_id_clean_request_id_accepts_can_be_sent(text: str) -> None:
    try:
        cleaned = clean_request_id(text)
    except InvalidInput:
        return
    assert etree.fromstring(get_response_body(cleaned)).findtext("RequestId") == cleaned


@hypothesis_settings(max_examples=300)
@given(st.text(_ANY_CHARACTER, max_size=12))
def test_any_url_clean_urls_accepts_can_be_sent_in_a_migration_request(path: str) -> None:
    try:
        cleaned = clean_urls([f"https://img.example.com/{path}"])
    except InvalidInput:
        return
    sent = etree.fromstring(migration_body(cleaned)).findall("Images/Url")
    assert [element.text for element in sent] == cleaned
