"""The photo side of a job, as the worker moves it: a job taken up by ingest, each entry's row
(stored, failed or a duplicate), photos failed in bulk, a job's ingest finished. Job-wide steps go
through db.jobstate; the items and the photo's `done` through db.items.commit_photos.

Every write is safe twice (at-least-once delivery): an entry's row is keyed by its position in the
zip, and a transition only moves a photo that is still pending."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from core import metrics
from db import jobstate, quota
from db.models import Job, Photo, PhotoStatus, utcnow
from db.session import session_scope


@dataclass
class IngestStart:
    """What ingest needs of its job when it takes it up."""

    user_id: uuid.UUID
    upload_key: str
    pending: list[uuid.UUID]  # photos a first delivery stored but may not have sent to segment
    seen: set[int]  # entries recorded already
    ingested: bool  # a first delivery got to the end of the zip


def begin_ingest(job_id: uuid.UUID) -> IngestStart | None:
    """queued -> running, and what a second delivery finds done; None when the job is gone,
    cancelled or finished."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None or job.status not in jobstate.ACTIVE:
            return None
        jobstate.mark_running(s, job_id)
        pending = list(s.scalars(select(Photo.id).where(Photo.job_id == job_id,
                                                         Photo.status == PhotoStatus.PENDING.value)))
        seen = set(s.scalars(select(Photo.entry_index).where(Photo.job_id == job_id))) | set(job.deleted_entries)
        return IngestStart(job.user_id, job.upload_key, pending, seen, job.ingest_finished)


def job_missing(job_id: uuid.UUID) -> bool:
    with session_scope() as s:
        return s.get(Job, job_id) is None


def job_active(job_id: uuid.UUID) -> bool:
    with session_scope() as s:
        return s.scalar(select(Job.status).where(Job.id == job_id)) in jobstate.ACTIVE


def fail_job(job_id: uuid.UUID, code: str, message: str) -> None:
    with session_scope() as s:
        jobstate.fail(s, job_id, code, message)


def maybe_finish(job_id: uuid.UUID) -> None:
    with session_scope() as s:
        jobstate.maybe_finish(s, job_id)


def set_photos_total(job_id: uuid.UUID, entries: int) -> None:
    """The job's photos: the zip's image entries less those the user deleted."""
    with session_scope() as s:
        deleted = s.scalar(select(Job.deleted_entries).where(Job.id == job_id)) or []
        s.execute(update(Job).where(Job.id == job_id).values(photos_total=entries - len(deleted),
                                                             updated_at=utcnow()))


def finish_ingest(job_id: uuid.UUID, entries: int) -> None:
    """The whole zip is read: the job ends when its photos are all through, or fails if it held none."""
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(ingest_finished=True, updated_at=utcnow()))
        s.flush()
        if not entries:
            jobstate.fail(s, job_id, "no_images", "the zip holds no image files")
        else:
            jobstate.maybe_finish(s, job_id)


class JobEnded(Exception):
    """The job was cancelled, failed or deleted meanwhile: nothing was written, and its ingest stops."""


def _still_active(s, job_id: uuid.UUID) -> None:
    """After a row of the job is written (so that on SQLite this transaction already holds the write
    lock, and on PostgreSQL the share lock waits for a cancel under way): raise JobEnded, undoing the
    row, unless the job is still going. A cancel thus never has rows added behind it."""
    s.flush()
    if s.scalar(select(Job.status).where(Job.id == job_id).with_for_update(read=True)) not in jobstate.ACTIVE:
        raise JobEnded()


def add_stored_photo(photo_id: uuid.UUID, job_id: uuid.UUID, user_id: uuid.UUID, index: int, name: str, key: str,
                     digest: str, size: tuple[int, int, int, int], nbytes: int, settings) -> bool:
    """The row of a photo whose `nbytes` are stored (pending segmentation), counted in the user's stored
    bytes; False when they would pass the user's quota (nothing written). Raises IntegrityError when the
    entry, or the user's photo with these bytes, has a row already; JobEnded when the job is no longer going."""
    with session_scope() as s:
        s.add(Photo(id=photo_id, job_id=job_id, user_id=user_id, entry_index=index, entry_name=name,
                    storage_key=key, sha256=digest, width=size[0], height=size[1],
                    original_width=size[2], original_height=size[3], stored_bytes=nbytes))
        _still_active(s, job_id)
        if not quota.reserve(s, user_id, nbytes, settings):  # the user's row last
            s.rollback()
            return False
    return True


