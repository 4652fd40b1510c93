"""Celery tasks: thin wrappers around the task bodies (worker.ingest, worker.segment, worker.export,
worker.webhooks). Their base (worker.taskbase.WardrobeTask) parses the ids the messages carry as
strings into UUIDs before a body sees them, binds them as log fields, retries the three that do
work (Celery's autoretry with backoff and jitter), and, when one fails for good, calls its
`give_up`, which closes its rows."""
from __future__ import annotations

import functools
import logging
import uuid

from core.logs import fields
from core.queue import WEBHOOK_SWEEP_TASK, WEBHOOK_TASK, enqueue_webhook
from core.queue import (EXPORT_TASK, GC_TASK, INGEST_TASK, REAP_TASK, SEGMENT_TASK, enqueue_export, enqueue_ingest,
                        enqueue_segment)
from db import exports, jobstate, photos
from services.bootup import runtime
from db.session import session_scope
from worker import export as exporting
from worker import ingest as ingesting
from worker import segment as segmenting
from worker import webhooks as webhooking
from worker.app import app

log = logging.getLogger("wardrobe.tasks")

RETRIED = (Exception,)  # storage, DB or broker trouble: retried, then given up (the rows closed)


def _message(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _ingest_failed(exc: BaseException, job_id: uuid.UUID) -> None:
    with session_scope() as s:
        jobstate.fail(s, job_id, "ingest_failed", _message(exc)[:2000])


def _segment_failed(exc: BaseException, job_id: uuid.UUID, photo_ids: list[uuid.UUID]) -> None:
    for pid in photo_ids:
        log.warning("photo %s failed: segment_failed", pid, extra=fields(photo_id=pid))
    photos.mark_photos_failed(job_id, photo_ids, "segment_failed", _message(exc))


def _export_failed(exc: BaseException, export_id: uuid.UUID) -> None:
    from core.storage import StorageError

    code = "storage_unavailable" if isinstance(exc, StorageError) else "export_failed"
    with session_scope() as s:
        exports.fail(s, export_id, code, _message(exc))


@app.task(name=INGEST_TASK, autoretry_for=RETRIED, ids=("job_id",), give_up=_ingest_failed)
def ingest(job_id: uuid.UUID) -> None:
    ingesting.run(job_id, runtime(), send_segment=lambda j, ids: enqueue_segment(app, j, ids))


@app.task(name=SEGMENT_TASK, autoretry_for=RETRIED, ids=("job_id", "photo_ids"), give_up=_segment_failed)
def segment(job_id: uuid.UUID, photo_ids: list[uuid.UUID]) -> int:
    from worker.app import task_segmenter

    rt = runtime()
    return segmenting.run(job_id, photo_ids, rt, task_segmenter(rt.settings))


@app.task(name=EXPORT_TASK, autoretry_for=RETRIED, ids=("export_id",), give_up=_export_failed)
def export(export_id: uuid.UUID) -> None:
    exporting.run(export_id, runtime())  # the run starts over on a retry


@app.task(name=REAP_TASK)
def reap_stale_jobs() -> int:
    """Re-send work for jobs and exports that stopped moving (a worker vanished): see worker.reaper."""
    from worker.reaper import broker_jobs, reap, reap_exports

    rt = runtime()
    # one look into the broker a sweep, asked only when something is stale: it asks the live workers
    # what they hold, which waits out a broadcast's timeout
    in_broker = functools.cache(lambda: broker_jobs(app))
    return (reap(rt, send_ingest=lambda j: enqueue_ingest(app, j), in_broker=in_broker)
            + reap_exports(rt, send_export=lambda e: enqueue_export(app, e), in_broker=in_broker))


@app.task(name=GC_TASK)
def collect_garbage() -> dict:
    """Delete unreferenced objects, zips past their retention and stale temp files: see services.sweeper."""
    from services.sweeper import sweep

    return sweep(runtime())


@app.task(name=WEBHOOK_TASK, ids=("delivery_id",))
def deliver_webhook(delivery_id: uuid.UUID) -> str | None:
    """Send one webhook delivery if it is due (worker.webhooks). No Celery retries: a failed attempt
    is rescheduled in the table (next_attempt_at) and sent again by the sweep."""
    return webhooking.deliver(delivery_id, runtime().settings)


@app.task(name=WEBHOOK_SWEEP_TASK)
def sweep_webhooks() -> int:
    """Queue due webhook retries and deliveries whose message was lost: see db.webhooks."""
    return webhooking.sweep(runtime().settings, send=lambda d: enqueue_webhook(app, d))
