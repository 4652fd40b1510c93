"""A user's stored bytes, as WARDROBE_MAX_STORED_BYTES counts them: photos (and their originals),
cut-outs, the zips of uploads still kept, and succeeded exports' zips.

Photos and cut-outs are many rows, so their bytes are kept in `users.stored_bytes`, moved in the same
transaction as the rows that name them (a photo's row at ingest, a batch of items, a delete). At ingest
the move is a conditional UPDATE (`reserve`): it takes the user's row lock, so two jobs of one user
cannot both pass the check with the last free bytes. Each row keeps its own size (photos.stored_bytes,
items.cutout_bytes), so a delete gives back exactly what its rows took, and `recount` can rebuild the
figure from the rows. Zips of uploads and exports are few per user and kept for a while only: they are
summed from their rows when the figure is read (`used`).

Lock order: a job's row, then its photos, then the user's row last (db.items, db.retention).
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, true, update
from sqlalchemy.orm import Session

from db.models import Export, ExportStatus, Item, Job, JobStatus, Photo, User, utcnow

ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
RETRY_KEPT = (JobStatus.FAILED.value, JobStatus.CANCELLED.value)  # ended before the zip was read to its end


def zip_retention(status: str, ingest_finished: bool, upload_retention: int, retry_retention: int) -> int:
    """Seconds an ended job's zip is kept after it ended (-1: for ever). A job that failed or was
    cancelled before its zip was read to its end keeps it at least `retry_retention`: a retry reads the rest."""
    if status in RETRY_KEPT and not ingest_finished:
        if upload_retention < 0 or retry_retention < 0:
            return -1
        return max(upload_retention, retry_retention)
    return upload_retention


def zip_kept(status: str, finished_at, ingest_finished: bool, settings, now: datetime) -> bool:
    """Whether a job's zip is still to be kept: while the job is going, then for its retention."""
    if status in ACTIVE:
        return True
    retention = zip_retention(status, ingest_finished, settings.upload_retention, settings.upload_retry_retention)
    if retention < 0:
        return True
    if finished_at is None:
        return False
    if finished_at.tzinfo is None:
        finished_at = finished_at.replace(tzinfo=now.tzinfo)
    return (now - finished_at).total_seconds() < retention


def _kept_zips(settings, now: datetime):
    """The same rule as zip_kept, as SQL over jobs."""
    def within(retention: int):
        if retention < 0:
            return true()
        return Job.finished_at > now - timedelta(seconds=retention)

    retry = zip_retention(JobStatus.FAILED.value, False, settings.upload_retention, settings.upload_retry_retention)
    return or_(Job.status.in_(ACTIVE),
               and_(Job.status.in_(RETRY_KEPT), Job.ingest_finished.is_(False), within(retry)),
               within(settings.upload_retention))


def zip_bytes(s: Session, user_id: uuid.UUID, settings) -> int:
    return s.scalar(select(func.coalesce(func.sum(Job.upload_bytes), 0))
                    .where(Job.user_id == user_id, _kept_zips(settings, utcnow()))) or 0


def export_bytes(s: Session, user_id: uuid.UUID) -> int:
    """Succeeded exports' zips (an export in the making is counted when it is stored)."""
    return s.scalar(select(func.coalesce(func.sum(Export.size_bytes), 0))
                    .where(Export.user_id == user_id, Export.status == ExportStatus.SUCCEEDED.value)) or 0


def used(s: Session, user_id: uuid.UUID, settings) -> int:
    """Every byte the user has stored now."""
    photos = s.scalar(select(User.stored_bytes).where(User.id == user_id)) or 0
    return photos + zip_bytes(s, user_id, settings) + export_bytes(s, user_id)


def add(s: Session, user_id: uuid.UUID, nbytes: int) -> None:
    """Photos or cut-outs stored (positive) or deleted (negative), in the transaction of their rows."""
    if nbytes:
        s.execute(update(User).where(User.id == user_id).values(stored_bytes=User.stored_bytes + nbytes))


def reserve(s: Session, user_id: uuid.UUID, nbytes: int, settings) -> bool:
    """Count `nbytes` more for the user if they stay within WARDROBE_MAX_STORED_BYTES (0: no limit);
    False (nothing counted) when they would not."""
    if settings.max_stored_bytes <= 0:
        add(s, user_id, nbytes)
        return True
    room = settings.max_stored_bytes - zip_bytes(s, user_id, settings) - export_bytes(s, user_id)
    res = s.execute(update(User).where(User.id == user_id, User.stored_bytes + nbytes <= room)
                    .values(stored_bytes=User.stored_bytes + nbytes))
    return bool(res.rowcount)


def refused_message(settings) -> str:
    return (f"your stored photos, cut-outs, uploads and exports would pass the limit of {settings.max_stored_bytes} "
            f"bytes (WARDROBE_MAX_STORED_BYTES): delete a job's data (DELETE /v1/jobs/<id>/data) to make room")


def recount(s: Session, user_id: uuid.UUID) -> int:
    """Set users.stored_bytes from the rows' own sizes; returns it. The user's row is locked first, so
    no transaction that moves the figure is half-way meanwhile (each moves it last, under that lock)."""
    s.scalar(select(User.id).where(User.id == user_id).with_for_update())
    photos = s.scalar(select(func.coalesce(func.sum(Photo.stored_bytes), 0)).where(Photo.user_id == user_id)) or 0
    items = s.scalar(select(func.coalesce(func.sum(Item.cutout_bytes), 0)).where(Item.user_id == user_id)) or 0
    s.execute(update(User).where(User.id == user_id).values(stored_bytes=photos + items))
    return photos + items
