"""Accounts as data: stored accounts of both platforms, encrypted secrets, the environment's
legacy account as the default, and the `lazada-worker accounts` commands.

The service tests run on SQLite and PostgreSQL; what is the command line's behaviour (exit
status, one-line errors, output, the key file) runs `lazada-worker` in a subprocess.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from alembic import command as alembic
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, event, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import fresh_postgres_database, wait_for
from tests.support.worker_stack import Stack, add_sellercenter_account, sandbox_env
from worker.accounts import store as accounts
from worker.accounts.platforms import PlatformFor
from worker.accounts.secrets import SecretKeyError, embedded_key_path, secret_box
from worker.accounts.store import UnknownAccount
from worker.db.engine import get_engine
from worker.db.models import Account as AccountRow
from worker.db.models import Event, Failure, ImageJob, Order, RemovalBatch, RemovalJob
from worker.db.schema import alembic_config, ensure_schema
from worker.inputs import InvalidInput
from worker.sandbox.sellercenter import Sandbox
from worker.services import documents, images, job_control, orders, removal
from worker.settings import Settings

KEY = Fernet.generate_key().decode()
API_KEY = "LEGACY-API-KEY-7f3a9c"
APP_SECRET = "LAZOP-APP-SECRET-41d2e8"
ACCESS_TOKEN = "ACCESS-TOKEN-50000b17"
REFRESH_TOKEN = "REFRESH-TOKEN-6c0ffee5"
SECRETS = (API_KEY, APP_SECRET, ACCESS_TOKEN, REFRESH_TOKEN)
ACCOUNT_KEYS = {
    "name",
    "platform",
    "api_url",
    "auth_url",
    "country",
    "user_id",
    "seller_id",
    "rate_limit",
    "state",
    "access_expires_at",
    "refresh_expires_at",
    "secret",
    "created_at",
}


def settings_for(database_url: str, **env: str) -> Settings:
    """Settings with no environment account unless `env` gives one."""
    return Settings.from_env({"DATABASE_URL": database_url, "LAZADA_SECRET_KEY": KEY, **env})


@pytest.fixture
def stored(database_url: str) -> tuple[Settings, sessionmaker[Session]]:
    return settings_for(database_url), sessionmaker(get_engine(database_url))


def add_both(settings: Settings, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        accounts.add_account(
            session,
            settings,
            "shop-a",
            "sellercenter",
            {"user_id": "a@shop.example", "api_key": API_KEY},
            api_url="http://127.0.0.1:9/sc",
        )
        accounts.add_account(
            session,
            settings,
            "shop-b",
            "lazop",
            {"app_key": "100200", "app_secret": APP_SECRET, "country": "th"},
        )


# -- the service --------------------------------------------------------------------------


def test_a_stored_sellercenter_account_is_read_back_with_its_key_kept_out_of_repr(
    stored: tuple[Settings, sessionmaker[Session]],
) -> None:
    settings, sessions = stored
    with sessions.begin() as session:
        accounts.add_account(
            session,
            settings,
            "shop-a",
            "sellercenter",
            {"user_id": "a@shop.example", "api_key": API_KEY},
            api_url=" http://127.0.0.1:9/sc ",
            rate_limit=2,
        )
    with sessions() as session:
        account = accounts.get_account(session, settings, "shop-a")
    assert (account.platform, account.api_url, account.credentials["user_id"]) == (
        "sellercenter",
        "http://127.0.0.1:9/sc",
        "a@shop.example",
    )
    assert (account.secret, account.rate_limit) == (API_KEY, 2.0)
    assert "api_key" not in account.credentials  # the secret is kept apart, encrypted
    assert account.state == "ready" and account.source == "stored"
    assert account.created_at is not None and account.created_at.tzinfo is not None
    assert API_KEY not in repr(account)


def test_a_lazop_account_by_country_gets_its_venture_gateway_and_needs_authorization(
    stored: tuple[Settings, sessionmaker[Session]],
) -> None:
    settings, sessions = stored
    add_both(settings, sessions)
    with sessions() as session:
        account = accounts.get_account(session, settings, "shop-b")
    assert account.api_url == "https://api.lazada.co.th/rest"
    assert account.credentials["auth_url"] == "https://auth.lazada.com/rest"
    assert (account.credentials["country"], account.credentials["app_key"]) == ("th", "100200")
    assert account.secret == APP_SECRET
    assert account.state == "needs_authorization"
    assert account.rate_limit == settings.rate_limit  # none set: LAZADA_RATE_LIMIT
    assert APP_SECRET not in repr(account)


def test_a_lazop_account_by_url_has_no_country_and_may_name_its_auth_url(
    stored: tuple[Settings, sessionmaker[Session]],
) -> None:
    settings, sessions = stored
    with sessions.begin() as session:
        accounts.add_account(
            session,
            settings,
            "daraz-pk",
            "lazop",
            {"app_key": "100200", "app_secret": APP_SECRET, "auth_url": "http://127.0.0.1:9/auth"},
            api_url="https://api.daraz.pk/rest",
        )
    with sessions() as session:
        account = accounts.get_account(session, settings, "daraz-pk")
    assert (
        account.api_url,
        account.credentials["auth_url"],
        account.credentials.get("country"),
    ) == (
        "https://api.daraz.pk/rest",
        "http://127.0.0.1:9/auth",
        None,
    )


@pytest.mark.parametrize(
    "gateway",
    [{}, {"country": "sg", "api_url": "https://api.daraz.pk/rest"}, {"country": "us"}],
    ids=["neither", "both", "unknown-country"],
)
def test_a_lazop_account_needs_one_known_country_or_a_url(
    stored: tuple[Settings, sessionmaker[Session]], gateway: dict[str, str]
) -> None:
    settings, sessions = stored
    with sessions() as session, pytest.raises(InvalidInput, match="--api-url"):
        accounts.add_account(
            session,
            settings,
            "shop-b",
            "lazop",
            {
                "app_key": "100200",
                "app_secret": APP_SECRET,
                **{k: v for k, v in gateway.items() if k != "api_url"},
            },
            api_url=gateway.get("api_url"),
        )


def test_tokens_are_stored_and_the_account_becomes_ready_then_expiring_near_the_end(
    stored: tuple[Settings, sessionmaker[Session]],
) -> None:
    settings, sessions = stored
    add_both(settings, sessions)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        accounts.store_tokens(
            session,
            settings,
            "shop-b",
            ACCESS_TOKEN,
            REFRESH_TOKEN,
            now + timedelta(days=30),
            now + timedelta(days=180),
            seller_id="1000123",
        )
    with sessions() as session:
        account = accounts.get_account(session, settings, "shop-b")
    assert (account.access_token, account.refresh_token) == (ACCESS_TOKEN, REFRESH_TOKEN)
    assert (account.state, account.seller_id) == ("ready", "1000123")
    document = accounts.account_document(account, now=now)
    assert document["state"] == "ready"
    assert document["refresh_expires_at"] == (now + timedelta(days=180)).isoformat()
    near_the_end = now + timedelta(days=180) - timedelta(days=6, hours=23)
    assert accounts.account_document(account, now=near_the_end)["state"] == "expiring"
    with sessions.begin() as session:
        accounts.set_state(session, settings, "shop-b", "needs_authorization")
    with sessions() as session:
        account = accounts.get_account(session, settings, "shop-b")
    assert accounts.account_document(account, now=near_the_end)["state"] == "needs_authorization"


def test_the_account_document_has_the_contracts_keys_and_only_says_whether_a_secret_is_set(
    stored: tuple[Settings, sessionmaker[Session]],
) -> None:
    settings, sessions = stored
    add_both(settings, sessions)
    with sessions() as session:
        documents = [
            accounts.account_document(a) for a in accounts.list_accounts(session, settings)
        ]
    assert [d["name"] for d in documents] == ["shop-a", "shop-b"]
    for document in documents:
        assert set(document) >= ACCOUNT_KEYS
        assert document["secret"] == "set"
        assert not any(secret in json.dumps(document) for secret in SECRETS)


def test_secrets_are_absent_in_clear_from_the_database(
    stored: tuple[Settings, sessionmaker[Session]], database_url: str, tmp_path: Path
) -> None:
    settings, sessions = stored
    add_both(settings, sessions)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        accounts.store_tokens(
            session, settings, "shop-b", ACCESS_TOKEN, REFRESH_TOKEN, now, now, seller_id="1"
        )
    if database_url.startswith("sqlite"):
        get_engine(database_url).dispose()  # the WAL is checkpointed into the file too
        contents = b"".join(path.read_bytes() for path in tmp_path.glob("results.sqlite3*"))
    else:
        with get_engine(database_url).connect() as connection:
            rows = connection.execute(text("SELECT a::text FROM accounts a")).scalars().all()
        contents = "\n".join(rows).encode()
        assert b"shop-b" in contents  # the query saw the rows
    for secret in (*SECRETS, KEY):
        assert secret.encode() not in contents


def test_an_unknown_account_is_invalid_input_that_says_how_to_list_and_add_accounts(
    stored: tuple[Settings, sessionmaker[Session]],
) -> None:
    settings, sessions = stored
    add_both(settings, sessions)
    with sessions() as session, pytest.raises(UnknownAccount) as raised:
        accounts.get_account(session, settings, "shop-z")
    assert isinstance(raised.value, InvalidInput)
    assert "accounts list" in str(raised.value) and "accounts add" in str(raised.value)


def test_the_environment_account_is_the_default_and_named_by_its_user_id(
    database_url: str,
) -> None:
    settings = settings_for(
        database_url,
        LAZADA_API_URL="http://127.0.0.1:9/env",
        LAZADA_USER_ID="env@shop.example",
        LAZADA_API_KEY=API_KEY,
    )
    sessions = sessionmaker(get_engine(database_url))
    add_both(settings, sessions)
    with sessions() as session:
        default = accounts.get_account(session, settings, None)
        by_name = accounts.get_account(session, settings, "env@shop.example")
        listed = accounts.list_accounts(session, settings)
    assert default == by_name
    assert (default.name, default.credentials["user_id"], default.secret) == (
        "env@shop.example",
        "env@shop.example",
        API_KEY,
    )
    assert (default.api_url, default.platform, default.source) == (
        "http://127.0.0.1:9/env",
        "sellercenter",
        "environment",
    )
    assert default.rate_limit == settings.rate_limit
    assert [(a.name, a.source) for a in listed] == [
        ("env@shop.example", "environment"),
        ("shop-a", "stored"),
        ("shop-b", "stored"),
    ]
    with sessions() as session, pytest.raises(InvalidInput, match="exists already"):
        accounts.add_account(
            session,
            settings,
            "env@shop.example",
            "sellercenter",
            {"user_id": "u", "api_key": API_KEY},
            api_url="http://127.0.0.1:9/",
        )


def test_a_partly_set_environment_account_names_the_missing_variables(database_url: str) -> None:
    settings = settings_for(database_url, LAZADA_USER_ID="env@shop.example")
    with (
        sessionmaker(get_engine(database_url))() as session,
        pytest.raises(ValueError, match="LAZADA_API_URL"),
    ):
        accounts.get_account(session, settings, None)


def test_without_the_environment_account_the_default_is_named_or_the_single_stored_one(
    stored: tuple[Settings, sessionmaker[Session]], database_url: str
) -> None:
    settings, sessions = stored
    with sessions() as session, pytest.raises(InvalidInput, match="accounts add"):
        accounts.get_account(session, settings, None)
    with sessions.begin() as session:
        accounts.add_account(
            session,
            settings,
            "shop-b",
            "lazop",
            {"app_key": "100200", "app_secret": APP_SECRET, "country": "th"},
        )
    with sessions() as session:
        assert accounts.get_account(session, settings, None).name == "shop-b"
    with sessions.begin() as session:
        accounts.add_account(
            session,
            settings,
            "shop-a",
            "sellercenter",
            {"user_id": "a@shop.example", "api_key": API_KEY},
            api_url="http://127.0.0.1:9/",
        )
    with sessions() as session, pytest.raises(InvalidInput, match="LAZADA_DEFAULT_ACCOUNT"):
        accounts.get_account(session, settings, None)
    named = settings_for(database_url, LAZADA_DEFAULT_ACCOUNT="shop-a")
    with sessions() as session:
        assert accounts.get_account(session, named, None).name == "shop-a"
    missing = settings_for(database_url, LAZADA_DEFAULT_ACCOUNT="shop-z")
    with sessions() as session, pytest.raises(UnknownAccount, match="LAZADA_DEFAULT_ACCOUNT"):
        accounts.get_account(session, missing, None)


def _pending_work(session: Session, name: str) -> None:
    """One of each kind of unfinished work for the account."""
    job = RemovalJob(account=name, key="k", total=1)
    session.add(job)
    session.flush()
    session.add(RemovalBatch(account=name, job_id=job.id, state="pending", skus='["S-1"]'))
    session.add(Order(account=name, order_id=7))  # due: next_attempt_at defaults to now
    session.add(ImageJob(account=name, request_id="r-1", state="pending"))


def test_an_account_with_unfinished_work_cannot_be_removed_and_says_how_much_waits(
    stored: tuple[Settings, sessionmaker[Session]],
) -> None:
    settings, sessions = stored
    add_both(settings, sessions)
    with sessions.begin() as session:
        _pending_work(session, "shop-a")
    with sessions.begin() as session, pytest.raises(InvalidInput) as refused:
        accounts.remove_account(session, settings, "shop-a")
    message = str(refused.value)
    assert "1 removal batch" in message and "1 order" in message and "1 image job" in message
    with sessions() as session:
        assert accounts.get_account(session, settings, "shop-a").name == "shop-a"
    with sessions.begin() as session:  # the work finishes
        session.execute(RemovalBatch.__table__.update().values(state="done"))
        session.execute(Order.__table__.update().values(next_attempt_at=None))
        session.execute(ImageJob.__table__.update().values(state="succeeded"))
    with sessions.begin() as session:
        accounts.remove_account(session, settings, "shop-a")
    with sessions() as session:
        assert [a.name for a in accounts.list_accounts(session, settings)] == ["shop-b"]
        with pytest.raises(UnknownAccount):
            accounts.get_account(session, settings, "shop-a")


def test_another_accounts_unfinished_work_does_not_hold_an_account_back(
    stored: tuple[Settings, sessionmaker[Session]],
) -> None:
    settings, sessions = stored
    add_both(settings, sessions)
    with sessions.begin() as session:
        _pending_work(session, "shop-b")
    with sessions.begin() as session:
        accounts.remove_account(session, settings, "shop-a")


def test_the_environment_account_cannot_be_removed_as_a_row(database_url: str) -> None:
    settings = settings_for(
        database_url,
        LAZADA_API_URL="http://127.0.0.1:9/",
        LAZADA_USER_ID="env@shop.example",
        LAZADA_API_KEY=API_KEY,
    )
    with (
        sessionmaker(get_engine(database_url))() as session,
        pytest.raises(InvalidInput, match="LAZADA_USER_ID"),
    ):
        accounts.remove_account(session, settings, "env@shop.example")


NAME_CHARACTERS = "ABCXYZabcxyz0189._@-"


@hypothesis_settings(max_examples=300)
@given(st.text(min_size=0, max_size=80))
def test_an_account_name_is_accepted_exactly_when_it_is_1_to_64_allowed_characters(
    name: str,
) -> None:
    allowed = 1 <= len(name) <= 64 and all(
        ch.isascii() and (ch.isalnum() or ch in "._@-") for ch in name
    )
    if allowed:
        assert accounts.clean_account_name(name) == name
    else:
        with pytest.raises(InvalidInput, match="1-64 characters"):
            accounts.clean_account_name(name)


@given(st.text(alphabet=NAME_CHARACTERS, min_size=1, max_size=64))
def test_every_name_of_allowed_characters_is_accepted(name: str) -> None:
    assert accounts.clean_account_name(name) == name


# -- the key ------------------------------------------------------------------------------


@hypothesis_settings(max_examples=50)
@given(st.text(min_size=1))
def test_a_secret_comes_back_from_its_ciphertext_which_does_not_hold_it(secret: str) -> None:
    box = secret_box(
        Settings.from_env(
            {
                "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
                "LAZADA_SECRET_KEY": KEY,
            }
        )
    )
    token = box.encrypt(secret)
    assert box.decrypt(token, "a secret") == secret
    assert len(secret) < 4 or secret not in token
    assert KEY not in repr(box)


def test_an_old_key_still_decrypts_after_a_new_key_is_put_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.sqlite3'}"
    ensure_schema(url)
    sessions = sessionmaker(get_engine(url))
    old, new = KEY, Fernet.generate_key().decode()
    with sessions.begin() as session:
        accounts.add_account(
            session,
            settings_for(url),
            "shop-a",
            "sellercenter",
            {"user_id": "a@x", "api_key": API_KEY},
            api_url="http://127.0.0.1:9/",
        )
    rotated = settings_for(url, LAZADA_SECRET_KEY=f"{new},{old}")
    with sessions.begin() as session:
        accounts.add_account(
            session,
            rotated,
            "shop-b",
            "lazop",
            {"app_key": "1", "app_secret": APP_SECRET, "country": "sg"},
        )
        assert accounts.get_account(session, rotated, "shop-a").secret == API_KEY
    only_new = settings_for(url, LAZADA_SECRET_KEY=new)
    with sessions() as session:
        assert accounts.get_account(session, only_new, "shop-b").secret == APP_SECRET
        with pytest.raises(SecretKeyError, match="stored with another key") as wrong:
            accounts.get_account(session, only_new, "shop-a")
    assert old not in str(wrong.value) and new not in str(wrong.value)
    assert API_KEY not in str(wrong.value)


def _encrypt_after(barrier: Any, database_url: str, results: Any) -> None:
    barrier.wait()
    box = secret_box(Settings.from_env({"DATABASE_URL": database_url}))
    results.put(box.encrypt(f"from {os.getpid()}"))


def test_processes_starting_together_on_the_embedded_defaults_agree_on_one_key(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'results.sqlite3'}"
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(8), context.Queue()
    processes = [
        context.Process(target=_encrypt_after, args=(barrier, url, results)) for _ in range(8)
    ]
    for process in processes:
        process.start()
    tokens = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    box = secret_box(Settings.from_env({"DATABASE_URL": url}))  # reads the file they left
    assert sorted(box.decrypt(token, "a secret")[:5] for token in tokens) == ["from "] * 8
    key_file = embedded_key_path(url)
    assert key_file is not None
    assert [path.name for path in tmp_path.iterdir()] == [key_file.name]  # no temporary left
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_a_key_that_is_not_a_fernet_key_is_a_settings_error_that_does_not_show_it() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
            "LAZADA_SECRET_KEY": f"{KEY},not-a-key-at-all",
        }
    )
    with pytest.raises(SecretKeyError, match="key #2 is not a Fernet key") as raised:
        secret_box(settings)
    assert "not-a-key-at-all" not in str(raised.value) and KEY not in str(raised.value)


def test_the_key_may_come_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    key_file.write_text(KEY + "\n")
    from_file = Settings.from_env(
        {
            "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
            "LAZADA_SECRET_KEY_FILE": str(key_file),
        }
    )
    from_variable = Settings.from_env(
        {"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none", "LAZADA_SECRET_KEY": KEY}
    )
    token = secret_box(from_variable).encrypt(API_KEY)
    assert secret_box(from_file).decrypt(token, "a secret") == API_KEY
    assert KEY not in repr(from_file) + repr(from_variable)


def test_a_key_file_that_cannot_be_read_is_a_settings_error_naming_the_variable(
    tmp_path: Path,
) -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
            "LAZADA_SECRET_KEY_FILE": str(tmp_path / "absent.key"),
        }
    )
    with pytest.raises(SecretKeyError, match=r"LAZADA_SECRET_KEY_FILE .* cannot be read"):
        secret_box(settings)


def test_an_account_named_by_something_other_than_a_string_is_invalid_input(
    stored: tuple[Settings, sessionmaker[Session]],
) -> None:
    settings, sessions = stored
    with sessions() as session, pytest.raises(InvalidInput, match="must be a string"):
        accounts.get_account(session, settings, 42)  # type: ignore[arg-type]


# -- the command line ---------------------------------------------------------------------


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LAZADA_", "CELERY_", "DATABASE_URL"))
    }
    env.update({"DATABASE_URL": database_url, **extra})
    return env


def run(
    env: dict[str, str], cwd: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    # The timeout is a liveness deadline, not a measurement.
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 2 with one line on standard error, no traceback, nothing on standard output."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lazada-worker"), result.stderr
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "api-key").write_text(API_KEY + "\n")
    yield tmp_path


def add_sellercenter_args(name: str = "shop-a") -> list[str]:
    return [
        "accounts",
        "add",
        name,
        "--platform",
        "sellercenter",
        "--api-url",
        "http://127.0.0.1:9/sc",
        "--user-id",
        "a@shop.example",
        "--api-key-file",
        "api-key",
    ]


def test_accounts_add_list_show_remove_on_the_embedded_defaults(folder: Path) -> None:
    env = cli_env(f"sqlite:///{folder / 'lazada-worker.sqlite3'}")
    outputs = []
    for args, stdin in [
        (add_sellercenter_args(), ""),
        (
            [
                "accounts",
                "add",
                "shop-b",
                "--platform",
                "lazop",
                "--country",
                "vn",
                "--app-key",
                "100200",
                "--app-secret-file",
                "-",
                "--rate-limit",
                "2.5",
            ],
            APP_SECRET + "\n",
        ),
    ]:
        result = run(env, folder, *args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    listed = run(env, folder, "accounts", "list", "--json")
    shown = run(env, folder, "accounts", "show", "shop-b", "--json")
    text = run(env, folder, "accounts", "list")
    for result in (listed, shown, text):
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    documents = json.loads(listed.stdout)
    assert [(d["name"], d["platform"], d["state"]) for d in documents] == [
        ("shop-a", "sellercenter", "ready"),
        ("shop-b", "lazop", "needs_authorization"),
    ]
    assert json.loads(shown.stdout) == documents[1]
    assert documents[1]["api_url"] == "https://api.lazada.vn/rest"
    assert documents[1]["rate_limit"] == 2.5 and documents[0]["rate_limit"] == 5
    assert [line.split()[0] for line in text.stdout.splitlines()] == ["shop-a", "shop-b"]
    removed = run(env, folder, "accounts", "remove", "shop-a")
    assert removed.returncode == 0, removed.stderr
    assert [
        d["name"] for d in json.loads(run(env, folder, "accounts", "list", "--json").stdout)
    ] == ["shop-b"]
    for output in outputs:
        assert not any(secret in output for secret in SECRETS)
    key_file = folder / "lazada-worker.sqlite3-secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() not in "".join(outputs)
    contents = b"".join(
        p.read_bytes() for p in folder.glob("lazada-worker.sqlite3*") if p != key_file
    )
    assert APP_SECRET.encode() not in contents


def test_the_environment_account_is_listed_as_the_environments_on_the_command_line(
    folder: Path,
) -> None:
    env = cli_env(
        f"sqlite:///{folder / 'results.sqlite3'}",
        LAZADA_API_URL="http://127.0.0.1:9/env",
        LAZADA_USER_ID="env@shop.example",
        LAZADA_API_KEY=API_KEY,
    )
    result = run(env, folder, "accounts", "show", "env@shop.example", "--json")
    document = json.loads(result.stdout)
    assert (document["name"], document["user_id"], document["source"]) == (
        "env@shop.example",
        "env@shop.example",
        "environment",
    )
    assert document["secret"] == "set" and API_KEY not in result.stdout + result.stderr
    assert not (folder / "results.sqlite3-secret.key").exists()  # no secret was stored


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({2: "bad/name"}, "1-64 characters"),
        ({2: "x" * 65}, "1-64 characters"),
        ({6: "ftp://host/"}, "not an http(s) URL"),
        ({6: "not a url"}, "not an http(s) URL"),
        ({10: "empty-file"}, "is empty"),
        ({10: "no-such-file"}, "does not exist"),
        ({4: "ebay"}, "invalid choice"),
    ],
    ids=["name", "long-name", "scheme", "url", "empty-secret", "missing-file", "platform"],
)
def test_bad_input_to_accounts_add_exits_2_with_one_line_and_stores_nothing(
    folder: Path, change: dict[int, str], expected: str
) -> None:
    (folder / "empty-file").write_text("\n")
    env = cli_env(f"sqlite:///{folder / 'results.sqlite3'}")
    args = add_sellercenter_args()
    for position, value in change.items():
        args[position] = value
    assert expected in one_line_error(run(env, folder, *args))
    assert json.loads(run(env, folder, "accounts", "list", "--json").stdout) == []
    assert not (folder / "results.sqlite3-secret.key").exists()


def test_a_secret_is_never_taken_from_an_argument(folder: Path) -> None:
    env = cli_env(f"sqlite:///{folder / 'results.sqlite3'}")
    args = [*add_sellercenter_args()[:-2], "--api-key", API_KEY]
    one_line_error(run(env, folder, *args))
    assert json.loads(run(env, folder, "accounts", "list", "--json").stdout) == []


def test_a_duplicate_name_exits_2_and_keeps_the_first_account(folder: Path) -> None:
    env = cli_env(f"sqlite:///{folder / 'results.sqlite3'}")
    assert run(env, folder, *add_sellercenter_args()).returncode == 0
    assert "exists already" in one_line_error(run(env, folder, *add_sellercenter_args()))
    assert len(json.loads(run(env, folder, "accounts", "list", "--json").stdout)) == 1


def test_an_unknown_account_exits_2_on_the_command_line(folder: Path) -> None:
    env = cli_env(f"sqlite:///{folder / 'results.sqlite3'}")
    for command in ("show", "remove"):
        assert "accounts list" in one_line_error(run(env, folder, "accounts", command, "nope"))


def test_removing_an_account_with_unfinished_work_exits_2_saying_how_many_rows_wait(
    folder: Path,
) -> None:
    url = f"sqlite:///{folder / 'results.sqlite3'}"
    env = cli_env(url)
    assert run(env, folder, *add_sellercenter_args()).returncode == 0
    with sessionmaker(get_engine(url)).begin() as session:
        job = RemovalJob(account="shop-a", key="k", total=1)
        session.add(job)
        session.flush()
        session.add(RemovalBatch(account="shop-a", job_id=job.id, state="pending", skus="[]"))
    assert "1 removal batch" in one_line_error(run(env, folder, "accounts", "remove", "shop-a"))
    assert len(json.loads(run(env, folder, "accounts", "list", "--json").stdout)) == 1


def test_a_wrong_key_is_a_one_line_error_not_a_traceback(folder: Path) -> None:
    env = cli_env(f"sqlite:///{folder / 'results.sqlite3'}", LAZADA_SECRET_KEY=KEY)
    assert run(env, folder, *add_sellercenter_args()).returncode == 0
    other = Fernet.generate_key().decode()
    line = one_line_error(
        run({**env, "LAZADA_SECRET_KEY": other}, folder, "accounts", "show", "shop-a")
    )
    assert "another key" in line and other not in line and KEY not in line


def test_postgresql_without_a_key_exits_2_and_says_how_to_make_one(folder: Path) -> None:
    with fresh_postgres_database() as url:
        env = cli_env(url)
        line = one_line_error(run(env, folder, *add_sellercenter_args()))
        assert "LAZADA_SECRET_KEY" in line and "Fernet.generate_key()" in line
        with get_engine(url).connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM accounts")).scalar() == 0
        with_key = {**env, "LAZADA_SECRET_KEY": KEY}
        assert run(with_key, folder, *add_sellercenter_args()).returncode == 0
        line = one_line_error(run(env, folder, "accounts", "show", "shop-a"))
        assert "Fernet.generate_key()" in line


# -- passwords in an account's URLs ---------------------------------------------------------

URL_PASSWORD = "URL-PASSWORD-9e1d"
URL_TOKEN = "URL-TOKEN-3b7a"
AUTH_PASSWORD = "AUTH-PASSWORD-0c4f"
URL_SECRETS = (URL_PASSWORD, URL_TOKEN, AUTH_PASSWORD)


def test_accounts_add_list_and_show_mask_a_password_in_an_accounts_urls(folder: Path) -> None:
    env = cli_env(f"sqlite:///{folder / 'lazada-worker.sqlite3'}")
    api_url = f"http://shop:{URL_PASSWORD}@127.0.0.1:9/sc?token={URL_TOKEN}"
    auth_url = f"https://app:{AUTH_PASSWORD}@auth.example/rest"
    legacy = add_sellercenter_args()
    legacy[legacy.index("--api-url") + 1] = api_url
    lazop = ["accounts", "add", "shop-b", "--platform", "lazop", "--api-url", api_url]
    lazop += ["--auth-url", auth_url, "--app-key", "100200", "--app-secret-file", "-"]
    outputs = []
    for args, stdin in [(legacy, ""), (lazop, APP_SECRET + "\n")]:
        result = run(env, folder, *args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    assert "http://shop:***@127.0.0.1:9/sc?token=***" in outputs[0]
    for args in [("list",), ("list", "--json"), ("show", "shop-b"), ("show", "shop-b", "--json")]:
        result = run(env, folder, "accounts", *args)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    shown = json.loads(outputs[-1])
    assert shown["api_url"] == "http://shop:***@127.0.0.1:9/sc?token=***"
    assert (
        shown["auth_url"] == shown["credentials"]["auth_url"] == "https://app:***@auth.example/rest"
    )
    for output in outputs:
        assert not any(secret in output for secret in URL_SECRETS), output
    # The stored URL keeps its password: the worker needs it to call.
    settings = Settings.from_env({"DATABASE_URL": env["DATABASE_URL"]})
    with sessionmaker(get_engine(env["DATABASE_URL"]))() as session:
        account = accounts.get_account(session, settings, "shop-b")
    assert (account.api_url, account.credentials["auth_url"]) == (api_url, auth_url)


def test_the_consent_url_a_seller_opens_holds_no_password_or_token_of_the_auth_url(
    folder: Path,
) -> None:
    env = cli_env(f"sqlite:///{folder / 'lazada-worker.sqlite3'}")
    auth_url = f"https://app:{AUTH_PASSWORD}@auth.example/rest?access_token={URL_TOKEN}&v=2"
    add = ["accounts", "add", "shop-b", "--platform", "lazop", "--country", "sg"]
    add += ["--auth-url", auth_url, "--app-key", "100200", "--app-secret-file", "-"]
    assert run(env, folder, *add, stdin=APP_SECRET + "\n").returncode == 0

    result = run(
        env,
        folder,
        "accounts",
        "authorize-url",
        "shop-b",
        "--redirect-uri",
        "https://shop.example/cb",
    )

    assert result.returncode == 0, result.stderr
    consent = urlsplit(result.stdout.strip())
    assert (consent.scheme, consent.netloc, consent.path) == (
        "https",
        "auth.example",
        "/oauth/authorize",
    )
    query = parse_qs(consent.query)
    assert query["client_id"] == ["100200"] and query["redirect_uri"] == ["https://shop.example/cb"]
    assert not any(secret in result.stdout + result.stderr for secret in URL_SECRETS)


@pytest.mark.parametrize(
    ("api_url", "shown"),
    [
        (f"ftp://shop:{URL_PASSWORD}@127.0.0.1/sc", "'ftp://shop:***@127.0.0.1/sc'"),
        (f"http://shop:{URL_PASSWORD}@/sc", "'http://shop:***@/sc'"),
        # An unclosed IPv6 host: was a ValueError traceback that quoted the URL.
        (f"http://shop:{URL_PASSWORD}@[::1/sc", "'(a URL that cannot be parsed)'"),
    ],
)
def test_an_unusable_api_url_is_refused_in_one_line_that_hides_its_password(
    folder: Path, api_url: str, shown: str
) -> None:
    env = cli_env(f"sqlite:///{folder / 'lazada-worker.sqlite3'}")
    args = add_sellercenter_args()
    args[args.index("--api-url") + 1] = api_url

    line = one_line_error(run(env, folder, *args))

    assert line.endswith(f"API URL {shown} is not an http(s) URL with a host"), line
    assert URL_PASSWORD not in line


def test_the_needs_authorization_event_and_failure_mask_a_password_in_the_accounts_urls(
    stored: tuple[Settings, sessionmaker[Session]],
) -> None:
    settings, sessions = stored
    with sessions.begin() as session:
        accounts.add_account(
            session,
            settings,
            "shop-b",
            "lazop",
            {
                "app_key": "100200",
                "app_secret": APP_SECRET,
                "auth_url": f"https://app:{AUTH_PASSWORD}@auth.example/rest",
            },
            api_url=f"https://gw.example/rest?access_token={URL_TOKEN}",
        )
        accounts.set_state(session, settings, "shop-b", "ready")
    engine = sessions.kw["bind"]
    with engine.begin() as connection:
        assert accounts.mark_needs_authorization(
            connection, "shop-b", "the refresh token was refused", datetime.now(UTC)
        )
    with engine.connect() as connection:
        (data,) = connection.execute(text("SELECT data FROM events")).scalars()
        messages = connection.execute(text("SELECT message FROM failures")).scalars().all()
    document = data if isinstance(data, dict) else json.loads(data)
    assert document["api_url"] == "https://gw.example/rest?access_token=***"
    assert document["auth_url"] == "https://app:***@auth.example/rest"
    assert document["credentials"]["auth_url"] == "https://app:***@auth.example/rest"
    for text_seen in (json.dumps(document), *messages):
        assert not any(secret in text_seen for secret in URL_SECRETS), text_seen


# -- keys: rotation, and no second key beside stored secrets ----------------------------------


def test_secrets_rotate_encrypts_every_stored_secret_with_the_first_key_so_the_old_one_can_go(
    database_url: str, tmp_path: Path
) -> None:
    old, new = KEY, Fernet.generate_key().decode()
    settings, sessions = settings_for(database_url), sessionmaker(get_engine(database_url))
    add_both(settings, sessions)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        accounts.store_tokens(
            session,
            settings,
            "shop-b",
            "ACCESS-1",
            "REFRESH-1",
            now + timedelta(days=7),
            now + timedelta(days=30),
        )
    with sessions() as session:
        stored_at = session.scalar(select(AccountRow.updated_at).where(AccountRow.name == "shop-b"))
    only_new = settings_for(database_url, LAZADA_SECRET_KEY=new)
    with sessions() as session, pytest.raises(SecretKeyError):
        accounts.get_account(session, only_new, "shop-a")

    result = run(
        cli_env(database_url, LAZADA_SECRET_KEY=f"{new},{old}"), tmp_path, "secrets", "rotate"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("4 stored secret(s)")  # two signing secrets, two tokens

    with sessions() as session:
        legacy = accounts.get_account(session, only_new, "shop-a")
        lazop = accounts.get_account(session, only_new, "shop-b")
        rotated_at = session.scalar(
            select(AccountRow.updated_at).where(AccountRow.name == "shop-b")
        )
    assert (legacy.secret, lazop.secret) == (API_KEY, APP_SECRET)
    assert (lazop.access_token, lazop.refresh_token) == ("ACCESS-1", "REFRESH-1")
    assert rotated_at == stored_at  # the refresh schedule counts from when tokens were stored
    with sessions() as session, pytest.raises(SecretKeyError):
        accounts.get_account(session, settings_for(database_url, LAZADA_SECRET_KEY=old), "shop-a")


def test_secrets_rotate_without_the_key_a_secret_was_stored_with_exits_2_and_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    settings, sessions = settings_for(database_url), sessionmaker(get_engine(database_url))
    add_both(settings, sessions)
    with sessions() as session:
        before = session.execute(
            select(AccountRow.name, AccountRow.secret).order_by(AccountRow.name)
        ).all()
    other = Fernet.generate_key().decode()
    line = one_line_error(
        run(cli_env(database_url, LAZADA_SECRET_KEY=other), tmp_path, "secrets", "rotate")
    )
    assert "cannot be decrypted" in line and KEY not in line and other not in line
    with sessions() as session:
        after = session.execute(
            select(AccountRow.name, AccountRow.secret).order_by(AccountRow.name)
        ).all()
    assert after == before


def test_no_second_key_file_is_made_for_a_database_that_holds_secrets_of_another_key(
    tmp_path: Path,
) -> None:
    # Accounts stored with LAZADA_SECRET_KEY; a later command without it must not make an
    # embedded key file and store the next secret under that second key.
    url = f"sqlite:///{tmp_path / 'results.sqlite3'}"
    ensure_schema(url)
    sessions = sessionmaker(get_engine(url))
    add_both(settings_for(url), sessions)
    without_key = Settings.from_env({"DATABASE_URL": url})
    with sessions() as session, pytest.raises(SecretKeyError, match="LAZADA_SECRET_KEY") as refused:
        accounts.add_account(
            session,
            without_key,
            "shop-c",
            "sellercenter",
            {"user_id": "c@shop.example", "api_key": API_KEY},
            api_url="http://127.0.0.1:9/",
        )
    assert KEY not in str(refused.value)
    assert embedded_key_path(url) is not None and not embedded_key_path(url).exists()


def test_a_key_file_that_cannot_be_created_is_a_settings_error_not_a_traceback(
    tmp_path: Path,
) -> None:
    # The key file's name is taken by a link to nowhere: no key can be made or read there.
    url = f"sqlite:///{tmp_path / 'results.sqlite3'}"
    key_path = embedded_key_path(url)
    assert key_path is not None
    key_path.symlink_to(tmp_path / "nowhere")
    with pytest.raises(SecretKeyError, match="cannot be created"):
        secret_box(Settings.from_env({"DATABASE_URL": url}))


# -- work is tied to the account it was made for -------------------------------------------


@pytest.fixture
def owned(database_url: str, sandbox: Sandbox) -> tuple[Settings, sessionmaker[Session]]:
    """Settings with the sandbox's environment account, a secret key, and short waits."""
    settings = replace(
        settings_for(database_url, **sandbox_env(sandbox)),
        retry_ladder=(0.05, 0.1),
        poll_first=0.1,
        redispatch_after=1.0,
    )
    return settings, sessionmaker(get_engine(database_url), expire_on_commit=False)


