"""Job state transitions. Each one is a single conditional UPDATE, so concurrent
workers and a second delivery of the same task can never count a photo twice
or finish a job twice."""
from __future__ import annotations

import uuid

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from db.models import FINAL_STATUSES, Job, JobStatus, utcnow

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


def add_progress(s: Session, job_id: uuid.UUID, done: int = 0, failed: int = 0, items: int = 0) -> None:
    s.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            photos_done=Job.photos_done + done,
            photos_failed=Job.photos_failed + failed,
            items_found=Job.items_found + items,
            updated_at=utcnow(),
        )
    )


def maybe_finish(s: Session, job_id: uuid.UUID) -> str | None:
    """Finish a running job whose every photo is done or failed; returns the final status if this call finished it."""
    final = case(
        (Job.photos_failed == 0, JobStatus.SUCCEEDED.value),
        (Job.photos_done > 0, JobStatus.PARTIALLY_SUCCEEDED.value),
        else_=JobStatus.FAILED.value,
    )
    res = s.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.RUNNING.value,
            Job.ingest_finished.is_(True),
            Job.photos_done + Job.photos_failed >= Job.photos_total,
        )
        .values(status=final, finished_at=utcnow(), updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if res.rowcount:
        return s.scalar(select(Job.status).where(Job.id == job_id))
    return None


def fail(s: Session, job_id: uuid.UUID, code: str, message: str) -> bool:
    now = utcnow()
    res = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(status=JobStatus.FAILED.value, error_code=code, error_message=message, finished_at=now, updated_at=now)
    )
    return bool(res.rowcount)


def cancel(s: Session, job_id: uuid.UUID) -> bool:
    now = utcnow()
    res = s.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(status=JobStatus.CANCELLED.value, finished_at=now, updated_at=now)
    )
    return bool(res.rowcount)


def is_final(status: str) -> bool:
    return JobStatus(status) in FINAL_STATUSES
