"""What a job's live progress stream reads (api/events.py): the job's row, and its items and failed
photos in the order they were stamped, from a point on."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from db.models import Item, ItemStatus, Photo, PhotoStatus


def _after(ts_col, id_col, since: datetime | None, skip: list[uuid.UUID]):
    """Stamped after `since` (None: from the first), less the ids in `skip`."""
    if since is None:
        return True
    cond = ts_col > since
    return and_(cond, id_col.not_in(skip)) if skip else cond


def items(s: Session, job_id: uuid.UUID, since: datetime | None, skip: list[uuid.UUID], limit: int) -> list[Item]:
    """The job's kept items stamped after `since` (created_at), oldest first, at most `limit`."""
    return list(s.scalars(select(Item).where(
        Item.job_id == job_id, Item.status == ItemStatus.OK.value, _after(Item.created_at, Item.id, since, skip))
        .order_by(Item.created_at, Item.id).limit(limit)))


def failed_photos(s: Session, job_id: uuid.UUID, since: datetime | None, skip: list[uuid.UUID],
                  limit: int) -> list[Photo]:
    """The job's photos that failed (not by its cancellation) after `since` (processed_at), oldest first."""
    return list(s.scalars(select(Photo).where(
        Photo.job_id == job_id, Photo.status == PhotoStatus.FAILED.value, Photo.processed_at.is_not(None),
        Photo.error_code.is_distinct_from("cancelled"), _after(Photo.processed_at, Photo.id, since, skip))
        .order_by(Photo.processed_at, Photo.id).limit(limit)))
