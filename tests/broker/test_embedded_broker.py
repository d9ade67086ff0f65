"""The embedded broker under concurrent writers and readers (worker.broker.embedded).

Writers are ours (`lazada-files://`) and kombu's own (`filesystem://`, as a shop sends by the
README); files in the queue folder may also be anyone's.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from kombu import Connection, Exchange, Queue

import worker.broker.embedded  # noqa: F401 - registers lazada-files://
from tests.support.processes import REPO, plain_celery, wait_for
from tests.support.worker_stack import Stack
from worker.services import documents


def _options(folder: Path) -> dict[str, Any]:
    for sub in ("queue", "control"):
        (folder / sub).mkdir(exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        "polling_interval": 0.01,
    }


def _queue() -> Queue:
    # kombu keeps bindings in a process-wide state: each test gets names of its own.
    name = f"q{uuid.uuid4().hex[:8]}"
    return Queue(name, Exchange(name), routing_key=name)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "lazada-worker-broker"


@pytest.fixture
def reader(folder: Path) -> Iterator[tuple[Any, Queue]]:
    """A consumer on the embedded broker and its (declared) queue."""
    folder.mkdir()
    queue = _queue()
    with Connection("lazada-files://", transport_options=_options(folder)) as conn:
        simple = conn.SimpleQueue(queue)
        yield simple, queue
        simple.close()


def _scratch(folder: Path) -> dict[str, Any]:
    """Options that write into a folder of their own: kombu's bindings are process-wide, so
    the control folder stays the queue's."""
    scratch = folder.parent / f"scratch-{uuid.uuid4().hex[:6]}"
    scratch.mkdir()
    return {**_options(folder), "data_folder_out": str(scratch)}


def _kombu_file(folder: Path, queue: Queue, body: Any) -> bytes:
    """The bytes kombu's filesystem writer puts in a file for `body` (in a scratch folder)."""
    options = _scratch(folder)
    with Connection("filesystem://", transport_options=options) as conn:
        conn.Producer(serializer="json").publish(
            body, exchange=queue.exchange, routing_key=queue.name, declare=[queue]
        )
    (written,) = Path(options["data_folder_out"]).iterdir()
    return written.read_bytes()


def _rejected(folder: Path) -> list[str]:
    rejected = folder / "rejected"
    return sorted(p.name for p in rejected.iterdir()) if rejected.exists() else []


