"""A job's counters kept to its rows: photo counters recounted after a retry makes photos pending
again and after the user deletes a photo of the job (db.jobstate, db.retention); items_found
lowered when the user deletes one of its items (api.items)."""
from __future__ import annotations

import uuid

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from db.models import Job, Photo, PhotoStatus


def recount(s: Session, job_id: uuid.UUID) -> dict[str, int]:
    """The job's photos_done, photos_failed and photos_duplicate as its photos' rows stand now."""
    counts = dict(s.execute(select(Photo.status, func.count()).where(Photo.job_id == job_id)
                            .group_by(Photo.status)).all())
    return dict(photos_done=counts.get(PhotoStatus.DONE.value, 0),
                photos_failed=counts.get(PhotoStatus.FAILED.value, 0),
                photos_duplicate=counts.get(PhotoStatus.DUPLICATE.value, 0))


def item_deleted(s: Session, job_id: uuid.UUID) -> None:
    """One of the job's items is being deleted: one fewer found (in SQL, so that a worker adding the
    job's other photos' items at the same time loses nothing)."""
    s.execute(update(Job).where(Job.id == job_id).values(items_found=case((Job.items_found > 0, Job.items_found - 1), else_=0)))


def by_status(s: Session) -> list[tuple[str, int]]:
    """How many jobs are in each status (the API's /metrics)."""
    return [(status, n) for status, n in s.execute(select(Job.status, func.count()).group_by(Job.status))]
