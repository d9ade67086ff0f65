"""Messages a service asks to send once its transaction has committed, the retry ladder's
delays, and when a message sent counts as lost (the deadlines the sweepers go by)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery


@dataclass(frozen=True)
class Message:
    """A task to enqueue by name: a pointer at a row, never the row itself."""

    task: str
    args: tuple[Any, ...] = ()
    countdown: float | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    slot: float | None = None
    """The call slot reserved for it (worker.ratelimit): sent in the SLOT_HEADER the worker
    sets, never as an argument, so the tasks' public signatures do not take it."""


PUBLISH_BATCH = 32  # messages sent in one go (a Redis pipeline); the first go out at once

SLOT_HEADER = "lazada_slot"
"""The message header of a deferral's reserved slot; read back as ``task.request.lazada_slot``."""


def retry_delay(ladder: tuple[float, ...], attempt: int, rng: random.Random | None = None) -> float:
    """The wait before retry number `attempt` (1-based), jittered by +-25% so that batches
    that failed together do not come back together."""
    base = ladder[min(attempt, len(ladder)) - 1]
    return base * (rng or random).uniform(0.75, 1.25)


# A message sent with a countdown is held by a worker (Celery keeps it until it is due) long
# before it is due, and a live worker runs it then: one not run this long after, its worker is
# taken for dead (killed: the embedded broker loses what a reader held, Redis gives it back only
# after its visibility timeout) and the sweepers send its work again. Running it twice is safe.
HELD_GRACE = 15.0


def dispatch_deadline(due: datetime, redispatch_after: float) -> datetime:
    """When a message for work due at `due` counts as lost, so that a sweeper sends another:
    a message just sent may wait its turn in a long queue."""
    return due + timedelta(seconds=redispatch_after)


def countdown_deadline(due: datetime, redispatch_after: float) -> datetime:
    """dispatch_deadline for a message sent with a countdown to `due` (see HELD_GRACE)."""
    return due + timedelta(seconds=min(redispatch_after, HELD_GRACE))


def send_messages(app: Celery, messages: list[Message]) -> None:
    """Send `messages` through `app`'s broker.

    One producer for all of them, in kombu's publish batches: on Redis a batch is one
    pipelined round trip and one client object instead of one of each per message
    (bench/RESULTS.md). Batches of PUBLISH_BATCH let the first ones start while the rest are
    sent. Other brokers publish each message at once.
    """
    if not messages:
        return
    with app.producer_or_acquire() as producer, producer.batch(max_size=PUBLISH_BATCH):
        for message in messages:
            app.send_task(
                message.task,
                args=message.args,
                kwargs=message.kwargs,
                countdown=message.countdown,
                headers=None if message.slot is None else {SLOT_HEADER: message.slot},
                producer=producer,
            )
