"""Celery tasks: thin wrappers that add retries with backoff around the task bodies (worker.ingest, worker.segment,
worker.export). Messages carry ids as strings; they become UUIDs before they reach a query (SQLite's
driver, the embedded default's, takes no string for a UUID column)."""
from __future__ import annotations

import logging
import uuid

from celery.signals import task_postrun, task_prerun

from core import logs
from core.logs import fields
from core.queue import WEBHOOK_SWEEP_TASK, WEBHOOK_TASK, enqueue_webhook
from core.queue import (EXPORT_TASK, GC_TASK, INGEST_TASK, REAP_TASK, SEGMENT_TASK, enqueue_export, enqueue_ingest,
                        enqueue_segment)
from db import exports, jobstate, photos
from db.bootup import runtime
from db.session import session_scope
from worker import export as exporting
from worker import ingest as ingesting
from worker import segment as segmenting
from worker import webhooks as webhooking
from worker.app import app, settings

log = logging.getLogger("wardrobe.tasks")


_FIRST_ARG = {INGEST_TASK: "job_id", SEGMENT_TASK: "job_id", EXPORT_TASK: "export_id"}


@task_prerun.connect
def _bind_log_fields(task=None, args=(), kwargs=None, **_kw) -> None:
    """Every line a task logs names its job or export (and the task), whoever logs it."""
    name = getattr(task, "name", "") or ""
    field = _FIRST_ARG.get(name)
    values = {"task": name.rsplit(".", 1)[-1] or None}
    if field:
        values[field] = (kwargs or {}).get(field, args[0] if args else None)
    logs.clear()
    logs.bind(**values)


@task_postrun.connect
def _unbind_log_fields(**_kw) -> None:
    logs.clear()


def _backoff(retries: int) -> int:
    return min(60, 2 ** (retries + 1))


@app.task(name=INGEST_TASK, bind=True, max_retries=settings.task_max_retries)
def ingest(self, job_id: str) -> None:
    rt = runtime()
    try:
        ingesting.run(job_id, rt, send_segment=lambda j, ids: enqueue_segment(app, j, ids))
    except Exception as exc:  # noqa: BLE001 - storage, DB or broker trouble: retry, then give up cleanly
        if self.request.retries >= self.max_retries:
            log.exception("ingest of job %s failed for good", job_id, extra=fields(job_id=job_id, task="ingest"))
            with session_scope() as s:
                jobstate.fail(s, uuid.UUID(str(job_id)), "ingest_failed", f"{type(exc).__name__}: {exc}"[:2000])
            return
        log.warning("ingest of job %s: %s; retry %d", job_id, exc, self.request.retries + 1,
                    extra=fields(job_id=job_id, task="ingest"))
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries))


@app.task(name=SEGMENT_TASK, bind=True, max_retries=settings.task_max_retries)
def segment(self, job_id: str, photo_ids: list[str]) -> int:
    from worker.app import task_segmenter

    rt = runtime()
    try:
        done = segmenting.run(job_id, photo_ids, rt, task_segmenter(rt.settings))
        log.info("segmented %d of %d photos", done, len(photo_ids))
        return done
    except Exception as exc:  # noqa: BLE001
        if self.request.retries >= self.max_retries:
            log.exception("segmentation of %d photos of job %s failed for good", len(photo_ids), job_id,
                          extra=fields(job_id=job_id, task="segment"))
            for pid in photo_ids:
                log.warning("photo %s failed: segment_failed", pid, extra=fields(job_id=job_id, photo_id=pid))
            photos.mark_photos_failed(uuid.UUID(str(job_id)), photo_ids, "segment_failed", f"{type(exc).__name__}: {exc}")
            return 0
        log.warning("segment job %s: %s; retry %d", job_id, exc, self.request.retries + 1,
                    extra=fields(job_id=job_id, task="segment"))
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries))


@app.task(name=EXPORT_TASK, bind=True, max_retries=settings.task_max_retries)
def export(self, export_id: str) -> None:
    rt = runtime()
    try:
        exporting.run(export_id, rt)
    except Exception as exc:  # noqa: BLE001 - storage or DB trouble: retry (the run starts over), then fail it
        if self.request.retries >= self.max_retries:
            from core.storage import StorageError

            log.exception("export %s failed for good", export_id, extra=fields(task="export"))
            code = "storage_unavailable" if isinstance(exc, StorageError) else "export_failed"
            with session_scope() as s:
                exports.fail(s, uuid.UUID(str(export_id)), code, f"{type(exc).__name__}: {exc}")
            return
        log.warning("export %s: %s; retry %d", export_id, exc, self.request.retries + 1, extra=fields(task="export"))
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries))


@app.task(name=REAP_TASK)
def reap_stale_jobs() -> int:
    """Re-send work for jobs and exports that stopped moving (a worker vanished): see worker.reaper."""
    from worker.reaper import broker_jobs, reap, reap_exports

    rt = runtime()
    return (reap(rt, send_ingest=lambda j: enqueue_ingest(app, j), in_broker=lambda: broker_jobs(app))
            + reap_exports(rt, send_export=lambda e: enqueue_export(app, e), in_broker=lambda: broker_jobs(app)))


@app.task(name=GC_TASK)
def collect_garbage() -> dict:
    """Delete unreferenced objects, zips past their retention and stale temp files: see db.sweeper."""
    from db.sweeper import sweep

    return sweep(runtime())


@app.task(name=WEBHOOK_TASK)
def deliver_webhook(delivery_id: str) -> str | None:
    """Send one webhook delivery if it is due (worker.webhooks). No Celery retries: a failed attempt
    is rescheduled in the table (next_attempt_at) and sent again by the sweep."""
    return webhooking.deliver(delivery_id, runtime().settings)


@app.task(name=WEBHOOK_SWEEP_TASK)
def sweep_webhooks() -> int:
    """Queue due webhook retries and deliveries whose message was lost: see db.webhooks."""
    return webhooking.sweep(runtime().settings, send=lambda d: enqueue_webhook(app, d))
