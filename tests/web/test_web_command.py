"""`lazada-worker web`'s rules for where it listens, and `accounts authorize`'s refusal of
another seller's code unless given --new-seller."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support.lazop import SELLER, start_sandbox
from worker.cli.main import main
from worker.db.engine import get_engine
from worker.db.models import Account
from worker.sandbox.lazop import LazopSandbox


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("LAZADA_WEB_PASSWORD", "LAZADA_WEB_PASSWORD_FILE", "LAZADA_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("LAZADA_API_URL", "LAZADA_USER_ID", "LAZADA_API_KEY", "LAZADA_DEFAULT_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'web.sqlite3'}")
    return tmp_path


@pytest.mark.parametrize(
    ("args", "variables", "words"),
    [
        (["--host", "0.0.0.0"], {}, "beyond loopback"),
        (["--host", "0.0.0.0"], {"LAZADA_WEB_PASSWORD": "pw"}, "LAZADA_PUBLIC_URL"),
        (["--host", "::"], {"LAZADA_PUBLIC_URL": "https://ops.example.com"}, "beyond loopback"),
        (["--port", "70000"], {}, "--port must be a number from 1 to 65535"),
        (
            ["--host", "0.0.0.0"],
            {"LAZADA_WEB_PASSWORD": "pw", "LAZADA_PUBLIC_URL": "https://u:p@ops.example.com"},
            "no user, password",
        ),
    ],
)
def test_web_refuses_to_listen_beyond_loopback_without_a_password_and_public_url(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    variables: dict[str, str],
    words: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert main(["web", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1
    assert "u:p@" not in err


@pytest.fixture
def sandbox() -> Iterator[LazopSandbox]:
    started = start_sandbox()
    try:
        yield started
    finally:
        started.stop()


def _seller(database: Path) -> tuple[str | None, str | None]:
    engine = get_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        row = connection.execute(select(Account.seller_id, Account.access_token)).one()
    return row.seller_id, row.access_token


def test_authorize_refuses_another_sellers_code_unless_given_new_seller(
    env: Path, sandbox: LazopSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = env / "secret"
    secret.write_text(sandbox.app_secret)
    assert (
        main(
            [
                "accounts",
                "add",
                "shop",
                "--platform",
                "lazop",
                "--api-url",
                sandbox.api_url,
                "--auth-url",
                sandbox.auth_url,
                "--app-key",
                sandbox.app_key,
                "--app-secret-file",
                str(secret),
            ]
        )
        == 0
    )
    code = sandbox.authorization_code(SELLER)
    assert main(["accounts", "authorize", "shop", "--code", code]) == 0
    first = _seller(env / "web.sqlite3")

    other = sandbox.authorization_code("seller-b")
    capsys.readouterr()
    assert main(["accounts", "authorize", "shop", "--code", other]) == 2
    assert "nothing stored" in capsys.readouterr().err
    assert _seller(env / "web.sqlite3") == first

    again = sandbox.authorization_code("seller-b")
    assert main(["accounts", "authorize", "shop", "--code", again, "--new-seller"]) == 0
    seller_id, _ = _seller(env / "web.sqlite3")
    assert seller_id not in (None, first[0])
