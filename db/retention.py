"""What is kept, and deleting it: an ended job's zip, a photo, a job's data, a user.

Rows go here, in one transaction, which records what they named (db.events: ObjectsUnreferenced,
UserDeleted); the service layer deletes those objects after the commit (services.dispatch). An object
whose deletion fails (storage down) is named by no row any more: the sweeper (services.sweeper) removes
it after its grace period, so a failed delete never leaves data reachable, only bytes for a while.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.objects import keys
from db import events, jobcounts, quota
from db.models import Item, Job, JobStatus, Photo, User

ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class StillRunning(Exception):
    """The job is queued or running: its data is still being written (cancel it first)."""


# --- the zip of an ended job --------------------------------------------------------------------------------------

def job_ended(s: Session, job_id: uuid.UUID) -> None:
    """Called by each transition that ends a job (db.jobstate): a JobEnded event, which deletes the
    job's zip once the transaction commits when its retention is 0 (services.dispatch; db.quota.zip_retention:
    WARDROBE_UPLOAD_RETENTION, or WARDROBE_UPLOAD_RETRY_RETENTION for a job cut short). Later ones are the sweeper's."""
    row = s.execute(select(Job.status, Job.ingest_finished, Job.upload_key).where(Job.id == job_id)).first()
    if row is not None:
        events.record(s, events.JobEnded(job_id, row.status, row.ingest_finished, row.upload_key))


# --- deleting ----------------------------------------------------------------------------------------------------

@dataclass
class Purged:
    """The rows deleted (their objects: the events recorded beside them)."""

    jobs: int = 0
    photos: int = 0
    items: int = 0


def _photo_keys(user_id: uuid.UUID, rows) -> list[str]:
    out = []
    for pid, storage_key in rows:
        if storage_key:
            out += [storage_key, keys.original(user_id, pid)]  # the original exists only with KEEP_ORIGINALS
    return out


def purge_photo(s: Session, user_id: uuid.UUID, photo_id: uuid.UUID) -> Purged | None:
    """Delete one of the user's photos with its items (the rows; their objects after the commit).
    None when the user has no such photo; StillRunning while its job is."""
    row = s.execute(select(Photo.storage_key, Photo.entry_index, Photo.stored_bytes, Job).join(Job, Job.id == Photo.job_id)
                    .where(Photo.id == photo_id, Photo.user_id == user_id).with_for_update(of=Job)).first()
    if row is None:
        return None
    job = row.Job
    if job.status in ACTIVE:
        raise StillRunning()
    out = Purged(photos=1)
    cutouts = s.execute(select(Item.cutout_key, Item.cutout_bytes).where(Item.photo_id == photo_id)).all()
    out.items = len(cutouts)
    events.record(s, events.ObjectsUnreferenced(
        tuple(_photo_keys(user_id, [(photo_id, row.storage_key)]) + [k for k, _ in cutouts])))
    s.execute(delete(Photo).where(Photo.id == photo_id))  # items go with it (ON DELETE CASCADE)
    quota.add(s, user_id, -((row.stored_bytes or 0) + sum(n or 0 for _, n in cutouts)))
    # The photo leaves its job: out of its counts (a retry would otherwise wait for it for ever) and
    # remembered by its zip position (a retry that reads the rest of the zip skips it).
    job.deleted_entries = [*job.deleted_entries, row.entry_index]
    job.photos_total = max(0, job.photos_total - 1)
    job.items_found = max(0, job.items_found - out.items)
    for name, value in jobcounts.recount(s, job.id).items():
        setattr(job, name, value)
    return out


def purge_job(s: Session, user_id: uuid.UUID, job_id: uuid.UUID) -> Purged | None:
    """Delete an ended job of the user with everything it brought: its photos, their items and
    cut-outs, its zip, and the job itself. None when the user has no such job; StillRunning while it is."""
    job = s.scalar(select(Job).where(Job.id == job_id, Job.user_id == user_id).with_for_update())
    if job is None:
        return None
    if job.status in ACTIVE:
        raise StillRunning()
    photos = s.execute(select(Photo.id, Photo.storage_key, Photo.stored_bytes).where(Photo.job_id == job_id)).all()
    cutouts = s.execute(select(Item.cutout_key, Item.cutout_bytes).where(Item.job_id == job_id)).all()
    out = Purged(jobs=1, photos=len(photos), items=len(cutouts))
    events.record(s, events.ObjectsUnreferenced(
        tuple(_photo_keys(user_id, [(p, k) for p, k, _ in photos]) + [k for k, _ in cutouts] + [job.upload_key])))
    s.execute(delete(Job).where(Job.id == job_id))  # photos, items, idempotency keys: ON DELETE CASCADE
    quota.add(s, user_id, -(sum(n or 0 for _, _, n in photos) + sum(n or 0 for _, n in cutouts)))
    return out


def purge_user(s: Session, user_id: uuid.UUID) -> Purged:
    """Delete a user and everything of theirs: tokens, jobs (active ones too: their workers then find
    nothing to write to), photos, items. Their objects: everything under their prefix, after the commit."""
    out = Purged(jobs=s.query(Job).filter(Job.user_id == user_id).count(),
                 photos=s.query(Photo).filter(Photo.user_id == user_id).count(),
                 items=s.query(Item).filter(Item.user_id == user_id).count())
    s.execute(delete(User).where(User.id == user_id))
    events.record(s, events.UserDeleted(user_id))
    return out
