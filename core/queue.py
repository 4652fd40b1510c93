"""The Celery app's shape, shared by the API (which only sends) and the workers.

The API sends tasks by name, so it never imports the worker (or torch).
Messages carry ids only, and in their headers the request id of the API request (or the task) that
sent them, so the worker's lines for that work name it (worker.taskbase binds it).
"""
from __future__ import annotations

from celery import Celery
from kombu import Queue

from core import logs
from core.config import Settings

INGEST_TASK = "wardrobe.ingest"
SEGMENT_TASK = "wardrobe.segment"
REAP_TASK = "wardrobe.reap_stale_jobs"
GC_TASK = "wardrobe.collect_garbage"
EXPORT_TASK = "wardrobe.export"
WEBHOOK_TASK = "wardrobe.deliver_webhook"
WEBHOOK_SWEEP_TASK = "wardrobe.sweep_webhooks"
INGEST_QUEUE = "ingest"
SEGMENT_QUEUE = "segment"
EXPORT_QUEUE = "export"  # its own queue: a large catalogue's export never holds up uploads
WEBHOOK_QUEUE = "webhooks"  # its own queue: a slow endpoint never holds up uploads
QUEUES = (INGEST_QUEUE, SEGMENT_QUEUE, EXPORT_QUEUE, WEBHOOK_QUEUE)


def survive_broker_loss() -> None:
    """A worker must outlive a Redis restart. When the connection to Redis is lost, Celery closes it
    and reconnects; closing a channel hands its unacknowledged messages back to Redis, and in kombu
    5.7 that hand-back, made on a connection already torn down, raises AttributeError ("'NoneType'
    object has no attribute 'hostname'", building a client from the transport's cleared `client`),
    which Celery takes for an unrecoverable error: the worker exits. `make chaos` saw both of its
    workers exit so at a Redis restart. The messages are in Redis' unacked hash, or were lost with
    Redis: the visibility timeout restores the first, the stale-job sweep (worker.reaper) re-sends
    the work of both, so a hand-back that fails is logged and dropped, and the worker reconnects."""
    import logging

    from kombu.transport import redis as kombu_redis
    from redis.exceptions import RedisError

    qos = kombu_redis.QoS
    if getattr(qos.restore_unacked, "wardrobe_patched", False):
        return
    original = qos.restore_unacked

    def restore_unacked(self, client=None):
        try:
            return original(self, client)
        except (AttributeError, OSError, RedisError) as e:
            n = len(self._delivered)
            self._delivered.clear()  # kombu asserts an emptied state after its one restore at close
            logging.getLogger("wardrobe.queue").warning(
                "the broker connection is gone: %d unacknowledged message(s) not handed back (%s: %s); they come "
                "back with the visibility timeout, or their jobs' work with the stale-job sweep", n, type(e).__name__, e)
            return None

    restore_unacked.wardrobe_patched = True
    qos.restore_unacked = restore_unacked


def make_celery(settings: Settings) -> Celery:
    """A Celery app that sends to the broker the settings name (the API's, the CLI's)."""
    return configure_celery(Celery("wardrobe", set_as_current=False), settings)


