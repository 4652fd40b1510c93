"""A job's photo counters recounted from its photos' rows: after a retry makes photos pending again,
and after the user deletes a photo of the job (db.jobstate, db.retention)."""
from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Photo, PhotoStatus


def recount(s: Session, job_id: uuid.UUID) -> dict[str, int]:
    """The job's photos_done, photos_failed and photos_duplicate as its photos' rows stand now."""
    counts = dict(s.execute(select(Photo.status, func.count()).where(Photo.job_id == job_id)
                            .group_by(Photo.status)).all())
    return dict(photos_done=counts.get(PhotoStatus.DONE.value, 0),
                photos_failed=counts.get(PhotoStatus.FAILED.value, 0),
                photos_duplicate=counts.get(PhotoStatus.DUPLICATE.value, 0))
