"""`--account`: every command that enqueues or reads work takes it; a name no account has is bad
input, and the environment's account is named by its UserID."""

from __future__ import annotations

import pytest

from tests.cli.command_line import Cli, assert_bad_input

ACCOUNT_COMMANDS = {
    "remove-products": ["remove-products", "A-1"],
    "fetch-order": ["fetch-order", "190"],
    "migrate-images": ["migrate-images", "https://img.example.com/1.jpg"],
    "track-images": ["track-images", "0123456789abcdef"],
    "status": ["status", "K-1"],
    "order": ["order", "190"],
    "image-job": ["image-job", "0123456789abcdef"],
    "image-jobs": ["image-jobs"],
    "failures": ["failures"],
}


@pytest.mark.parametrize("name", list(ACCOUNT_COMMANDS))
def test_every_command_that_enqueues_or_reads_work_refuses_an_unknown_account(
    cli: Cli, name: str
) -> None:
    line = assert_bad_input(cli, cli(*ACCOUNT_COMMANDS[name], "--account", "no-such-shop"))
    assert "no-such-shop" in line and "accounts list" in line


def test_the_environments_account_is_named_by_its_user_id(cli: Cli) -> None:
    user_id = cli.env["LAZADA_USER_ID"]
    result = cli("failures", "--account", user_id)
    assert result.returncode == 0, result.stderr
    assert user_id in result.stdout  # "no failures recorded for account ..."
