"""Celery configuration for lazada-worker, read from the environment.

`celery -A worker worker` and `celery -A worker beat` load this module by name; each unusual
setting says why it is set.
"""

from datetime import timedelta

from kombu.entity import Queue

from worker.settings import Settings

_settings = Settings.from_env()

broker_url = _settings.broker_url
broker_connection_retry_on_startup = True

# JSON only: arguments are ids and plain data, never pickles a stranger could send.
task_serializer = "json"
accept_content = ["json"]
# Our tables hold every outcome; a result backend would only duplicate them.
task_ignore_result = True
result_backend = None

# At-least-once: a message is acknowledged after its task ran, and a worker killed mid-task
# gives its message back. Every task is idempotent, so running one twice does no harm.
task_acks_late = True
task_reject_on_worker_lost = True
# Four messages per slot: a thread that finishes takes its next task from memory rather than
# after a broker round trip (measured in bench/RESULTS.md, "prefetch"). Tasks are one API
# call each, so what a slow call strands is small; with late acks, messages a killed worker
# had reserved come back to the queue or to the sweepers.
worker_prefetch_multiplier = 4

# Countdowns are at most a few minutes (retry ladder, polling cap); both timeouts sit far above
# them, so a message held for a countdown is never redelivered behind our back.
broker_transport_options = _settings.broker_transport_options()
# RabbitMQ closes channels that hold a message unacked longer than its consumer_timeout
# (30 min by default); our longest hold is a countdown of a few minutes.

task_default_queue = _settings.queue
# Image jobs' steps go to a queue of their own (Settings.poll_queue); a worker consumes both
# unless told otherwise (`lazada-worker run --only polls`, `celery -A worker worker -Q NAME`).
# Event deliveries too (Settings.events_queue), each within its deadline: `lazada-worker run`
# serves them from a small worker process of its own (worker.cli.run), so slow receivers hold
# none of the API work's threads; with `celery -A worker worker`, give the queue a worker of its
# own (`-Q lazada.events`) for the same.
task_queues = (
    Queue(_settings.queue),  # type: ignore[no-untyped-call]
    Queue(_settings.poll_queue),  # type: ignore[no-untyped-call]
    Queue(_settings.events_queue),  # type: ignore[no-untyped-call]
)
task_routes = (
    [
        ("lazada.advance_image_job", {"queue": _settings.poll_queue}),
        ("lazada.deliver_event", {"queue": _settings.events_queue}),
        ("lazada.deliver_events", {"queue": _settings.events_queue}),
        ("lazada.*", {"queue": _settings.queue}),
    ],
)

worker_send_task_events = False

# A worker's timer (the thread that starts countdown tasks when they are due, on the embedded
# broker's thread pool) sleeps up to this long between looks; Celery's default is a second.
# Work deferred to a rate-limit slot comes back as a countdown, and slots are usually well
# under a second apart: a coarse timer starts those tasks in bunches, late for their slots,
# and part of the limit goes unused (bench/RESULTS.md, "fair shares"). Its looks cost nothing
# when nothing is due.
worker_timer_precision = 0.01

include = [
    "tasks.removal",
    "tasks.orders",
    "tasks.images",
    "tasks.sweepers",
    "tasks.accounts",
    "tasks.events",
]

# Periodic work: the sweepers resend work whose message was lost, the refresh keeps open
# orders current. Each is cheap when there is nothing to do.
beat_schedule = {
    "sweep-removal-batches": {"task": "lazada.sweep_removal_batches", "schedule": 5.0},
    "sweep-orders": {"task": "lazada.sweep_orders", "schedule": 5.0},
    "sweep-image-jobs": {"task": "lazada.sweep_image_jobs", "schedule": 5.0},
    "sweep-events": {"task": "lazada.sweep_events", "schedule": 5.0},
    "sweep-order-syncs": {"task": "lazada.sweep_order_syncs", "schedule": 5.0},
    # Order sync (worker.services.order_sync): each account's sync starts when its last one
    # started LAZADA_ORDER_SYNC_EVERY ago (the task looks every few seconds; off at 0).
    "schedule-order-syncs": {
        "task": "lazada.schedule_order_syncs",
        "schedule": min(5.0, _settings.order_sync_every or 5.0),
    },
    # Only while order sync is off (LAZADA_ORDER_SYNC_EVERY=0): a sync keeps orders current.
    "refresh-open-orders": {
        "task": "lazada.refresh_open_orders",
        "schedule": timedelta(minutes=5),
    },
    # Open Platform tokens, ahead of expiry (decision L3; a quarter of an access token's life
    # is days on Lazada, seconds in the tests' sandbox): cheap when nothing is due, one query.
    "refresh-tokens": {"task": "lazada.refresh_tokens", "schedule": 5.0},
}
