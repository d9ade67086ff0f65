"""Usage: an unknown command or option, or a missing argument, is a one-line usage error
(exit 2); every option of every command says what it is for in --help."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from tests.cli.command_line import Cli, assert_bad_input
from worker.cli.main import _parser


@pytest.mark.parametrize(
    "args",
    [["frobnicate"], ["db", "downgrade"], []],
    ids=["unknown", "unknown-db-command", "none"],
)
def test_an_unknown_or_missing_command_is_a_one_line_usage_error(cli: Cli, args: list[str]) -> None:
    line = assert_bad_input(cli, cli(*args))
    assert "error" in line


@pytest.mark.parametrize(
    "args",
    [
        ["config", "--bogus"],
        ["remove-products", "A-1", "--bogus"],
        ["status", "K-1", "--jsn"],
        ["fetch-order"],
        ["status"],
    ],
    ids=["config-option", "remove-option", "status-option", "fetch-no-ids", "status-no-key"],
)
def test_an_unknown_option_or_missing_argument_is_a_one_line_usage_error(
    cli: Cli, args: list[str]
) -> None:
    line = assert_bad_input(cli, cli(*args))
    assert "error" in line


def test_every_option_of_every_command_has_help_text() -> None:
    def walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            yield path, action
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, f"{path} {name}")

    actions = list(walk(_parser(), "lazada-worker"))
    assert len(actions) > 40  # the walk reached every command
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, action in actions
        if not (action.help and action.help.strip())
    ]
    assert missing == []
