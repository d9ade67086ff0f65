"""Settings (worker/settings.py): each checked once at start, through the real command line in a
subprocess; a value that cannot be used is one line naming the variable, and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.settings import Settings, SettingsError
from worker.urls import mask_url


def _run(folder: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """`lazada-worker ARGS` with only the given LAZADA_*/CELERY_*/DATABASE_URL variables set."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LAZADA_", "CELERY_", "DATABASE_URL"))
    }
    env.setdefault("DATABASE_URL", f"sqlite:///{folder / 'results.sqlite3'}")
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,  # a liveness deadline, not a measurement
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lazada-worker: error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


BAD_SETTINGS = [
    ("LAZADA_LEASE_SECONDS", "nan"),
    ("LAZADA_LEASE_SECONDS", "inf"),
    ("LAZADA_LEASE_SECONDS", "-inf"),
    ("LAZADA_LEASE_SECONDS", "1e9"),
    ("LAZADA_READ_TIMEOUT", "inf"),
    ("LAZADA_READ_TIMEOUT", "nan"),
    ("LAZADA_READ_TIMEOUT", "0"),
    ("LAZADA_REDISPATCH_AFTER", "nan"),
    ("LAZADA_REDISPATCH_AFTER", "0"),
    ("LAZADA_IMAGE_DEADLINE", "inf"),
    ("LAZADA_POLL_FIRST", "nan"),
    ("LAZADA_POLL_SLACK", "inf"),
    ("LAZADA_ORDER_REFRESH_AFTER", "nan"),
    ("LAZADA_RETRY_LADDER", "nan"),
    ("LAZADA_RETRY_LADDER", "1,nan,2"),
    ("LAZADA_RETRY_LADDER", "1,inf"),
    ("LAZADA_QUEUE", "a/b"),
    ("LAZADA_QUEUE", "../x"),
    ("LAZADA_QUEUE", "a b"),
    ("LAZADA_QUEUE", ".hidden"),
    ("LAZADA_API_URL", "http://[::1"),
    ("LAZADA_API_URL", "ftp://api.example"),
    ("LAZADA_API_URL", "https://api.example/?UserID=x"),
]


@pytest.mark.parametrize("command", [["config"], ["run"], ["remove-products", "A-1"]])
@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS, ids=[f"{n}={v}" for n, v in BAD_SETTINGS])
def test_a_setting_that_cannot_be_used_is_one_line_naming_it_and_exit_2(
    tmp_path: Path, command: list[str], name: str, value: str
) -> None:
    line = _one_line_error(_run(tmp_path, *command, **{name: value}))
    assert name in line


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite+pysqlite://"])
def test_an_in_memory_sqlite_database_is_refused_asking_for_a_file_path(
    tmp_path: Path, url: str
) -> None:
    line = _one_line_error(_run(tmp_path, "config", DATABASE_URL=url))
    assert "DATABASE_URL" in line and "in-memory" in line and "file path" in line


@pytest.mark.parametrize("command", [["config"], ["db", "upgrade"], ["remove-products", "A-1"]])
def test_a_sqlite_database_in_a_directory_that_does_not_exist_is_refused_and_none_is_created(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "nonexistent" / "dir"
    result = _run(tmp_path, *command, DATABASE_URL=f"sqlite:///{missing / 'x.db'}")
    line = _one_line_error(result)
    assert "directory does not exist" in line or "does not exist" in line
    assert str(missing) in line
    assert not (tmp_path / "nonexistent").exists()


def test_a_sqlite_database_in_an_existing_directory_is_accepted(tmp_path: Path) -> None:
    result = _run(tmp_path, "config", DATABASE_URL=f"sqlite:///{tmp_path / 'new.db'}")
    assert result.returncode == 0, result.stderr


def test_settings_in_their_bounds_are_accepted() -> None:
    settings = Settings.from_env(
        {
            "LAZADA_READ_TIMEOUT": "1.5",
            "LAZADA_LEASE_SECONDS": "12",
            "LAZADA_REDISPATCH_AFTER": "3",
            "LAZADA_RETRY_LADDER": "0,0.2,300",
            "LAZADA_QUEUE": "lw-test-0a1b.c_d",
            "LAZADA_API_URL": "https://user:pw@api.example:8443/api",
        }
    )
    assert (settings.read_timeout, settings.lease_seconds) == (1.5, 12)
    assert settings.retry_ladder == (0, 0.2, 300) and settings.queue == "lw-test-0a1b.c_d"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://shop:TEST-PW@api.example/api", "https://shop:***@api.example/api"),
        ("amqp://shop:TEST-PW@mq.example:5672//", "amqp://shop:***@mq.example:5672//"),
        ("redis://:TEST-PW@cache.example:6379/0", "redis://:***@cache.example:6379/0"),
        ("postgresql+psycopg://shop:TEST-PW@db/shop", "postgresql+psycopg://shop:***@db/shop"),
        ("postgresql://db/shop?password=TEST-PW&x=1", "postgresql://db/shop?password=***&x=1"),
        ("amqp://shop:TEST@PW@mq.example//", "amqp://shop:***@mq.example//"),
        ("sqlite:///lazada-worker.sqlite3", "sqlite:///lazada-worker.sqlite3"),
        ("lazada-files://", "lazada-files://"),
    ],
)
def test_one_masking_function_hides_the_password_of_every_kind_of_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def _visible_ascii(excluded: str) -> st.SearchStrategy[str]:
    return st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=excluded)


@given(
    user=st.text(_visible_ascii(":@/?#[]"), max_size=8),
    password=st.text(_visible_ascii("/?#[]"), min_size=1),
)
def test_a_masked_url_never_holds_its_password(user: str, password: str) -> None:
    url = f"https://{user}:{password}@api.example/x"
    masked = mask_url(url)
    assert masked.endswith("@api.example/x")
    assert masked.removesuffix("@api.example/x") == f"https://{user}:***"


def test_a_settings_error_names_the_variable_and_the_fix() -> None:
    with pytest.raises(SettingsError, match=r"LAZADA_QUEUE.*plain queue name"):
        Settings.from_env({"LAZADA_QUEUE": "a/b"})