def add_shop(
    settings: Settings, sessions: sessionmaker[Session], sandbox: Sandbox, user_id: str
) -> int:
    """A legacy account `shop-a` on the sandbox; its id."""
    with sessions.begin() as session:
        accounts.add_account(
            session,
            settings,
            "shop-a",
            "sellercenter",
            {"user_id": user_id, "api_key": sandbox.api_key},
            api_url=sandbox.url,
        )
        return session.scalars(select(AccountRow.id).where(AccountRow.name == "shop-a")).one()


def drop_shop(sessions: sessionmaker[Session]) -> None:
    """The account's row deleted as a removal that raced an enqueue left it (no check)."""
    with sessions.begin() as session:
        session.execute(delete(AccountRow).where(AccountRow.name == "shop-a"))


def failures(sessions: sessionmaker[Session], kind: str) -> list[Failure]:
    with sessions() as session:
        return list(session.scalars(select(Failure).where(Failure.kind == kind)))


def test_a_done_job_of_a_removed_account_is_not_retried_or_reused_once_its_name_is_added_again(
    owned: tuple[Settings, sessionmaker[Session]], sandbox: Sandbox, platforms: PlatformFor
) -> None:
    settings, sessions = owned
    add_shop(settings, sessions, sandbox, sandbox.user_id)
    _, messages = removal.create_job(
        sessions, settings, "shop-a", "spring", ["A-1", "B-FAIL-2"], 50
    )
    removal.process_batch(sessions, platforms, settings, *messages[0].args)
    with sessions.begin() as session:
        accounts.remove_account(session, settings, "shop-a")
    add_shop(settings, sessions, sandbox, "another-seller@shop.example")

    with pytest.raises(InvalidInput, match="earlier account named 'shop-a', removed since"):
        job_control.retry(sessions, settings, "shop-a", "spring")
    with pytest.raises(InvalidInput, match="earlier account named 'shop-a', removed since"):
        removal.create_job(sessions, settings, "shop-a", "spring", ["A-1", "B-FAIL-2"], 50)
    with sessions() as session:
        job = documents.removal_job(session, "shop-a", "spring")
    assert job is not None and (job["state"], job["removed"], job["failed"]) == ("done", 1, 1)
    assert sandbox.removal_counts() == {"A-1": 1}  # B-FAIL-2 was never sent again


