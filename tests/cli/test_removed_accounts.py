"""A removal job of an account removed since, when another account has its name now: `retry`,
`cancel` and `remove-products` under its key refuse it (exit 2, one line), `status` shows it and
says whose it was; nothing is sent with the new account's credentials."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import sessionmaker

from tests.cli.command_line import Cli, assert_one_line_error
from tests.support.worker_stack import BATCH
from worker.accounts.platforms import PlatformFor
from worker.db.engine import get_engine
from worker.sandbox.sellercenter import Sandbox
from worker.services import removal
from worker.settings import Settings

EARLIER = "belongs to a removal job of an earlier account named 'shop-a', removed since"


def add_shop(cli: Cli, sandbox: Sandbox, user_id: str) -> None:
    key_file = Path(cli.folder) / "shop-a.key"
    key_file.write_text(sandbox.api_key + "\n")
    added = cli(
        "accounts",
        "add",
        "shop-a",
        "--platform",
        "sellercenter",
        "--api-url",
        sandbox.url,
        "--user-id",
        user_id,
        "--api-key-file",
        str(key_file),
    )
    assert added.returncode == 0, added.stderr


def test_a_job_of_a_removed_account_is_refused_by_retry_and_cancel_once_its_name_is_reused(
    cli: Cli, sandbox: Sandbox, platforms: PlatformFor
) -> None:
    add_shop(cli, sandbox, sandbox.user_id)
    settings = Settings.from_env(cli.env)
    sessions = sessionmaker(get_engine(cli.database_url), expire_on_commit=False)
    _, messages = removal.create_job(
        sessions, settings, "shop-a", "spring", ["A-1", "B-FAIL-2"], BATCH
    )
    removal.process_batch(sessions, platforms, settings, *messages[0].args)
    assert cli("accounts", "remove", "shop-a").returncode == 0
    add_shop(cli, sandbox, "another-seller@shop.example")

    for command in (
        ("retry", "spring"),
        ("cancel", "spring"),
        ("remove-products", "A-1", "B-FAIL-2", "--key", "spring"),
    ):
        line = assert_one_line_error(cli(*command, "--account", "shop-a"), 2)
        assert EARLIER in line and "use a new key" in line
    status = cli("status", "spring", "--account", "shop-a")
    assert status.returncode == 0, status.stderr
    assert "job spring: done, 1 removed, 1 failed" in status.stdout
    assert EARLIER in status.stderr
    assert cli.enqueued() == []
    assert sandbox.removal_counts() == {"A-1": 1}
