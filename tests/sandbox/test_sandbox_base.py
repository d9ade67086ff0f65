"""The common base a new platform's sandbox is built on, specified through the smallest one.

``NotesSandbox`` is a made-up JSON API of two endpoints: it is all a new sandbox has to write (a
config, a Call, the endpoints' handlers), and everything else here (latency, faults, the ledger,
the rate limit, the control endpoints, knobs from the environment) comes from the base.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

import pytest
import requests

from worker.sandbox import Body, Call, SandboxServer, State
from worker.sandbox.knobs import ServerKnobs
from worker.sandbox.replies import Reply, json_reply
from worker.sandbox.routes import Found, Routes


@dataclass
class NotesConfig(ServerKnobs):
    ENV_PREFIX: ClassVar[str] = "NOTES_SANDBOX_"
    SECRETS: ClassVar[tuple[str, ...]] = ("token",)

    token: str = "notes-token"
    max_body_bytes: int = 10_000
    max_recorded_calls: int = 1000


@dataclass(kw_only=True)
class NotesCall(Call):
    found: Found[Handler] | None = None

    def recorded_params(self) -> dict[str, str]:
        return {name: value for name, value in self.params.items() if name != "token"}


@dataclass
class Notes:
    """The platform's state: notes by id."""

    texts: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


Handler: TypeAlias = Callable[[NotesCall, Notes, bool], Reply]


def add_note(call: NotesCall, notes: Notes, apply: bool) -> Reply:
    text = json.loads(call.body.data or b"{}").get("text", "")
    with notes.lock:
        note_id = str(len(notes.texts) + 1)
        if apply:
            notes.texts[note_id] = text
    return json_reply(201, {"id": note_id})


def get_note(call: NotesCall, notes: Notes, apply: bool) -> Reply:
    assert call.found is not None
    text = notes.texts.get(call.found.args["note_id"])
    if text is None:
        return json_reply(404, {"error": "no such note"}, "not_found")
    return json_reply(200, {"text": text})


ROUTES: Routes[Handler] = Routes(
    [("POST", "/notes", add_note), ("GET", "/notes/{note_id}", get_note)]
)


class NotesSandbox(SandboxServer[NotesConfig, NotesCall]):
    def _new_service(self) -> Notes:
        return Notes()

    def _receive(self, method: str, path: str, raw_query: str, body: Body) -> NotesCall:
        found = ROUTES.find(method, path)
        params = dict(pair.split("=", 1) for pair in raw_query.split("&") if "=" in pair)
        return NotesCall(
            method=method,
            path=path,
            action=found.route.name if found else path,
            params=params,
            body=body,
            found=found,
        )

    def _handle(self, call: NotesCall, state: State, *, apply: bool) -> Reply:
        if call.found is None:
            status = 405 if ROUTES.methods(call.path) else 404
            return json_reply(status, {"error": "no such endpoint"}, f"http{status}")
        if call.params.get("token") != self.config.token:
            return json_reply(401, {"error": "bad token"}, "unauthorized")
        call.account = call.params.get("shop")
        if not self._admitted(state, call.account or ""):
            return json_reply(429, {"error": "slow down"}, "throttled")
        return call.found.route.handler(call, state.service, apply)


@pytest.fixture
def sandbox() -> Iterator[NotesSandbox]:
    with NotesSandbox(NotesConfig()) as served:
        yield served


def add(sandbox: NotesSandbox, text: str, shop: str = "a") -> requests.Response:
    return requests.post(
        f"{sandbox.url}notes?token=notes-token&shop={shop}", json={"text": text}, timeout=10
    )


def test_a_new_sandbox_answers_its_routes_and_records_each_call_by_endpoint(
    sandbox: NotesSandbox,
) -> None:
    note_id = add(sandbox, "hello").json()["id"]
    read = requests.get(f"{sandbox.url}notes/{note_id}?token=notes-token&shop=a", timeout=10)
    assert read.json() == {"text": "hello"}
    calls = sandbox.calls()
    assert [call.action for call in calls] == ["POST /notes", "GET /notes/{note_id}"]
    assert calls[0].params == {"shop": "a"}  # the token is left out of the ledger
    assert calls[0].account == "a"
    assert json.loads(calls[0].body) == {"text": "hello"}
    assert sandbox.stats()["calls_by_outcome"] == {"http201": 1, "ok": 1}


def test_an_unknown_path_is_404_and_a_known_path_with_another_method_405(
    sandbox: NotesSandbox,
) -> None:
    assert requests.get(f"{sandbox.url}nowhere", timeout=10).status_code == 404
    assert requests.delete(f"{sandbox.url}notes", timeout=10).status_code == 405


def test_a_server_fault_answers_instead_of_the_api_and_changes_nothing(
    sandbox: NotesSandbox,
) -> None:
    sandbox.configure({"fault_rate": 1.0, "fault_kinds": ["http500"]})
    assert add(sandbox, "lost").status_code == 500
    assert sandbox.stats()["faults_injected"] == {"http500": 1}
    assert sandbox._state.service.texts == {}


def test_a_truncated_answer_is_cut_and_its_call_has_no_effect(sandbox: NotesSandbox) -> None:
    sandbox.configure({"fault_rate": 1.0, "fault_kinds": ["truncated"]})
    answer = add(sandbox, "cut")
    assert answer.status_code == 201
    with pytest.raises(ValueError):
        answer.json()
    assert sandbox._state.service.texts == {}


def test_every_answer_takes_the_latency_from_its_request(sandbox: NotesSandbox) -> None:
    sandbox.configure({"latency": 0.3})
    began = time.monotonic()
    add(sandbox, "late")
    assert time.monotonic() - began >= 0.3


def test_the_rate_limit_counts_each_key_of_the_platform_on_its_own(sandbox: NotesSandbox) -> None:
    sandbox.configure({"rate_limit": 1})
    assert [add(sandbox, "x", shop="a").status_code for _ in range(2)] == [201, 429]
    assert add(sandbox, "y", shop="b").status_code == 201


def test_knobs_come_from_the_environment_and_bad_ones_are_refused() -> None:
    config = NotesConfig.from_env({"NOTES_SANDBOX_LATENCY": "0.5", "NOTES_SANDBOX_TOKEN": "t"})
    assert (config.latency, config.token) == (0.5, "t")
    assert config.to_json()["token"] == "set"
    with pytest.raises(ValueError, match="NOTES_SANDBOX_FAULT_RATE"):
        NotesConfig.from_env({"NOTES_SANDBOX_FAULT_RATE": "often"})
    with pytest.raises(ValueError, match="unknown fault kind e006"):
        config.updated({"fault_kinds": ["e006"]})


def test_the_control_endpoints_serve_every_sandbox(sandbox: NotesSandbox) -> None:
    add(sandbox, "kept")
    stats: dict[str, Any] = requests.get(f"{sandbox.url}_sandbox/stats", timeout=10).json()
    assert stats["calls_by_action"] == {"POST /notes": 1}
    changed = requests.post(f"{sandbox.url}_sandbox/config", json={"latency": 0.01}, timeout=10)
    assert changed.json()["latency"] == 0.01
    assert requests.post(f"{sandbox.url}_sandbox/reset", timeout=10).status_code == 200
    assert sandbox.calls() == [] and sandbox._state.service.texts == {}