@pytest.mark.parametrize("readded", [False, True], ids=["removed", "removed-and-added-again"])
def test_a_batch_whose_account_is_gone_fails_once_and_is_never_sent(
    owned: tuple[Settings, sessionmaker[Session]],
    sandbox: Sandbox,
    platforms: PlatformFor,
    readded: bool,
) -> None:
    settings, sessions = owned
    add_shop(settings, sessions, sandbox, sandbox.user_id)
    _, messages = removal.create_job(sessions, settings, "shop-a", "orphan", ["O-1", "O-2"], 50)
    drop_shop(sessions)
    if readded:
        add_shop(settings, sessions, sandbox, "another-seller@shop.example")

    assert removal.process_batch(sessions, platforms, settings, *messages[0].args) == []
    assert removal.process_batch(sessions, platforms, settings, *messages[0].args) == []
    code = "account_replaced" if readded else "account_removed"
    with sessions() as session:
        job = documents.removal_job(session, "shop-a", "orphan")
    assert job is not None and (job["state"], job["failed"]) == ("done", 2)
    assert {(s["state"], s["error_code"]) for s in job["skus"]} == {("failed", code)}
    assert "after this work was created" in job["skus"][0]["message"]
    assert sandbox.stats()["calls"] == 0
    assert len(failures(sessions, "removal_sku")) == 2


