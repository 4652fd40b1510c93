"""Job state transitions. Each one is a single conditional UPDATE, so concurrent
workers and a second delivery of the same task can never count a photo twice
or finish a job twice. A transition that ends a job has its zip deleted once the session commits
(db.retention, with WARDROBE_UPLOAD_RETENTION 0)."""
from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from db import jobcounts, retention, webhooks
from db.models import Job, JobStatus, utcnow

ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


def mark_running(s: Session, job_id: uuid.UUID) -> bool:
    """queued -> running; True if the job is (now) running."""
    now = utcnow()
    s.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
        .values(status=JobStatus.RUNNING.value, started_at=now, updated_at=now)
    )
    return s.scalar(select(Job.status).where(Job.id == job_id)) == JobStatus.RUNNING.value


def _count(s: Session, job_id: uuid.UUID, done: int, failed: int, items: int, duplicate: int) -> None:
    s.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            photos_done=Job.photos_done + done,
            photos_failed=Job.photos_failed + failed,
            photos_duplicate=Job.photos_duplicate + duplicate,
            items_found=Job.items_found + items,
            updated_at=utcnow(),
        )
    )


def _finish(s: Session, job_id: uuid.UUID) -> str | None:
    """running -> its final status when every photo is done or failed (and its zip to go); the status, or None."""
    final = case(
        (Job.photos_failed == 0, JobStatus.SUCCEEDED.value),
        (Job.photos_done + Job.photos_duplicate > 0, JobStatus.PARTIALLY_SUCCEEDED.value),
        else_=JobStatus.FAILED.value,
    )
    res = s.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.RUNNING.value,
            Job.ingest_finished.is_(True),
            Job.photos_done + Job.photos_failed + Job.photos_duplicate >= Job.photos_total,
        )
        .values(status=final, finished_at=utcnow(), updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if not res.rowcount:
        return None
    retention.job_ended(s, job_id)
    return s.scalar(select(Job.status).where(Job.id == job_id))


def add_progress(s: Session, job_id: uuid.UUID, done: int = 0, failed: int = 0, items: int = 0, duplicate: int = 0) -> None:
    _count(s, job_id, done, failed, items, duplicate)
    webhooks.job_progressed(s, job_id)  # job.progress to the endpoints that opted in, at most every few seconds


def maybe_finish(s: Session, job_id: uuid.UUID) -> str | None:
    """Finish a running job whose every photo is done or failed; returns the final status if this call finished it."""
    ended = _finish(s, job_id)
    if ended is not None:
        webhooks.job_ended(s, job_id)
    return ended


def progress_and_finish(s: Session, job_id: uuid.UUID, done: int = 0, failed: int = 0, items: int = 0) -> str | None:
    """add_progress then maybe_finish as one transition, with one webhook write: the end event when
    these photos were the job's last (a progress event would only be dropped by it), else a
    progress event. Returns the final status if this call finished the job."""
    _count(s, job_id, done, failed, items, 0)
    ended = _finish(s, job_id)
    if ended is None:
        webhooks.job_progressed(s, job_id)
    else:
        webhooks.job_ended(s, job_id)
    return ended


def fail(s: Session, job_id: uuid.UUID, code: str, message: str) -> bool:
    """Fail an active job. Its photos still waiting are closed with the same code (and counted as
    failed): no worker will segment them, and their content hashes are free, so the same photos
    uploaded again are processed rather than called duplicates of photos that never got items."""
    from db.models import Photo, PhotoStatus

    now = utcnow()
    res = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(status=JobStatus.FAILED.value, error_code=code, error_message=message, finished_at=now, updated_at=now)
    )
    if not res.rowcount:
        return False
    retention.job_ended(s, job_id)
    closed = s.execute(
        update(Photo)
        .where(Photo.job_id == job_id, Photo.status == PhotoStatus.PENDING.value)
        .values(status=PhotoStatus.FAILED.value, error_code=code,
                error_message=f"the job failed before this photo was segmented: {message}"[:2000], processed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if closed:
        add_progress(s, job_id, failed=closed)
    webhooks.job_ended(s, job_id)
    return True


def cancel(s: Session, job_id: uuid.UUID) -> bool:
    """Cancel an active job; its photos still waiting are closed (code `cancelled`), so their
    content hashes are free for a later upload and no worker will segment them."""
    from db.models import Photo, PhotoStatus

    now = utcnow()
    res = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(status=JobStatus.CANCELLED.value, finished_at=now, updated_at=now)
    )
    if not res.rowcount:
        return False
    retention.job_ended(s, job_id)
    s.execute(
        update(Photo)
        .where(Photo.job_id == job_id, Photo.status == PhotoStatus.PENDING.value)
        .values(status=PhotoStatus.FAILED.value, error_code="cancelled", error_message="the job was cancelled", processed_at=now)
    )
    webhooks.job_ended(s, job_id)
    return True



# Failures a second try cannot mend: the stored photo is gone or cannot be decoded. Entries refused at
# ingest (not an image, too many pixels, ...) have no stored photo and are never retried either.
PERMANENT_PHOTO_ERRORS = ("photo_missing", "unreadable_image")
RETRYABLE_JOB_STATES = (JobStatus.FAILED.value, JobStatus.PARTIALLY_SUCCEEDED.value, JobStatus.CANCELLED.value)


class NotRetryable(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _retryable_photos(job_id: uuid.UUID):
    from db.models import Photo, PhotoStatus

    return select(Photo.id, Photo.sha256).where(
        Photo.job_id == job_id, Photo.status == PhotoStatus.FAILED.value, Photo.storage_key.is_not(None),
        Photo.error_code.is_(None) | Photo.error_code.not_in(PERMANENT_PHOTO_ERRORS))


# Job failures a retry would meet again: the zip itself is refused, or gone.
PERMANENT_JOB_ERRORS = ("bad_zip", "too_many_entries", "upload_missing", "no_images")


def retryable(s: Session, job: Job, zip_available: bool) -> bool:
    """Whether POST /v1/jobs/<id>/retry would run: the rest of a zip not read to its end while the zip
    is still kept (`zip_available`), or photos to run again."""
    if job.status not in RETRYABLE_JOB_STATES or job.error_code in PERMANENT_JOB_ERRORS:
        return False
    if not job.ingest_finished:
        return zip_available
    return s.scalar(select(_retryable_photos(job.id).exists())) or False


def retry(s: Session, job_id: uuid.UUID, zip_available: bool) -> int:
    """Ended job -> queued again, as the same job, with only its photos that failed for a transient
    reason (segmentation gave up, the job failed or was cancelled before they were segmented) made
    pending again; the ingest task then re-sends them (a second ingest of a job sends its pending
    photos, and reads the rest of the zip if the first never got to its end). Returns how many photos
    go again. A photo whose bytes are now another live photo of the user's (uploaded again meanwhile)
    becomes a duplicate of it instead. The counters are recounted from the photos, so a photo is never
    counted twice. Raises NotRetryable (nothing changed) when there is nothing to do."""
    from db.models import Photo, PhotoStatus

    job = s.scalar(select(Job).where(Job.id == job_id).with_for_update())
    if job is None:
        raise NotRetryable("not_found", "no such job")
    if job.status in ACTIVE:
        raise NotRetryable("job_active", f"the job is still {job.status}")
    if job.status not in RETRYABLE_JOB_STATES:
        raise NotRetryable("nothing_to_retry", f"the job {job.status}: nothing failed")
    if job.error_code in PERMANENT_JOB_ERRORS:
        raise NotRetryable("nothing_to_retry", f"the job failed ({job.error_code}) for a reason a retry cannot "
                                               f"mend: upload again")
    if not job.ingest_finished and not zip_available:
        raise NotRetryable("upload_gone", "the zip was not read to its end and is no longer kept: upload it again")
    rows = s.execute(_retryable_photos(job_id).order_by(Photo.entry_index)).all()
    if not rows and job.ingest_finished:
        raise NotRetryable("nothing_to_retry", "no photo of this job failed for a reason a retry can mend")
    shas = {sha for _, sha in rows if sha}
    live = dict(s.execute(
        select(Photo.sha256, Photo.id).where(Photo.user_id == job.user_id, Photo.sha256.in_(shas),
                                             Photo.status.in_([PhotoStatus.PENDING.value, PhotoStatus.DONE.value]))
    ).all()) if shas else {}
    now = utcnow()
    again = []
    for pid, sha in rows:
        original = live.get(sha) if sha else None
        if original is not None:
            s.execute(update(Photo).where(Photo.id == pid).values(
                status=PhotoStatus.DUPLICATE.value, duplicate_of=original, error_code=None, error_message=None,
                processed_at=now))
            continue
        if sha:
            live[sha] = pid  # a second failed copy of these bytes in this job is a duplicate of this one
        again.append(pid)
    if again:
        s.execute(update(Photo).where(Photo.id.in_(again)).values(
            status=PhotoStatus.PENDING.value, error_code=None, error_message=None, processed_at=None)
            .execution_options(synchronize_session=False))
    s.execute(update(Job).where(Job.id == job_id).values(
        status=JobStatus.QUEUED.value, started_at=None, finished_at=None, updated_at=now,
        error_code=None, error_message=None, **jobcounts.recount(s, job_id),
    ).execution_options(synchronize_session=False))
    return len(again)


def stale(s: Session, older_than: float) -> list[uuid.UUID]:
    """Jobs queued or running that have not moved for `older_than` seconds (the reaper's candidates)."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    return list(s.scalars(select(Job.id).where(Job.status.in_(ACTIVE), Job.updated_at < cutoff)))


def touch(s: Session, job_id: uuid.UUID) -> None:
    """The job moved now (the reaper re-sent its work): not a candidate again for `stale_after`."""
    s.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow()))
