"""Job state transitions. Each one is a single conditional UPDATE, so concurrent
workers and a second delivery of the same task can never count a photo twice
or finish a job twice. A transition that ends a job has its zip deleted once the session commits
(db.retention, with WARDROBE_UPLOAD_RETENTION 0)."""
from __future__ import annotations

import uuid

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from db import retention, webhooks
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


def add_progress(s: Session, job_id: uuid.UUID, done: int = 0, failed: int = 0, items: int = 0, duplicate: int = 0) -> None:
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
    webhooks.job_progressed(s, job_id)  # job.progress to the endpoints that opted in, at most every few seconds


def maybe_finish(s: Session, job_id: uuid.UUID) -> str | None:
    """Finish a running job whose every photo is done or failed; returns the final status if this call finished it."""
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
    if res.rowcount:
        retention.job_ended(s, job_id)
        webhooks.job_ended(s, job_id)
        return s.scalar(select(Job.status).where(Job.id == job_id))
    return None


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

