"""A database, broker or API setting a command cannot use: one line that names it (never its
password). A setting is bad input (exit 2, nothing recorded); a broker that does not take the
task is a service that failed (exit 1)."""

from __future__ import annotations

import pytest

from tests.cli.command_line import Cli, assert_bad_input, assert_one_line_error


@pytest.mark.parametrize(
    "database_url", ["nosuchdb://x", "postgresql+psycopg://nobody@127.0.0.1:1/x", "not a url"]
)
@pytest.mark.parametrize(
    "args",
    [
        ["db", "upgrade"],
        ["status", "K-1"],
        ["failures", "--json"],
        ["remove-products", "A-1", "--wait"],
        ["fetch-order", "190", "--wait"],
        ["migrate-images", "https://img.example.com/1.jpg", "--wait"],
    ],
    ids=lambda args: "-".join(a.strip("-") for a in args[:2]),
)
def test_a_database_that_cannot_be_opened_is_bad_input(
    cli: Cli, database_url: str, args: list[str]
) -> None:
    line = assert_bad_input(cli, cli(*args, env={"DATABASE_URL": database_url}))
    assert "DATABASE_URL" in line


def test_a_database_that_cannot_be_opened_is_named_without_its_password(cli: Cli) -> None:
    url = "postgresql+psycopg://shop:TEST-DB-PASSWORD@127.0.0.1:1/shop"
    result = cli("status", "K-1", env={"DATABASE_URL": url})
    line = assert_bad_input(cli, result)
    assert "127.0.0.1" in line
    assert "TEST-DB-PASSWORD" not in result.stdout + result.stderr


def test_run_without_an_api_url_names_the_missing_variable(cli: Cli) -> None:
    line = assert_bad_input(cli, cli("run", env={"LAZADA_API_URL": None}))
    assert "LAZADA_API_URL" in line
    assert "LAZADA_USER_ID" not in line  # only what is missing


def test_run_without_any_api_settings_names_every_missing_variable(cli: Cli) -> None:
    unset = dict.fromkeys(("LAZADA_API_URL", "LAZADA_USER_ID", "LAZADA_API_KEY"))
    line = assert_bad_input(cli, cli("run", env=unset))
    for name in ("LAZADA_API_URL", "LAZADA_USER_ID", "LAZADA_API_KEY"):
        assert name in line


@pytest.mark.parametrize(
    "rate",
    [
        "fast",
        "0",
        "-1",
        "nan",
        "inf",
    ],
)
def test_a_bad_rate_limit_is_bad_input(cli: Cli, rate: str) -> None:
    line = assert_bad_input(cli, cli("remove-products", "A-1", env={"LAZADA_RATE_LIMIT": rate}))
    assert "LAZADA_RATE_LIMIT" in line


def test_an_unreachable_broker_exits_1_without_showing_its_password(cli: Cli) -> None:
    broker = "redis://:TEST-BROKER-PASSWORD@127.0.0.1:1/0"
    result = cli("fetch-order", "190", env={"CELERY_BROKER_URL": broker})
    line = assert_one_line_error(result, 1)
    assert "broker" in line
    assert "TEST-BROKER-PASSWORD" not in result.stdout + result.stderr
