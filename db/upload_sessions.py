"""Resumable upload sessions (api/resumable.py): finding one of a user's, counting their open ones,
what they hold in storage, and the expired ones (their bytes deleted by services.sweeper).

A session holds bytes until it completes: S3 parts under its multipart upload (or, once assembled,
the whole object at its job's key), or a partial file under `users/<user>/incoming/` on folder storage.
"""
from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import UploadSession, UploadSessionStatus, utcnow
from db.session import lock_row

OPEN = UploadSessionStatus.OPEN.value
ASSEMBLED = UploadSessionStatus.ASSEMBLED.value
COMPLETED = UploadSessionStatus.COMPLETED.value
UNFINISHED = (OPEN, ASSEMBLED)
BATCH = 200


def part_count(sess: UploadSession) -> int:
    """S3 mode: how many parts the upload takes."""
    return max(1, math.ceil(sess.size / sess.part_size))


def part_length(sess: UploadSession, number: int) -> int:
    """Every part is part_size long but the last, which has the rest."""
    return sess.part_size if number < part_count(sess) else sess.size - sess.part_size * (part_count(sess) - 1)


def seconds_left(sess: UploadSession) -> float:
    """Until the session expires (SQLite hands back naive datetimes: they were written as UTC)."""
    expires = sess.expires_at if sess.expires_at.tzinfo else sess.expires_at.replace(tzinfo=timezone.utc)
    return (expires - utcnow()).total_seconds()


def find(s: Session, user_id: uuid.UUID, session_id: uuid.UUID, lock: bool = False) -> UploadSession | None:
    """The user's session, None when there is none (another user's, or expired: the sweeper's now).
    `lock`: held until the transaction ends (two completes at once: the second waits, then finds the job)."""
    if lock:
        lock_row(s, UploadSession, session_id)
    q = select(UploadSession).where(UploadSession.id == session_id, UploadSession.user_id == user_id,
                                    UploadSession.expires_at > utcnow())
    return s.scalar(q)


def open_for(s: Session, user_id: uuid.UUID, size: int, sha256: str, mode: str) -> UploadSession | None:
    """The user's unfinished, unexpired session for these very bytes (size and declared SHA-256), if any."""
    return s.scalar(select(UploadSession).where(
        UploadSession.user_id == user_id, UploadSession.size == size, UploadSession.sha256 == sha256,
        UploadSession.mode == mode, UploadSession.status.in_(UNFINISHED), UploadSession.expires_at > utcnow())
        .order_by(UploadSession.created_at.desc()).limit(1))


def open_totals(s: Session, user_id: uuid.UUID) -> tuple[int, int]:
    """How many unfinished, unexpired sessions the user has, and the bytes they declared."""
    n, size = s.execute(select(func.count(), func.coalesce(func.sum(UploadSession.size), 0))
                        .where(UploadSession.user_id == user_id, UploadSession.status.in_(UNFINISHED),
                               UploadSession.expires_at > utcnow())).one()
    return int(n), int(size)


def expiring(s: Session, now: datetime) -> list[UploadSession]:
    """A batch of sessions past their expiry, locked until the transaction ends, skipping rows a
    complete holds: one that began just before the expiry finishes (or finds the session expired)
    before the sweeper deletes its bytes; a later pass takes the row."""
    return list(s.scalars(select(UploadSession).where(UploadSession.expires_at <= now)
                          .order_by(UploadSession.expires_at).limit(BATCH).with_for_update(skip_locked=True)))


def forget(s: Session, session_ids: list[uuid.UUID]) -> None:
    """Expired sessions whose bytes are gone: their rows go (a completed one's purpose, answering a
    repeated complete with its job, ends with it)."""
    if session_ids:
        s.execute(delete(UploadSession).where(UploadSession.id.in_(session_ids)))


def keys_of_jobs(s: Session, job_ids: list[uuid.UUID]) -> set[str]:
    """The upload keys that unfinished sessions planned for these job ids (an assembled S3 object, no
    job yet). A completed session's zip is its job's: the job's retention decides, not the session."""
    return set(s.scalars(select(UploadSession.object_key).where(UploadSession.job_id.in_(job_ids),
                                                                UploadSession.status.in_(UNFINISHED))))


def keys_of_sessions(s: Session, session_ids: list[uuid.UUID]) -> set[str]:
    """The partial files (`incoming`) these sessions own."""
    return set(s.scalars(select(UploadSession.object_key).where(UploadSession.id.in_(session_ids))))


def multipart_keys(s: Session) -> set[str]:
    """Keys with a multipart upload a session still takes parts for: not stale, however old."""
    return set(s.scalars(select(UploadSession.object_key).where(UploadSession.multipart_id.is_not(None))))
