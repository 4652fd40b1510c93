"""The rows an upload makes and counts (services.uploads): the user's lock while one is accepted, their
uploads in flight and in the last hour, the job an Idempotency-Key already made, the job row itself."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from db.models import Job
from db.jobstate import ACTIVE


def user_lock(s: Session, user_id: uuid.UUID) -> None:
    """Serialize one user's uploads from here to the commit (PostgreSQL; SQLite writes one at a time anyway)."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": (user_id.int >> 64) - (1 << 63)})


def in_flight(s: Session, user_id: uuid.UUID) -> int:
    """The user's jobs queued or running."""
    return s.scalar(select(func.count()).select_from(Job).where(Job.user_id == user_id, Job.status.in_(ACTIVE)))


def made_since(s: Session, user_id: uuid.UUID, since: datetime) -> int:
    return s.scalar(select(func.count()).select_from(Job).where(Job.user_id == user_id, Job.created_at > since))


def nth_made_since(s: Session, user_id: uuid.UUID, since: datetime, n: int) -> datetime:
    """When the user's n-th job (from 0, oldest first) after `since` was made."""
    return s.scalar(select(Job.created_at).where(Job.user_id == user_id, Job.created_at > since)
                    .order_by(Job.created_at).offset(n).limit(1))


def job_for_key(s: Session, user_id: uuid.UUID, idempotency_key: str) -> uuid.UUID | None:
    """The job an upload with this Idempotency-Key made, if any."""
    return s.scalar(select(Job.id).where(Job.user_id == user_id, Job.idempotency_key == idempotency_key))


def add_job(s: Session, job_id: uuid.UUID, user_id: uuid.UUID, key: str, name: str, size: int, sha: str,
            idempotency_key: str | None) -> Job:
    job = Job(id=job_id, user_id=user_id, upload_key=key, upload_name=name, upload_bytes=size,
              upload_sha256=sha, idempotency_key=idempotency_key)
    s.add(job)
    return job


def delete_job(s: Session, job_id: uuid.UUID) -> None:
    """Unmake a job that was never queued (a resumable upload's, which keeps its bytes to complete again)."""
    s.execute(delete(Job).where(Job.id == job_id))


def find_job(s: Session, job_id: uuid.UUID) -> Job | None:
    return s.get(Job, job_id)