@pytest.mark.parametrize("readded", [False, True], ids=["removed", "removed-and-added-again"])
def test_an_open_order_whose_account_is_gone_is_ended_once_not_refreshed(
    owned: tuple[Settings, sessionmaker[Session]], sandbox: Sandbox, readded: bool
) -> None:
    settings, sessions = owned
    account_id = add_shop(settings, sessions, sandbox, sandbox.user_id)
    long_ago = datetime.now(UTC) - timedelta(days=1)
    with sessions.begin() as session:
        session.add(
            Order(
                account="shop-a",
                account_id=account_id,
                order_id=7,
                state="fetched",
                is_open=True,
                statuses=["pending"],
                fetched_at=long_ago,
            )
        )
    with sessions.begin() as session:  # fetched: nothing due (None at insert takes the default)
        session.execute(update(Order).values(next_attempt_at=None))
    with sessions.begin() as session:  # no fetch is due: the account may go
        accounts.remove_account(session, settings, "shop-a")
    if readded:
        add_shop(settings, sessions, sandbox, "another-seller@shop.example")

    refreshing = replace(settings, order_sync_every=0.0)  # beat refreshes only without a sync
    assert orders.refresh_open_orders(sessions, refreshing) == []
    assert orders.refresh_open_orders(sessions, refreshing) == []  # beat, five minutes later
    with sessions() as session:
        order = session.scalars(select(Order)).one()
        events = list(session.scalars(select(Event).where(Event.type == "order.failed")))
    code = "account_replaced" if readded else "account_removed"
    assert (order.state, order.is_open, order.next_attempt_at) == ("fetched", False, None)
    assert order.error_code == code and "after this work was created" in (order.message or "")
    assert [(f.subject, f.error_code) for f in failures(sessions, "order")] == [("7", code)]
    assert len(events) == 1
    assert sandbox.stats()["calls"] == 0