def record_failed_entry(job_id, user_id, index, name, code, message) -> None:
    """An entry that will not be a photo. Raises JobEnded when the job is no longer going."""
    try:
        with session_scope() as s:
            s.add(Photo(job_id=job_id, user_id=user_id, entry_index=index, entry_name=name,
                        status=PhotoStatus.FAILED.value, error_code=code, error_message=message[:2000],
                        processed_at=utcnow()))
            _still_active(s, job_id)
            jobstate.add_progress(s, job_id, failed=1)
        metrics.PHOTOS.labels("failed", code).inc()
    except IntegrityError:  # another delivery of this task recorded the entry first, or the job is gone
        if job_missing(job_id):
            raise JobEnded() from None


def live_photo(user_id: uuid.UUID, digest: str) -> uuid.UUID | None:
    """The user's photo with these bytes that counts as the original: one segmented (done), or one
    still waiting in a job that is still going. A photo left waiting by a job that ended (failed
    before this was closed with it) never gets items: it is closed here, so the hash is free."""
    with session_scope() as s:
        row = s.execute(select(Photo.id, Photo.status, Photo.job_id, Job.status).join(Job, Job.id == Photo.job_id)
                        .where(Photo.user_id == user_id, Photo.sha256 == digest,
                               Photo.status.in_([PhotoStatus.PENDING.value, PhotoStatus.DONE.value]))).first()
        if row is None:
            return None
        pid, status, job_id, job_status = row
        if status == PhotoStatus.DONE.value or job_status in jobstate.ACTIVE:
            return pid
        closed = s.execute(update(Photo).where(Photo.id == pid, Photo.status == PhotoStatus.PENDING.value)
                           .values(status=PhotoStatus.FAILED.value, error_code="job_ended",
                                   error_message=f"the job ended ({job_status}) before this photo was segmented",
                                   processed_at=utcnow())).rowcount
        if closed:
            jobstate.add_progress(s, job_id, failed=closed)
            metrics.PHOTOS.labels("failed", "job_ended").inc(closed)
        return None


def entry_recorded(job_id: uuid.UUID, index: int) -> bool:
    with session_scope() as s:
        return s.scalar(select(Photo.id).where(Photo.job_id == job_id, Photo.entry_index == index)) is not None


def record_duplicate(job_id, user_id, index, name, digest, original) -> None:
    """Raises JobEnded when the job is no longer going."""
    try:
        with session_scope() as s:
            s.add(Photo(job_id=job_id, user_id=user_id, entry_index=index, entry_name=name, sha256=digest,
                        status=PhotoStatus.DUPLICATE.value, duplicate_of=original, processed_at=utcnow()))
            _still_active(s, job_id)
            jobstate.add_progress(s, job_id, duplicate=1)
        metrics.PHOTOS.labels("duplicate", "").inc()
    except IntegrityError:  # this entry was recorded by another delivery of the task, or the job is gone
        if job_missing(job_id):
            raise JobEnded() from None


def pending_photos(job_id: uuid.UUID, photo_ids: Sequence[uuid.UUID]) -> list | None:
    """(id, user id, storage key) of the pending photos among photo_ids; None when the job has ended."""
    with session_scope() as s:
        if s.scalar(select(Job.status).where(Job.id == job_id)) not in jobstate.ACTIVE:
            return None
        return s.execute(
            select(Photo.id, Photo.user_id, Photo.storage_key)
            .where(Photo.id.in_(photo_ids), Photo.job_id == job_id, Photo.status == PhotoStatus.PENDING.value)
        ).all()


def mark_photos_failed(job_id: uuid.UUID, photo_ids: Sequence[uuid.UUID], code: str, message: str) -> None:
    ids = list(photo_ids)
    if not ids:
        return
    with session_scope() as s:
        s.scalar(select(Job.id).where(Job.id == job_id).with_for_update())
        res = s.execute(
            update(Photo)
            .where(Photo.id.in_(ids), Photo.status == PhotoStatus.PENDING.value)
            .values(status=PhotoStatus.FAILED.value, error_code=code, error_message=message[:2000], processed_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if res.rowcount:
            jobstate.progress_and_finish(s, job_id, failed=res.rowcount)
    if res.rowcount:
        metrics.PHOTOS.labels("failed", code).inc(res.rowcount)
