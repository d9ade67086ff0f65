"""An Open Platform account's tokens: refreshed by one worker at a time, the new pair stored
before use, lost authorization marked once (decisions L3, L4). Real LAZOP sandbox over
HTTP, real databases."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tests.support.processes import REPO, wait_for
from worker.accounts import tokens
from worker.accounts.store import add_account, get_account, mark_needs_authorization
from worker.db.models import Account as AccountRow
from worker.db.models import Base, Failure
from worker.platforms import AccountParked, AuthorizationLostError
from worker.platforms.lazop.client import LazopClient
from worker.platforms.lazop.errors import TransportError
from worker.ratelimit import RateLimited
from worker.sandbox.lazop import LazopSandbox
from worker.sandbox.lazop.config import LazopSandboxConfig
from worker.settings import Settings

SELLER = "seller-a"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings with the deployment's secret key (a server database has none)."""
    return replace(settings, secret_key=Fernet.generate_key().decode())


@pytest.fixture
def lazop() -> Iterator[LazopSandbox]:
    sandbox = LazopSandbox(LazopSandboxConfig(latency=0.3), port=0).start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def client(lazop: LazopSandbox) -> Iterator[LazopClient]:
    with LazopClient(
        lazop.api_url, lazop.app_key, lazop.app_secret, auth_url=lazop.auth_url
    ) as found:
        yield found


@pytest.fixture
def authorized(
    sessions: sessionmaker[Session], settings: Settings, lazop: LazopSandbox, client: LazopClient
) -> str:
    with sessions.begin() as session:
        add_account(
            session,
            settings,
            "shop-th",
            "lazop",
            {"app_key": lazop.app_key, "app_secret": lazop.app_secret, "auth_url": lazop.auth_url},
            api_url=lazop.api_url,
        )
    grant = client.create_token(lazop.authorization_code(SELLER))
    tokens.store_grant(sessions, settings, "shop-th", grant)
    return "shop-th"


def _account(sessions: sessionmaker[Session], settings: Settings, name: str):  # type: ignore[no-untyped-def]
    with sessions() as session:
        return get_account(session, settings, name)


def test_two_workers_refreshing_at_once_make_one_refresh_and_keep_the_account(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
) -> None:
    # Refresh tokens rotate: had both refreshed, the second would use a refresh token the
    # first had just made invalid, and the account would be locked out.
    failed = _account(sessions, settings, authorized).access_token
    outcomes: list[object] = []
    start = threading.Barrier(2)

    def worker() -> None:
        start.wait()
        try:
            outcomes.append(tokens.refresh(sessions, settings, authorized, client, failed))
        except RateLimited as exc:  # the other one is refreshing: come back shortly
            outcomes.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    refreshes = [c for c in lazop.calls() if c.action == "/auth/token/refresh"]
    assert len(refreshes) == 1
    assert sorted(type(o).__name__ for o in outcomes) == ["RateLimited", "str"]
    stored = _account(sessions, settings, authorized)
    assert stored.state == "ready" and stored.access_token != failed
    # The one that came back later gets the new token without another refresh.
    assert tokens.refresh(sessions, settings, authorized, client, failed) == stored.access_token
    assert len([c for c in lazop.calls() if c.action == "/auth/token/refresh"]) == 1
    # And the new pair works at the API.
    assert client.get_order(stored.access_token, 1001).order_id == 1001