def test_a_fetch_of_an_order_stored_for_an_earlier_account_of_the_name_is_not_sent(
    owned: tuple[Settings, sessionmaker[Session]], sandbox: Sandbox, platforms: PlatformFor
) -> None:
    settings, sessions = owned
    add_shop(settings, sessions, sandbox, sandbox.user_id)
    orders.fetch_order(sessions, platforms, settings, "shop-a", 190, "first")
    with sessions.begin() as session:
        accounts.remove_account(session, settings, "shop-a")
    add_shop(settings, sessions, sandbox, "another-seller@shop.example")
    calls = sandbox.stats()["calls"]

    assert orders.fetch_order(sessions, platforms, settings, "shop-a", 190, "second") == []
    assert orders.fetch_order(sessions, platforms, settings, "shop-a", 190, "second") == []
    assert sandbox.stats()["calls"] == calls
    with sessions() as session:
        order = session.scalars(select(Order)).one()
    assert (order.state, order.error_code, order.next_attempt_at) == (
        "fetched",
        "account_replaced",
        None,
    )
    assert len(failures(sessions, "order")) == 1


def test_an_image_job_whose_account_is_gone_ends_failed_unsent_and_its_key_is_not_reused(
    owned: tuple[Settings, sessionmaker[Session]], sandbox: Sandbox, platforms: PlatformFor
) -> None:
    settings, sessions = owned
    add_shop(settings, sessions, sandbox, sandbox.user_id)
    urls = ["https://img.example/1.jpg"]
    _, messages = images.start_migration(sessions, settings, "shop-a", "pics", urls, 8)
    drop_shop(sessions)
    add_shop(settings, sessions, sandbox, "another-seller@shop.example")

    assert images.advance(sessions, platforms, settings, *messages[0].args) == []
    with sessions() as session:
        job = session.scalars(select(ImageJob)).one()
    assert (job.state, job.error_code, job.request_id) == ("failed", "account_replaced", None)
    assert sandbox.stats()["calls"] == 0
    with pytest.raises(InvalidInput, match="earlier account named 'shop-a'"):
        images.start_migration(sessions, settings, "shop-a", "pics", urls, 8)