def test_messages_published_while_others_read_arrive_whole_and_once(tmp_path: Path) -> None:
    options = _options(tmp_path)
    queue = _queue()
    writers, per_writer = 4, 150
    received: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def write(offset: int) -> None:
        try:
            with Connection("lazada-files://", transport_options=options) as conn:
                producer = conn.Producer(serializer="json")
                for i in range(per_writer):
                    body = {"n": offset + i, "padding": "x" * 4000}  # written in several steps
                    producer.publish(body, exchange=queue.exchange, routing_key=queue.name)
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        with Connection("lazada-files://", transport_options=options) as conn:
            simple = conn.SimpleQueue(queue)
            while not (done.is_set() and not simple.qsize()):
                try:
                    message = simple.get(timeout=0.2)
                except simple.Empty:
                    continue
                received.append(message.payload["n"])
                message.ack()
            simple.close()

    with Connection("lazada-files://", transport_options=options) as conn:
        queue(conn.default_channel).declare()
    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in readers:
        thread.start()
    threads = [threading.Thread(target=write, args=(w * 1000,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    for thread in readers:
        thread.join(timeout=30)

    expected = [w * 1000 + i for w in range(writers) for i in range(per_writer)]
    assert not errors
    assert sorted(received) == expected


def test_messages_are_taken_in_the_order_they_were_sent(tmp_path: Path) -> None:
    # Names start with a fixed-width clock: compared as text they sort as numbers do.
    with Connection("lazada-files://", transport_options=_options(tmp_path)) as conn:
        queue = _queue()
        simple = conn.SimpleQueue(queue)
        for n in range(20):
            simple.put({"n": n})
        received = []
        for _ in range(20):
            message = simple.get(timeout=5)
            received.append(message.payload["n"])
            message.ack()
        simple.close()
    assert received == list(range(20))


# --- kombu's own writer: the file is created, then locked, then written -------------------


def _kombu_name(queue: Queue) -> str:
    return f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue.name}.msg"


@pytest.mark.parametrize("moment", ["created", "locked"])
def test_a_file_kombus_writer_has_not_written_yet_is_left_for_later_not_dropped(
    folder: Path, reader: tuple[Any, Queue], moment: str
) -> None:
    simple, queue = reader
    data = _kombu_file(folder, queue, {"n": 1})
    with open(folder / "queue" / _kombu_name(queue), "wb", buffering=0) as file:
        if moment == "locked":
            fcntl.flock(file, fcntl.LOCK_EX)
        with pytest.raises(simple.Empty):  # the reader comes while the file is still empty
            simple.get(timeout=0.3)
        fcntl.flock(file, fcntl.LOCK_EX)
        file.write(data)
        fcntl.flock(file, fcntl.LOCK_UN)
    message = simple.get(timeout=10)
    assert message.payload == {"n": 1}
    message.ack()
    assert _rejected(folder) == []


def test_a_message_kombus_writer_pauses_before_writing_is_served(
    folder: Path, reader: tuple[Any, Queue]
) -> None:
    # kombu's _put step by step, with a pause between the lock and the write.
    simple, queue = reader
    data = _kombu_file(folder, queue, {"n": 2})

    def write() -> None:
        with open(folder / "queue" / _kombu_name(queue), "wb", buffering=0) as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            time.sleep(0.05)
            file.write(data)
            fcntl.flock(file, fcntl.LOCK_UN)

    writer = threading.Thread(target=write)
    writer.start()
    message = simple.get(timeout=10)
    writer.join()
    assert message.payload == {"n": 2}
    message.ack()


def test_every_message_sent_through_kombus_filesystem_transport_arrives(
    folder: Path, reader: tuple[Any, Queue]
) -> None:
    simple, queue = reader
    options = _options(folder)
    writers, per_writer = 4, 500
    errors: list[BaseException] = []

    def send(offset: int) -> None:
        try:
            with Connection("filesystem://", transport_options=options) as conn:
                producer = conn.Producer(serializer="json")
                for i in range(per_writer):
                    producer.publish(
                        {"n": offset + i}, exchange=queue.exchange, routing_key=queue.name
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(w * 1000,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    received = []
    for _ in range(writers * per_writer):
        message = simple.get(timeout=30)
        received.append(message.payload["n"])
        message.ack()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(received) == [w * 1000 + i for w in range(writers) for i in range(per_writer)]
    assert _rejected(folder) == []


def test_messages_from_kombus_writer_and_ours_are_served_in_the_order_sent(
    folder: Path, reader: tuple[Any, Queue]
) -> None:
    simple, queue = reader
    options = _options(folder)
    with (
        Connection("filesystem://", transport_options=options) as kombus,
        Connection("lazada-files://", transport_options=options) as ours,
    ):
        producers = [kombus.Producer(serializer="json"), ours.Producer(serializer="json")]
        for n in range(30):
            producer = producers[(n // 3) % 2]  # three of one writer, then three of the other
            producer.publish({"n": n}, exchange=queue.exchange, routing_key=queue.name)
            time.sleep(0.002)  # kombu's names count milliseconds: one send in each
    received = []
    for _ in range(30):
        message = simple.get(timeout=10)
        received.append(message.payload["n"])
        message.ack()
    assert received == list(range(30))


# --- foreign and bad files in the queue folder ------------------------------------------------


def _celery_message(folder: Path, queue: Queue) -> dict[str, Any]:
    """A real Celery protocol-2 message file's JSON, as a shop's send_task writes it."""
    options = _scratch(folder)
    app = plain_celery("filesystem://", options)
    app.send_task("lazada.sweep_orders", queue=queue.name)
    (written,) = Path(options["data_folder_out"]).iterdir()
    message: dict[str, Any] = json.loads(written.read_bytes())
    return message


def _bad_files(valid: dict[str, Any]) -> dict[str, str | None]:
    """Every kind of file that stopped the worker's consumer; None: a directory."""

    def changed(path: tuple[str, ...], value: Any) -> str:
        message = copy.deepcopy(valid)
        place = message
        for key in path[:-1]:
            place = place[key]
        if value is _DELETE:
            del place[path[-1]]
        else:
            place[path[-1]] = value
        return json.dumps(message)

    return {
        "null": "null",
        "array": "[1,2,3]",
        "string": '"x"',
        "foreign-object": '{"foo":1}',
        "no-properties": changed(("properties",), _DELETE),
        "body-not-base64": changed(("body",), "!!!not base64!!!"),
        "body-an-object": changed(("body",), {"a": 1}),
        "timelimit-x": changed(("headers", "timelimit"), "x"),
        "nested-deep": "[" * 100_000 + "]" * 100_000,
        "directory": None,
    }


_DELETE = object()


def _drop(queue_folder: Path, queue_name: str, kind: str, content: str | None) -> Path:
    path = queue_folder / f"1_{kind}.{queue_name}.msg"
    # Made aside and renamed into the queue already old: a worker must never see it young.
    staged = queue_folder.parent / f"{path.name}.staged"
    if content is None:
        staged.mkdir()
    else:
        staged.write_text(content)
    # An hour old: no writer pauses that long, so what cannot be read now never will be.
    old = time.time() - 3600
    os.utime(staged, (old, old))
    staged.rename(path)
    return path


@pytest.mark.parametrize("kind", list(_bad_files({"properties": {}, "headers": {}, "body": ""})))
def test_a_bad_file_is_set_aside_in_rejected_and_reading_goes_on(
    folder: Path, reader: tuple[Any, Queue], kind: str
) -> None:
    simple, queue = reader
    content = _bad_files(_celery_message(folder, queue))[kind]
    _drop(folder / "queue", queue.name, kind, content)
    simple.put({"n": 1})
    message = simple.get(timeout=10)
    assert message.payload == {"n": 1}
    message.ack()
    assert _rejected(folder) == [f"1_{kind}.{queue.name}.msg"]
    assert list((folder / "queue").iterdir()) == []


def test_a_young_file_cut_short_is_left_in_the_queue_for_its_writer(
    folder: Path, reader: tuple[Any, Queue]
) -> None:
    simple, queue = reader
    cut = folder / "queue" / f"1_cut.{queue.name}.msg"
    cut.write_text('{"body": "eyJ')  # a foreign writer's file, not finished yet
    with pytest.raises(simple.Empty):
        simple.get(timeout=0.05)  # the first pass looks at every file
    assert cut.exists() and _rejected(folder) == []
    simple.put({"n": 1})
    message = simple.get(timeout=10)
    assert message.payload == {"n": 1}
    message.ack()
    assert cut.exists() and _rejected(folder) == []


def test_a_message_without_a_routing_key_is_served_not_set_aside(
    folder: Path, reader: tuple[Any, Queue]
) -> None:
    # A broadcast (fanout) is published with a null routing key.
    simple, queue = reader
    message = json.loads(_kombu_file(folder, queue, {"n": 1}))
    message["properties"]["delivery_info"]["routing_key"] = None
    (folder / "queue" / _kombu_name(queue)).write_text(json.dumps(message))
    got = simple.get(timeout=10)
    assert got.payload == {"n": 1}
    got.ack()
    assert _rejected(folder) == []


_scalars = st.none() | st.booleans() | st.integers() | st.text()
_json = st.recursive(
    _scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_PLACES = [
    ("body",),
    ("headers",),
    ("properties",),
    ("properties", "delivery_tag"),
    ("properties", "delivery_info"),
    ("properties", "body_encoding"),
    ("content-type",),
    ("headers", "task"),
    ("headers", "id"),
    ("headers", "timelimit"),
]


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(place=st.sampled_from(_PLACES), value=_json)
def test_a_message_with_any_json_in_any_field_is_served_or_set_aside_never_raised(
    folder: Path, reader: tuple[Any, Queue], place: tuple[str, ...], value: Any
) -> None:
    simple, queue = reader
    message = _celery_message(folder, queue)
    target = message
    for key in place[:-1]:
        target = target[key]
    target[place[-1]] = value
    name = f"1_{uuid.uuid4().hex}.{queue.name}.msg"
    (folder / "queue" / name).write_text(json.dumps(message))
    try:
        got = simple.get(timeout=0.05)  # the first pass looks at every file
    except simple.Empty:
        assert name in _rejected(folder)
    else:
        got.ack()
        assert got.headers is None or isinstance(got.headers, dict)
    assert name not in os.listdir(folder / "queue")


def _finished_removal(stack: Stack, key: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        with stack.sessions() as session:
            job = documents.removal_job(session, stack.settings.account, key)
        return job if job and job["state"] == "done" else None

    try:
        return wait_for(finished, 60, f"removal job {key}")
    except AssertionError:
        print(stack.logs())
        raise


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["embedded+sqlite"], indirect=True)
def test_bad_files_in_the_queue_folder_are_set_aside_and_the_worker_serves_on(
    stack: Stack,
) -> None:
    folder = stack.settings.broker_folder
    assert folder is not None
    worker = stack.start_worker(concurrency=2)
    wait_for(lambda: "ready." in worker.log(), 60, "the worker to start")
    queue = stack.settings.queue
    bad = _bad_files(_celery_message(folder, Queue(queue)))
    for kind, content in bad.items():
        _drop(folder / "queue", queue, kind, content)

    stack.send("lazada.remove_products", ["AFTER-BAD-1"], key="after-bad-files")
    job = _finished_removal(stack, "after-bad-files")

    assert job["removed"] == 1
    assert _rejected(folder) == sorted(f"1_{kind}.{queue}.msg" for kind in bad)
    log = worker.log()
    assert "Unrecoverable error" not in log
    assert log.count("set aside the message file") == len(bad)


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["embedded+sqlite"], indirect=True)
def test_a_worker_on_the_embedded_broker_starts_without_a_hostname_warning(stack: Stack) -> None:
    worker = stack.start_worker(concurrency=1)
    wait_for(lambda: "ready." in worker.log(), 60, "the worker to start")
    assert "No hostname was supplied" not in worker.log()


# --- a full disk ----------------------------------------------------------------------------


def _send_on_a_full_disk(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`remove-products` with a file-size limit below one message: the write fails (EFBIG)."""

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAZADA_", "CELERY_"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'results.sqlite3'}"
    # The environment's account: the CLI then needs no database to name it, only the broker.
    env.update(
        {
            "LAZADA_API_URL": "https://api.sellercenter.example/",
            "LAZADA_USER_ID": "full-disk@example.test",
            "LAZADA_API_KEY": "full-disk-key",
        }
    )
    return subprocess.run(
        # No --key: a key is checked in the database first, and the limit would stop that.
        [sys.executable, "-m", "worker.cli", "remove-products", "FULL-1"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size,
    )


def test_a_message_that_cannot_be_written_leaves_no_partial_file(tmp_path: Path) -> None:
    result = _send_on_a_full_disk(tmp_path)
    assert result.returncode == 1, result.stderr
    assert list((tmp_path / "lazada-worker-broker" / "queue").iterdir()) == []


def test_the_cli_says_the_broker_could_not_write_the_message_not_that_it_is_unreachable(
    tmp_path: Path,
) -> None:
    result = _send_on_a_full_disk(tmp_path)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "File too large" in line
    assert "did not take the task" in line and "cannot reach" not in line