def test_a_refresh_that_read_the_account_before_another_worker_stored_new_tokens_keeps_it(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The race a run at 50 calls/s met: a worker read the account (the old pair), another
    # refreshed, stored the new pair and let go of the lease, and the first then took the
    # lease and refreshed with the refresh token that refresh had made invalid: the account
    # was marked as needing authorization and its job was parked for good.
    failed = _account(sessions, settings, authorized).access_token
    read = tokens._read
    reads = []

    def read_then_another_worker_refreshes(*args: Any) -> Any:
        found = read(*args)
        reads.append(found.access_token)
        if len(reads) == 1:  # right after this worker's first read
            tokens.refresh(sessions, settings, authorized, client, failed)
        return found

    monkeypatch.setattr(tokens, "_read", read_then_another_worker_refreshes)
    fresh = tokens.refresh(sessions, settings, authorized, client, failed)

    stored = _account(sessions, settings, authorized)
    assert stored.state == "ready" and fresh == stored.access_token != failed
    assert len([c for c in lazop.calls() if c.action == "/auth/token/refresh"]) == 1
    assert client.get_order(fresh, 1001).order_id == 1001


def test_a_refresh_refused_because_an_operator_authorized_meanwhile_keeps_the_new_tokens(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A worker's refresh is under way when an operator runs `accounts authorize
    # --refresh-token-file` with the same refresh token: the operator's refresh rotates it,
    # and the worker's is refused (IllegalRefreshToken). The account must not be marked as
    # needing authorization over the pair the operator just stored.
    failed = _account(sessions, settings, authorized).access_token
    refresh_token = client.refresh_token

    def operator_authorizes_first(secret: str) -> Any:
        tokens.store_grant(sessions, settings, authorized, refresh_token(secret))
        return refresh_token(secret)

    monkeypatch.setattr(client, "refresh_token", operator_authorizes_first)
    fresh = tokens.refresh(sessions, settings, authorized, client, failed)

    stored = _account(sessions, settings, authorized)
    assert stored.state == "ready" and fresh == stored.access_token != failed
    refused = [c for c in lazop.calls() if c.action == "/auth/token/refresh"]
    assert len(refused) == 2  # the operator's, then the worker's (refused)
    assert client.get_order(fresh, 1001).order_id == 1001


def test_a_refresh_slower_than_its_lease_leaves_the_next_holders_lease_alone(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A refresh call outlives its lease (a stalled network or database), and another worker
    # takes the lapsed lease and starts its own refresh. When the first one stores its pair
    # it must let go of its own lease only: clearing the second's let a third worker refresh
    # at the same time with the same rotating refresh token.
    failed = _account(sessions, settings, authorized).access_token
    refresh_token = client.refresh_token
    taken: list[datetime | None] = []

    def lease_lapses_and_another_worker_takes_it(secret: str) -> Any:
        with sessions.begin() as session:
            session.execute(
                update(AccountRow)
                .where(AccountRow.name == authorized)
                .values(refreshing_until=datetime.now(UTC) - timedelta(seconds=1))
            )
        taken.append(tokens._take_lease(sessions, authorized))
        return refresh_token(secret)

    monkeypatch.setattr(client, "refresh_token", lease_lapses_and_another_worker_takes_it)
    fresh = tokens.refresh(sessions, settings, authorized, client, failed)

    assert taken[0] is not None  # the second worker got the lapsed lease
    with sessions() as session:
        held = session.scalar(
            select(AccountRow.refreshing_until).where(AccountRow.name == authorized)
        )
    assert held == taken[0]
    monkeypatch.setattr(client, "refresh_token", refresh_token)
    with pytest.raises(RateLimited):  # a third worker waits for the second's refresh
        tokens.refresh(sessions, settings, authorized, client, fresh)
    assert len([c for c in lazop.calls() if c.action == "/auth/token/refresh"]) == 1


def test_a_refresh_refused_for_good_marks_the_account_once(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
) -> None:
    lazop.revoke(SELLER)
    failed = _account(sessions, settings, authorized).access_token
    with pytest.raises(AuthorizationLostError):
        tokens.refresh(sessions, settings, authorized, client, failed)
    assert _account(sessions, settings, authorized).state == "needs_authorization"
    with pytest.raises(AuthorizationLostError):  # parked: no call is made any more
        tokens.refresh(sessions, settings, authorized, client, failed)
    assert len([c for c in lazop.calls() if c.action == "/auth/token/refresh"]) == 1


def test_tokens_near_their_end_are_due_for_refresh_and_fresh_ones_are_not(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
) -> None:
    assert tokens.due_for_refresh(sessions, settings) == []
    lazop.config.access_token_seconds = 1.0  # the next pair lives a second
    grant = client.create_token(lazop.authorization_code(SELLER))
    tokens.store_grant(sessions, settings, authorized, grant)
    threading.Event().wait(0.9)  # under a quarter of its life left
    assert tokens.due_for_refresh(sessions, settings) == [authorized]
    assert tokens.refresh_due(sessions, settings, lambda _name: client) == [authorized]


_SANDBOX_TOKEN = re.compile(r"5000[01][0-9a-f]{40}")
"""The sandbox's access (50000...) and refresh (50001...) tokens, whichever pair."""


@pytest.mark.parametrize(
    "expires_in", ["null", '"604800.0"', "missing", "1" + "0" * 30, '"soon"', "-5"]
)
def test_a_refresh_whose_lifetime_cannot_be_read_keeps_the_new_pair_and_quotes_no_token(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
    caplog: pytest.LogCaptureFixture,
    expires_in: str,
) -> None:
    lazop.configure({"token_expires_in": expires_in})
    before = _account(sessions, settings, authorized)
    caplog.set_level(logging.DEBUG)
    problem = ""
    try:
        new_access = tokens.refresh(sessions, settings, authorized, client, before.access_token)
    except Exception as exc:  # the text is checked below, then the test fails
        problem = f"{exc!r} {exc}"
        new_access = ""

    with sessions() as session:
        dump = "\n".join(
            repr(row)
            for table in Base.metadata.sorted_tables
            for row in session.execute(table.select())
        )
    for text in (problem, dump, caplog.text):
        assert _SANDBOX_TOKEN.search(text) is None
    assert not problem
    stored = _account(sessions, settings, authorized)
    assert stored.state == "ready"
    assert stored.access_token == new_access != before.access_token
    assert stored.refresh_token != before.refresh_token
    assert stored.access_expires_at is not None
    # A lifetime read as 604800 is kept; an unreadable one gets a short life (refreshed early).
    life = (stored.access_expires_at - datetime.now(UTC)).total_seconds()
    assert 0 < life <= (604_800 if expires_in == '"604800.0"' else 3600)
    # The stored refresh token is the live one: the next refresh is granted.
    lazop.configure({"token_expires_in": ""})
    assert tokens.refresh(sessions, settings, authorized, client, new_access) != new_access


def _refreshes(lazop: LazopSandbox) -> int:
    return len([c for c in lazop.calls() if c.action == "/auth/token/refresh"])


def _in_thread(work: Any) -> tuple[threading.Thread, list[object]]:
    """`work()` in a thread of its own: its outcome (a value or an exception) lands in the list."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:  # the test looks at it
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _parked_message(sessions: sessionmaker[Session], name: str) -> str:
    with sessions() as session:
        messages = list(session.scalars(select(Failure.message).where(Failure.account == name)))
    assert len(messages) == 1, messages
    return messages[0]


def test_a_refresh_under_way_does_not_store_over_an_operators_newer_authorization(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
) -> None:
    # A worker's refresh is in flight (the sandbox holds its answer) when an operator's
    # `accounts authorize --code` stores the pair the seller's new consent gave. The worker's
    # answer comes later: the operator's pair must be the one kept.
    failed = _account(sessions, settings, authorized).access_token
    operators = client.create_token(lazop.authorization_code(SELLER))
    lazop.configure({"latency": 2.0})
    thread, outcome = _in_thread(
        lambda: tokens.refresh(sessions, settings, authorized, client, failed)
    )
    wait_for(lambda: _refreshes(lazop) == 1, 30, "the worker's refresh at the sandbox")
    tokens.store_grant(sessions, settings, authorized, operators)  # the operator's authorize
    thread.join(60)

    stored = _account(sessions, settings, authorized)
    assert stored.state == "ready"
    assert (stored.access_token, stored.refresh_token) == (
        operators.access_token,
        operators.refresh_token,
    )
    assert outcome == [operators.access_token]  # the worker goes on with the operator's
    lazop.configure({"latency": 0.0})
    assert tokens.refresh(sessions, settings, authorized, client, operators.access_token)


def test_a_worker_whose_clock_runs_ahead_waits_for_the_refresh_under_way(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two machines whose clocks disagree by two minutes: the one ahead saw the other's
    # 60-second lease as lapsed and refreshed alongside it with the same refresh token.
    failed = _account(sessions, settings, authorized).access_token
    lazop.configure({"latency": 2.0})
    thread, outcome = _in_thread(
        lambda: tokens.refresh(sessions, settings, authorized, client, failed)
    )
    wait_for(lambda: _refreshes(lazop) == 1, 30, "the first worker's refresh at the sandbox")

    class AheadClock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + timedelta(minutes=2)

    monkeypatch.setattr(tokens, "datetime", AheadClock)
    with pytest.raises(RateLimited):  # told to come back: the refresh under way holds
        tokens.refresh(sessions, settings, authorized, client, failed)
    monkeypatch.undo()
    thread.join(60)

    assert _refreshes(lazop) == 1
    stored = _account(sessions, settings, authorized)
    assert stored.state == "ready" and outcome == [stored.access_token] != [failed]


def test_a_due_account_whose_refresh_failed_for_now_stays_due(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
) -> None:
    # Taking and letting go of the refresh lease wrote the row; its `updated_at` was also
    # read as "when the pair was stored", so each failed refresh shrank the token's reckoned
    # life, and the account stopped being due until its token had all but run out.
    lazop.configure({"latency": 0.0, "access_token_seconds": 4.0})
    tokens.store_grant(
        sessions, settings, authorized, client.create_token(lazop.authorization_code(SELLER))
    )
    wait_for(lambda: tokens.due_for_refresh(sessions, settings), 30, "the account due", 0.05)
    lazop.configure({"fault_rate": 1.0, "fault_kinds": ["http500"]})
    assert tokens.refresh_due(sessions, settings, lambda _name: client) == []  # failed for now
    assert tokens.due_for_refresh(sessions, settings) == [authorized]
    lazop.configure({"fault_rate": 0.0})
    assert tokens.refresh_due(sessions, settings, lambda _name: client) == [authorized]
    assert tokens.due_for_refresh(sessions, settings) == []


def test_a_refresh_whose_answer_was_lost_after_the_server_rotated_parks_the_account_saying_so(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    authorized: str,
    client: LazopClient,
) -> None:
    # The server rotated the refresh token, and the answer with the new pair never arrived
    # (the client gave up waiting). The pair is lost: no design can get it back, so the
    # account must say what happened when the old refresh token is refused.
    failed = _account(sessions, settings, authorized).access_token
    lazop.configure({"latency": 3.0})
    with (
        LazopClient(
            lazop.api_url,
            lazop.app_key,
            lazop.app_secret,
            auth_url=lazop.auth_url,
            read_timeout=0.5,
        ) as impatient,
        pytest.raises(TransportError),
    ):
        tokens.refresh(sessions, settings, authorized, impatient, failed)
    assert _refreshes(lazop) == 1
    assert _account(sessions, settings, authorized).state == "ready"  # its access token lives
    lazop.configure({"latency": 0.0})
    with pytest.raises(AuthorizationLostError):
        tokens.refresh(sessions, settings, authorized, client, failed)

    assert _account(sessions, settings, authorized).state == "needs_authorization"
    message = _parked_message(sessions, authorized)
    assert "got no answer" in message and "was lost" in message, message
    assert f"accounts authorize {authorized}" in message


@pytest.mark.parametrize("answer", ["not_json", "no_refresh_token"])
def test_a_refresh_answered_with_no_readable_pair_parks_the_account_saying_so(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
    caplog: pytest.LogCaptureFixture,
    answer: str,
) -> None:
    # The server issued a new pair (the old refresh token is dead) but its answer is not JSON,
    # or lacks the refresh token: nothing to store. The account must say so once the old
    # refresh token is refused, and no token may be quoted anywhere.
    caplog.set_level(logging.DEBUG)
    failed = _account(sessions, settings, authorized).access_token
    lazop.configure({"latency": 0.0, "token_answer": answer})
    with pytest.raises(TransportError) as unreadable:
        tokens.refresh(sessions, settings, authorized, client, failed)
    assert _account(sessions, settings, authorized).state == "ready"
    lazop.configure({"token_answer": ""})
    with pytest.raises(AuthorizationLostError) as refused:
        tokens.refresh(sessions, settings, authorized, client, failed)

    assert _account(sessions, settings, authorized).state == "needs_authorization"
    message = _parked_message(sessions, authorized)
    assert "could not be read" in message and "was lost" in message, message
    assert f"accounts authorize {authorized}" in message
    with sessions() as session:
        dump = "\n".join(
            repr(row)
            for table in Base.metadata.sorted_tables
            for row in session.execute(table.select())
        )
    for text in (str(unreadable.value), str(refused.value), dump, caplog.text):
        assert _SANDBOX_TOKEN.search(text) is None


def test_a_database_error_while_storing_a_new_pair_does_not_lose_it(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The database drops the connection as the refreshed pair is written: the refresh token
    # used is dead at the server, so the pair in hand is the only one left.
    failed = _account(sessions, settings, authorized).access_token
    store_tokens = tokens.store_tokens
    failures = [OperationalError("UPDATE accounts", {}, Exception("connection reset"))]

    def first_write_fails(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return store_tokens(*args, **kwargs)

    monkeypatch.setattr(tokens, "store_tokens", first_write_fails)
    fresh = tokens.refresh(sessions, settings, authorized, client, failed)

    assert not failures  # the write did fail once
    stored = _account(sessions, settings, authorized)
    assert stored.state == "ready" and stored.access_token == fresh != failed
    assert tokens.refresh(sessions, settings, authorized, client, fresh) != fresh
    assert _refreshes(lazop) == 2


_REFRESH_AND_DIE = """
import sys
from sqlalchemy.orm import sessionmaker
from worker.accounts import tokens
from worker.db.engine import get_engine
from worker.platforms.lazop.client import LazopClient
from worker.settings import Settings

database_url, name, api_url, auth_url, app_key = sys.argv[1:]
settings = Settings.from_env(
    {"DATABASE_URL": database_url, "LAZADA_SECRET_KEY": sys.stdin.readline().strip()}
)
sessions = sessionmaker(get_engine(database_url), expire_on_commit=False)
app_secret = sys.stdin.readline().strip()
with LazopClient(api_url, app_key, app_secret, auth_url=auth_url) as client:
    tokens.refresh(sessions, settings, name, client)
"""


def test_a_worker_killed_while_its_refresh_was_answered_leaves_a_message_when_parked(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
) -> None:
    # kill -9 of the worker between the server's rotation and the commit of the new pair.
    lazop.configure({"latency": 120.0})  # the answer is held; the rotation is done
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _REFRESH_AND_DIE,
            settings.database_url,
            authorized,
            lazop.api_url,
            lazop.auth_url,
            lazop.app_key,
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert worker.stdin is not None
        worker.stdin.write(f"{settings.secret_key}\n{lazop.app_secret}\n")
        worker.stdin.close()
        wait_for(lambda: _refreshes(lazop) == 1, 60, "the worker's refresh at the sandbox")
    finally:
        worker.kill()
        worker.wait(30)
    with sessions.begin() as session:  # the dead worker's lease lapses
        session.execute(
            update(AccountRow)
            .where(AccountRow.name == authorized)
            .values(refreshing_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    lazop.configure({"latency": 0.0})
    failed = _account(sessions, settings, authorized).access_token
    with pytest.raises(AuthorizationLostError):
        tokens.refresh(sessions, settings, authorized, client, failed)

    assert _account(sessions, settings, authorized).state == "needs_authorization"
    message = _parked_message(sessions, authorized)
    assert "no recorded outcome" in message and "was lost" in message, message


def test_a_refused_refresh_tells_its_caller_not_to_mark_the_account_again(
    sessions: sessionmaker[Session],
    settings: Settings,
    lazop: LazopSandbox,
    client: LazopClient,
    authorized: str,
) -> None:
    # The refresh marks the account under its check (it still holds the refresh token
    # refused). A work attempt that gets the refusal marks the account itself unless told it
    # is parked already (worker.services.attempts): unchecked, and later, that mark landed on
    # an operator's `accounts authorize` stored in between.
    lazop.revoke(SELLER)
    failed = _account(sessions, settings, authorized).access_token
    with pytest.raises(AuthorizationLostError) as refused:
        tokens.refresh(sessions, settings, authorized, client, failed)
    assert _account(sessions, settings, authorized).state == "needs_authorization"
    tokens.store_grant(
        sessions, settings, authorized, client.create_token(lazop.authorization_code(SELLER))
    )
    if not isinstance(refused.value, AccountParked):  # what the attempt routine does
        with sessions.begin() as session:
            mark_needs_authorization(
                session.connection(), authorized, str(refused.value), datetime.now(UTC)
            )

    assert _account(sessions, settings, authorized).state == "ready"
    _parked_message(sessions, authorized)  # reported once