def test_work_recorded_before_account_ids_gets_the_id_of_the_stored_account_of_its_name(
    owned: tuple[Settings, sessionmaker[Session]], sandbox: Sandbox, database_url: str
) -> None:
    settings, sessions = owned
    account_id = add_shop(settings, sessions, sandbox, sandbox.user_id)
    alembic.downgrade(alembic_config(database_url), "0012")
    with get_engine(database_url).begin() as connection:
        for name in ("shop-a", "gone-shop"):
            connection.execute(
                text(
                    "INSERT INTO removal_jobs (account, key, total, created_at) "
                    "VALUES (:a, 'k', 1, :t)"
                ),
                {"a": name, "t": datetime.now(UTC)},
            )
    alembic.upgrade(alembic_config(database_url), "head")
    with sessions() as session:
        ids = dict(session.execute(select(RemovalJob.account, RemovalJob.account_id)).all())
    assert ids == {"shop-a": account_id, "gone-shop": None}


@pytest.mark.parametrize("enqueue", ["removal job", "image migration", "order fetch"])
def test_a_removal_beside_an_enqueue_on_postgresql_never_leaves_work_without_its_account(
    sandbox: Sandbox, enqueue: str
) -> None:
    """The enqueue's transaction is held open just before its commit while the removal runs:
    the removal waits for it and then sees its work (refused), never deleting the account
    under work that commits after its count."""
    with fresh_postgres_database() as url:
        ensure_schema(url)
        settings = settings_for(url, **sandbox_env(sandbox))
        sessions = sessionmaker(get_engine(url))
        add_shop(settings, sessions, sandbox, sandbox.user_id)
        enqueuing = create_engine(url)  # an engine of its own, whose commit is held
        at_commit, go_on = threading.Event(), threading.Event()
        wrote: set[int] = set()

        @event.listens_for(enqueuing, "before_cursor_execute")
        def _writes(connection: Any, _c: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT"):
                wrote.add(id(connection))

        @event.listens_for(enqueuing, "commit")
        def _hold(connection: Any) -> None:
            if id(connection) in wrote and not at_commit.is_set():  # the insert's commit
                at_commit.set()
                go_on.wait(60)

        held = sessionmaker(enqueuing)

        def enqueue_work() -> None:
            if enqueue == "removal job":
                removal.create_job(held, settings, "shop-a", "raced", ["R-1"], 50)
            elif enqueue == "image migration":
                images.start_migration(
                    held, settings, "shop-a", "raced", ["https://i.example/1.jpg"], 8
                )
            else:
                orders.request_fetch(held, settings, "shop-a", [7])

        outcome: list[BaseException | None] = []

        def remove() -> None:
            try:
                with sessions.begin() as session:
                    accounts.remove_account(session, settings, "shop-a")
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        enqueuer = threading.Thread(target=enqueue_work)
        enqueuer.start()
        assert at_commit.wait(60)
        remover = threading.Thread(target=remove)
        remover.start()
        # Let the enqueue commit once the removal has either finished or waits for a lock.
        wait_for(
            lambda: outcome or _waits_for_a_lock(sessions), 60, "the removal to finish or wait"
        )
        go_on.set()
        enqueuer.join(60)
        remover.join(60)
        enqueuing.dispose()
        with sessions() as session:
            exists = session.scalar(select(AccountRow.id).where(AccountRow.name == "shop-a"))
            pending = sum(
                session.scalar(select(func.count()).select_from(model)) or 0
                for model in (RemovalBatch, ImageJob, Order)
            )
        assert pending == 1
        assert exists is not None, "the account was deleted under work committed after its count"
        assert isinstance(outcome[0], InvalidInput) and "unfinished work" in str(outcome[0])


def _waits_for_a_lock(sessions: sessionmaker[Session]) -> bool:
    with sessions() as session:
        return bool(
            session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            )
        )


