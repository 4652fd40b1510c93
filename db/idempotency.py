"""Idempotency-Key claims on uploads: one key, one payload, one job (POST /v1/uploads)."""
from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from db.models import IdempotencyKey, Job, utcnow

ABANDONED_CLAIM = timedelta(minutes=15)  # an accept that never finished (crashed API process)


class KeyReused(Exception):
    """The key was used for a different payload."""


class ClaimInProgress(Exception):
    """The first request with this key is still being accepted."""


def claim(s, user_id, key: str, sha: str) -> Job | None:
    """Claim an Idempotency-Key for this payload. Returns the existing job when the key
    was used for this same payload; raises ClaimInProgress while the first request is being
    accepted and KeyReused when the key was used for a different payload."""
    for _ in range(2):
        try:
            s.add(IdempotencyKey(user_id=user_id, key=key, request_sha256=sha))
            s.commit()
            return None
        except IntegrityError:
            s.rollback()
        row = s.scalar(select(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key))
        if row is None:
            continue  # released meanwhile: try again
        if row.request_sha256 != sha:
            raise KeyReused(key)
        if row.job_id is not None:
            return s.get(Job, row.job_id)
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=utcnow().tzinfo)
        if utcnow() - created > ABANDONED_CLAIM:
            s.execute(delete(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key,
                                                   IdempotencyKey.job_id.is_(None)))
            s.commit()
            continue
        raise ClaimInProgress(key)
    raise ClaimInProgress(key)


def attach_job(s, user_id, key: str, job_id: uuid.UUID) -> None:
    """The claim now names its job (in the job's own transaction)."""
    s.flush()
    s.execute(update(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
              .values(job_id=job_id))


def release(s, user_id, key: str) -> None:
    """A refused upload does not burn the key."""
    s.rollback()
    s.execute(delete(IdempotencyKey).where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key,
                                           IdempotencyKey.job_id.is_(None)))
    s.commit()


def forget_job(s, job_id: uuid.UUID) -> None:
    """A job that failed before it was queued gives its key back, so that the client's retry with it
    makes a new job rather than replaying this one."""
    s.execute(delete(IdempotencyKey).where(IdempotencyKey.job_id == job_id))
    s.execute(update(Job).where(Job.id == job_id).values(idempotency_key=None))
