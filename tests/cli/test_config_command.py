"""`lazada-worker config`: every effective setting and where it came from, as JSON or as a
table; secrets only as set/missing, URLs without their passwords."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from tests.cli.command_line import Cli, json_document
from worker.cli.config import SETTING_VARIABLES
from worker.settings import Settings

SECRET_KEY = "TEST-SECRET-KEY-123"
CONFIG_KEYS = {"database_url", "broker_url", "api_url", "user_id", "rate_limit", "api_key"}


def test_config_json_says_the_api_key_is_set_and_never_shows_it(cli: Cli) -> None:
    result = cli("config", "--json", env={"LAZADA_API_KEY": SECRET_KEY})
    document = json_document(result)
    assert set(document) >= CONFIG_KEYS
    assert document["api_key"] == "set"
    assert document["api_url"] == cli.env["LAZADA_API_URL"]
    assert document["user_id"] == cli.env["LAZADA_USER_ID"]
    assert document["database_url"] == cli.database_url
    assert document["rate_limit"] == 5
    assert SECRET_KEY not in result.stdout + result.stderr


def test_config_json_says_the_api_key_is_missing_when_none_is_given(cli: Cli) -> None:
    document = json_document(cli("config", "--json", env={"LAZADA_API_KEY": None}))
    assert document["api_key"] == "missing"


def test_config_json_says_a_key_read_from_a_file_is_set_and_never_shows_it(cli: Cli) -> None:
    key_file = cli.folder / "api-key"
    key_file.write_text(SECRET_KEY + "\n")
    result = cli(
        "config", "--json", env={"LAZADA_API_KEY": None, "LAZADA_API_KEY_FILE": str(key_file)}
    )
    assert json_document(result)["api_key"] == "set"
    assert SECRET_KEY not in result.stdout + result.stderr


def config_rows(result: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
    """`config` off a terminal: a header line, then setting, value and source a line."""
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split("\t") == ["setting", "value", "from"]
    return {line.split("\t")[0]: line.split("\t")[1:] for line in lines}


def test_config_text_says_the_api_key_is_set_and_never_shows_it(cli: Cli) -> None:
    result = cli("config", env={"LAZADA_API_KEY": SECRET_KEY})
    rows = config_rows(result)
    assert rows["api_key"] == ["set", "environment LAZADA_API_KEY"]
    assert rows["api_url"] == [cli.env["LAZADA_API_URL"], "environment LAZADA_API_URL"]
    assert SECRET_KEY not in result.stdout + result.stderr


# Every variable of the README's configuration table.
README_VARIABLES = {
    "LAZADA_API_URL",
    "LAZADA_USER_ID",
    "LAZADA_API_KEY",
    "LAZADA_API_KEY_FILE",
    "LAZADA_RATE_LIMIT",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "LAZADA_QUEUE",
    "LAZADA_RETRY_LADDER",
    "LAZADA_IMAGE_DEADLINE",
    "LAZADA_POLL_FIRST",
    "LAZADA_POLL_SLACK",
    "LAZADA_ORDER_REFRESH_AFTER",
    "LAZADA_REDISPATCH_AFTER",
    "LAZADA_READ_TIMEOUT",
    "LAZADA_LEASE_SECONDS",
    "LAZADA_LOG_LEVEL",
}


def test_config_json_shows_every_setting_with_where_it_came_from(cli: Cli) -> None:
    key_file = cli.folder / "api-key"
    key_file.write_text(SECRET_KEY)
    result = cli(
        "config",
        "--json",
        env={
            "LAZADA_API_KEY": None,
            "LAZADA_API_KEY_FILE": str(key_file),
            "LAZADA_QUEUE": "shop-7",
            "LAZADA_RETRY_LADDER": "",  # empty counts as unset, as the settings read it
        },
    )
    document = json_document(result)

    fields = {field.name for field in dataclasses.fields(Settings)}
    assert set(document) >= CONFIG_KEYS | fields | {"log_level", "sources"}
    assert {v for names in SETTING_VARIABLES.values() for v in names} >= README_VARIABLES
    sources = document["sources"]
    assert set(sources) == set(document) - {"sources"}
    assert sources["api_key"] == {"source": "file", "variable": "LAZADA_API_KEY_FILE"}
    assert sources["queue"] == {"source": "environment", "variable": "LAZADA_QUEUE"}
    assert sources["retry_ladder"] == {"source": "default", "variable": None}
    assert sources["poll_cap"] == {"source": "default", "variable": None}  # no variable
    assert (document["queue"], document["retry_ladder"]) == ("shop-7", [1, 2, 5, 15, 30, 60])
    assert (document["api_key"], document["log_level"]) == ("set", "INFO")
    assert SECRET_KEY not in result.stdout + result.stderr


def test_config_text_shows_every_setting_with_where_it_came_from(cli: Cli) -> None:
    rows = config_rows(cli("config", env={"LAZADA_LEASE_SECONDS": "120"}))

    assert set(rows) == {field.name for field in dataclasses.fields(Settings)} | {"log_level"}
    assert rows["lease_seconds"] == ["120", "environment LAZADA_LEASE_SECONDS"]
    assert rows["database_url"] == [cli.database_url, "environment DATABASE_URL"]
    assert rows["broker_url"][1] == "default"
    assert rows["retry_ladder"] == ["1,2,5,15,30,60", "default"]


@pytest.mark.parametrize("form", [["--json"], []], ids=["json", "text"])
def test_config_hides_the_database_and_broker_passwords(cli: Cli, form: list[str]) -> None:
    result = cli(
        "config",
        *form,
        env={
            "DATABASE_URL": "postgresql+psycopg://shop:TEST-DB-PASSWORD@db.example.invalid/shop",
            "CELERY_BROKER_URL": "amqp://shop:TEST-BROKER-PASSWORD@mq.example.invalid//",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "db.example.invalid" in result.stdout and "mq.example.invalid" in result.stdout
    assert "TEST-DB-PASSWORD" not in result.stdout + result.stderr
    assert "TEST-BROKER-PASSWORD" not in result.stdout + result.stderr


@pytest.mark.parametrize("form", [["--json"], []], ids=["json", "text"])
def test_config_hides_a_password_in_the_api_url_as_in_the_other_urls(
    cli: Cli, form: list[str]
) -> None:
    api_url = cli.env["LAZADA_API_URL"].replace("://", "://shop:TEST-API-PASSWORD@")
    result = cli("config", *form, env={"LAZADA_API_URL": api_url})
    assert result.returncode == 0, result.stderr
    assert "TEST-API-PASSWORD" not in result.stdout + result.stderr
    assert api_url.replace("TEST-API-PASSWORD", "***") in result.stdout