@pytest.mark.slow
def test_a_worker_ends_a_due_fetch_of_a_removed_accounts_order_once_not_at_every_sweep(
    stack: Stack,
) -> None:
    """A fetch due for an order of an account removed since (as a removal that raced the
    fetch's request left it): the sweeper sends it, the task ends it once, saying why, and
    the sweeps after it send nothing more."""
    add_sellercenter_account(stack, stack.sandbox, "shop-a")
    with stack.sessions.begin() as session:
        account_id = session.scalars(select(AccountRow.id).where(AccountRow.name == "shop-a")).one()
        accounts.remove_account(session, stack.settings, "shop-a")

    def due_order(order_id: int) -> None:
        with stack.sessions.begin() as session:
            session.add(
                Order(
                    account="shop-a",
                    account_id=account_id,
                    order_id=order_id,
                    next_attempt_at=datetime.now(UTC) - timedelta(seconds=1),
                )
            )

    def ended(order_id: int) -> Order | None:
        with stack.sessions() as session:
            order = session.scalars(select(Order).where(Order.order_id == order_id)).one()
            return order if order.next_attempt_at is None else None

    due_order(7)
    stack.start_worker()
    try:
        first = wait_for(lambda: ended(7), 90, "order 7 ended")
        due_order(8)  # ended by a later sweep, which would have sent 7 again were it due
        wait_for(lambda: ended(8), 90, "order 8 ended")
    except AssertionError:
        print(stack.logs())
        raise
    assert (first.state, first.error_code) == ("failed", "account_removed")
    assert "was removed after this work was created" in (first.message or "")
    with stack.sessions() as session:
        rows = session.scalars(select(Failure)).all()
    assert sorted((f.kind, f.subject, f.error_code) for f in rows) == [
        ("order", "7", "account_removed"),
        ("order", "8", "account_removed"),
    ]
    assert stack.sandbox.stats()["calls"] == 0