def configure_celery(app: Celery, settings: Settings) -> Celery:
    """The broker, queues, routes, limits and schedules of `settings` on `app` (the worker's own is
    configured so as its process starts: worker.app)."""
    transport_options: dict = {"visibility_timeout": settings.visibility_timeout}
    if settings.celery_broker_url.startswith(("redis://", "rediss://")):
        survive_broker_loss()
        transport_options.update(
            # sweep for messages of dead workers often enough to honour a short visibility timeout
            unacked_restore_interval=max(1, min(10, settings.visibility_timeout // 4)),
            unacked_restore_throttle=1,
            # the sweep's lock outlives a worker killed while holding it by this much (kombu: 300 s)
            unacked_mutex_expire=max(5, min(300, 2 * settings.visibility_timeout)),
            socket_connect_timeout=5,
            socket_timeout=30,
            health_check_interval=10,
        )
    if settings.celery_broker_url.startswith("filesystem"):
        # The embedded default: a broker that is a folder, no server needed.
        qdir = settings.broker_queue_dir
        (qdir / "queue").mkdir(parents=True, exist_ok=True)
        (qdir / "processed").mkdir(parents=True, exist_ok=True)
        (qdir / "control").mkdir(parents=True, exist_ok=True)
        transport_options.update(
            data_folder_in=str(qdir / "queue"),
            data_folder_out=str(qdir / "queue"),
            processed_folder=str(qdir / "processed"),
            control_folder=str(qdir / "control"),  # kombu's default is ./control in the working directory
            store_processed=False,
        )
    app.conf.update(
        broker_url=settings.celery_broker_url,
        task_queues=[Queue(q) for q in QUEUES],
        task_default_queue=INGEST_QUEUE,
        task_routes={INGEST_TASK: {"queue": INGEST_QUEUE}, SEGMENT_TASK: {"queue": SEGMENT_QUEUE}, REAP_TASK: {"queue": INGEST_QUEUE},
                     GC_TASK: {"queue": INGEST_QUEUE}, EXPORT_TASK: {"queue": EXPORT_QUEUE},
                     WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE}, WEBHOOK_SWEEP_TASK: {"queue": WEBHOOK_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        # At-least-once delivery; the task bodies make a second run harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # a bound on a pool process's memory, whatever grows in it (Celery takes KiB; None: no bound)
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024 or None,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=soft_time_limit(settings.task_time_limit),
        # Progress lives in the jobs table, not in a result backend.
        task_ignore_result=True,
        result_backend=None,
        worker_hijack_root_logger=False,
        beat_schedule=_periodic(settings),
        worker_send_task_events=False,
    )
    return app


def _periodic(settings: Settings) -> dict:
    """The --beat worker's sweeps. Each message expires after its own interval: a sweep still queued
    behind busy pools when the next is sent is superseded by it, so sweeps never pile up and take the
    pool slots from the jobs they watch over."""
    every = {REAP_TASK: settings.reap_interval, WEBHOOK_SWEEP_TASK: settings.webhook_sweep_interval}
    if settings.gc_interval > 0:
        every[GC_TASK] = settings.gc_interval
    names = {REAP_TASK: "reap-stale-jobs", GC_TASK: "collect-garbage", WEBHOOK_SWEEP_TASK: "sweep-webhooks"}
    return {names[task]: {"task": task, "schedule": float(s), "options": {"expires": float(s)}}
            for task, s in every.items()}


def soft_time_limit(hard: int) -> int:
    """When a task is told its time is up (SoftTimeLimitExceeded), `hard` seconds being when it is
    killed: the time between is the task's to end cleanly (an export marks itself timed out and deletes
    its part-stored zip). A quarter of the limit, at least 1 s and at most 60 s. Not `hard - 60`: under
    61 s that is 1 s, so a 3 s limit cut tasks off at a third of it and a 60 s limit at 1 s."""
    return max(1, hard - min(60, max(1, hard // 4)))


def _headers() -> dict:
    """The sender's request id (core.logs: bound by an API request, or by the task that sends more work)."""
    rid = logs.bound().get("request_id")
    return {"request_id": rid} if rid else {}


def enqueue_ingest(app: Celery, job_id) -> None:
    app.send_task(INGEST_TASK, args=[str(job_id)], queue=INGEST_QUEUE, headers=_headers())


def enqueue_segment(app: Celery, job_id, photo_ids) -> None:
    app.send_task(SEGMENT_TASK, args=[str(job_id), [str(p) for p in photo_ids]], queue=SEGMENT_QUEUE,
                  headers=_headers())


def enqueue_export(app: Celery, export_id) -> None:
    app.send_task(EXPORT_TASK, args=[str(export_id)], queue=EXPORT_QUEUE, headers=_headers())


def enqueue_webhook(app: Celery, delivery_id) -> None:
    # no retrying a broker that is down: the row says the delivery is due, and the sweep sends it
    app.send_task(WEBHOOK_TASK, args=[str(delivery_id)], queue=WEBHOOK_QUEUE, retry=False, headers=_headers())
