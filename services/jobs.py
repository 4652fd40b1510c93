"""A job after it was accepted: what its body shows beyond its row (its failed and duplicate photos,
whether a retry would run), cancelling it and retrying it; each committed, then acted on (its webhook
events sent, its zip deleted, its ingest queued)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from core.queue import enqueue_ingest
from db import jobphotos, jobstate, quota
from db.models import Job, Photo, PhotoStatus, utcnow
from services import dispatch
from services.context import Ctx
from services.errors import Refused, not_found, unavailable

log = logging.getLogger("wardrobe.jobs")
MAX_ERRORS = 500  # failed (and duplicate) photos a job's body lists

# "the job has already ...": each end state as a verb
_ENDED = {"succeeded": "succeeded", "partially_succeeded": "ended (partially succeeded)", "failed": "failed",
          "cancelled": "been cancelled"}


@dataclass
class Detail:
    failed: list[Photo]
    duplicates: list[Photo]
    retryable: bool


def _photos(ctx: Ctx, job: Job, status: PhotoStatus, count: int) -> list[Photo]:
    """The job's photos in one state, in zip order (no query when the counter says none)."""
    return jobphotos.in_state(ctx.s, job.id, status, MAX_ERRORS) if count else []


def zip_available(ctx: Ctx, job: Job) -> bool:
    """Whether a retry could read the rest of the job's zip: kept by its retention (db.quota.zip_kept),
    and there (a zip deleted under an older rule, or by hand, is not)."""
    if job.ingest_finished:
        return True
    if not quota.zip_kept(job.status, job.finished_at, False, ctx.settings, utcnow()):
        return False
    return ctx.storage.exists(job.upload_key)  # (storage down: StorageError's handler answers 503)


def detail(ctx: Ctx, job: Job) -> Detail:
    failed = _photos(ctx, job, PhotoStatus.FAILED, job.photos_failed)
    duplicates = _photos(ctx, job, PhotoStatus.DUPLICATE, job.photos_duplicate)
    # POST /v1/jobs/<id>/retry would run (the zip is only looked for when the retry needs it)
    retryable = job.status in jobstate.RETRYABLE_JOB_STATES and jobstate.retryable(ctx.s, job, zip_available(ctx, job))
    return Detail(failed, duplicates, retryable)


def cancel(ctx: Ctx, job: Job) -> None:
    """Cancel the user's active job (409 once it ended), then send its webhook events and delete its zip
    (retention 0); `job` is read again."""
    s = ctx.s
    if not jobstate.cancel(s, job.id):
        s.rollback()
        raise Refused(409, "job_finished", f"the job has already {_ENDED.get(job.status, 'ended')}")
    dispatch.commit(s)
    _read_again(s, job)


def _read_again(s, job: Job) -> None:
    """`job` as it is after the commit; 404 when its row went in between (the user purged the job
    the moment it ended, or deleted their account)."""
    if s.get(Job, job.id, populate_existing=True) is None:
        raise not_found("job")


def retry(ctx: Ctx, job: Job) -> int:
    """Run an ended job's photos that failed for a transient reason again, as the same job, committed and
    queued; returns how many photos go again, `job` read again. 409 when it is still going, when nothing
    failed that a retry can mend, or when its zip was never read to the end and is no longer kept."""
    s = ctx.s
    available = zip_available(ctx, job)
    try:
        again = jobstate.retry(s, job.id, available)
        s.commit()
    except jobstate.NotRetryable as e:
        s.rollback()
        raise Refused(409, e.code, e.message) from None
    except IntegrityError:  # a photo's bytes became live in another upload at this very moment
        s.rollback()
        raise Refused(409, "retry_conflict", "the job changed while it was being retried: try again") from None
    try:
        enqueue_ingest(ctx.queue, job.id)  # a second ingest sends the job's pending photos
    except Exception as e:  # noqa: BLE001 - the broker is down
        log.error("enqueue of the retried job %s failed: %s", job.id, e)
        jobstate.fail(s, job.id, "queue_unavailable", "the retry could not be queued; retry again")
        dispatch.commit(s)
        raise unavailable("queue_unavailable", "the job queue is unavailable; try again shortly") from None
    _read_again(s, job)
    return again
