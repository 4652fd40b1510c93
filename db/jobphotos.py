"""A job's photos as the API shows them: those in one state (the job's errors and duplicates) and a
page in zip order (GET /v1/jobs/<id>/photos)."""
from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Photo, PhotoStatus


def in_state(s: Session, job_id: uuid.UUID, status: PhotoStatus, limit: int) -> list[Photo]:
    """The job's photos in one state, in zip order, at most `limit`."""
    return list(s.scalars(select(Photo).where(Photo.job_id == job_id, Photo.status == status.value)
                          .order_by(Photo.entry_index).limit(limit)))


def page(s: Session, job_id: uuid.UUID, after: int | None, limit: int) -> list[Photo]:
    """The job's photos in zip order after the entry at position `after` (None: from the first)."""
    q = select(Photo).where(Photo.job_id == job_id)
    if after is not None:
        q = q.where(Photo.entry_index > after)
    return list(s.scalars(q.order_by(Photo.entry_index).limit(limit)))
