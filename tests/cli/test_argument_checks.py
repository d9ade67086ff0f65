"""Bad arguments: exit 2, one line on standard error that says what was wrong, nothing on
standard output, nothing recorded (no row, no message)."""

from __future__ import annotations

import pytest

from tests.cli.command_line import Cli, assert_bad_input


def test_remove_products_without_skus_is_bad_input(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("remove-products"))
    assert "no SKUs" in line


@pytest.mark.parametrize(
    "args",
    [
        ["remove-products", "A-1", "--key", ""],
        ["remove-products", "A-1", "--key", "   "],
        ["migrate-images", "https://img.example.com/1.jpg", "--key", ""],
        ["status", " "],
        ["image-jobs", "--key", ""],
    ],
    ids=["remove-empty", "remove-blank", "migrate-empty", "status-blank", "image-jobs-empty"],
)
def test_an_empty_or_blank_key_is_bad_input(cli: Cli, args: list[str]) -> None:
    line = assert_bad_input(cli, cli(*args))
    assert "key" in line


def test_a_sku_file_that_does_not_exist_is_bad_input(cli: Cli) -> None:
    missing = cli.folder / "no-such-skus.txt"
    line = assert_bad_input(cli, cli("remove-products", "A-1", "--file", str(missing)))
    assert "no-such-skus.txt" in line


@pytest.mark.parametrize("kind", ["directory", "not-utf8"])
def test_a_sku_file_that_cannot_be_read_is_bad_input(cli: Cli, kind: str) -> None:
    path = cli.folder / "skus"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(b"A-1\n\xff\xfe\xfa\n")
    line = assert_bad_input(cli, cli("remove-products", "--file", str(path)))
    assert "cannot be read" in line


@pytest.mark.parametrize("command", ["fetch-order", "order"])
@pytest.mark.parametrize("order_id", ["abc", "0", "-3", "1.5", "99999999999999999999", "²", "١٢٣"])
def test_an_order_id_that_is_not_a_positive_integer_is_bad_input(
    cli: Cli, command: str, order_id: str
) -> None:
    line = assert_bad_input(cli, cli(command, order_id))
    assert "order id" in line


@pytest.mark.parametrize("url", ["ftp://x", "not a url", "https://", "file:///etc/passwd"])
def test_an_image_url_that_is_not_http_is_bad_input(cli: Cli, url: str) -> None:
    line = assert_bad_input(cli, cli("migrate-images", "https://img.example.com/ok.jpg", url))
    assert repr(url) in line


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://a.com:99999/x.jpg", "Port out of range"),
        ("http://exa mple.com/a b.jpg", "U+0020"),
        ("http://a.com/\udcef\udcbf\udcbf.jpg", "U+FFFF"),  # argv bytes \xef\xbf\xbf
        ("http://a.com/\udcff.jpg", "U+DCFF"),  # argv byte \xff
    ],
)
def test_an_image_url_with_a_bad_host_port_space_or_character_is_bad_input(
    cli: Cli, url: str, problem: str
) -> None:
    line = assert_bad_input(cli, cli("migrate-images", "https://img.example.com/ok.jpg", url))
    assert "URL #2" in line and problem in line


@pytest.mark.parametrize(
    "sku",
    ["CLI-BAD\udcff", "CLI-BAD\uffff", "CLI\u200bBAD", "CLI\u202eBAD", "CLI\x7fBAD"],
    ids=["byte-ff", "U+FFFF", "zero-width", "bidi-override", "DEL"],
)
def test_a_sku_holding_a_character_that_is_not_a_visible_one_is_bad_input(
    cli: Cli, sku: str
) -> None:
    # A str with a lone surrogate reaches the command as the byte it stands for (\xff).
    line = assert_bad_input(cli, cli("remove-products", sku, "OK-CLI-1", "--key", "k"))
    assert "SKU #1" in line and "U+" in line


@pytest.mark.parametrize("separator", ["\x0b", "\x85", "\u2028", "\x0c"])
def test_a_sku_file_line_holding_another_line_separator_is_bad_input_not_two_skus(
    cli: Cli, separator: str
) -> None:
    path = cli.folder / "skus.txt"
    path.write_bytes(f"OK-1\nA{separator}B\n".encode())
    line = assert_bad_input(cli, cli("remove-products", "--file", str(path)))
    assert "SKU #2" in line and f"U+{ord(separator):04X}" in line


def test_a_key_holding_a_byte_that_is_not_utf8_is_bad_input(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("remove-products", "A-1", "--key", "job-\udcff"))
    assert "key" in line and "U+DCFF" in line


def test_an_unknown_image_job_state_is_bad_input(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("image-jobs", "--state", "finished"))
    assert "--state" in line


def test_an_unknown_image_action_is_bad_input(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("track-images", "R-1", "--action", "DeleteImages"))
    assert "--action" in line


def test_run_with_a_concurrency_below_one_is_bad_input(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("run", "--concurrency", "0"))
    assert "--concurrency" in line
