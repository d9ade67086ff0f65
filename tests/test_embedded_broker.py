"""The embedded broker under concurrent writers and readers (worker.embedded_broker)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue

import worker.embedded_broker  # noqa: F401 - registers lazada-files://


def _options(folder: Path) -> dict[str, str]:
    for sub in ("queue", "control"):
        (folder / sub).mkdir(exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
    }


def _queue() -> Queue:
    # kombu keeps bindings in a process-wide state: each test gets names of its own.
    name = f"q{uuid.uuid4().hex[:8]}"
    return Queue(name, Exchange(name), routing_key=name)


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


def test_a_half_written_foreign_file_is_dropped_and_reading_goes_on(tmp_path: Path) -> None:
    options = _options(tmp_path)
    queue = _queue()
    with Connection("lazada-files://", transport_options=options) as conn:
        simple = conn.SimpleQueue(queue)
        broken = tmp_path / "queue" / f"1_broken.{queue.name}.msg"
        broken.write_text('{"body": "eyJ')  # a foreign writer's file, cut short
        conn.Producer(serializer="json").publish(
            {"n": 1}, exchange=queue.exchange, routing_key=queue.name
        )
        message = simple.get(timeout=5)
        assert message.payload == {"n": 1}
        message.ack()
        with pytest.raises(simple.Empty):  # whichever file came first, both were looked at
            simple.get(timeout=0.5)
        simple.close()
    assert not list((tmp_path / "queue").iterdir())


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
