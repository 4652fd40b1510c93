"""The job as clients see it: one serializer for GET /v1/jobs/<id> (api.serializers.job_body adds
its pace, errors and duplicates) and the webhooks' events (db.webhooks.event_body adds its error).
`job`: a row of the jobs table (an ORM object or a Core row)."""
from __future__ import annotations

from datetime import datetime, timezone

from db.models import JobStatus


def utc(v: datetime) -> datetime:
    if v.tzinfo is None:  # SQLite hands back naive values; they were written as UTC
        v = v.replace(tzinfo=timezone.utc)
    return v.astimezone(timezone.utc)


def iso(v: datetime | None) -> str | None:
    return None if v is None else utc(v).isoformat().replace("+00:00", "Z")


def processed(job) -> int:
    return job.photos_done + job.photos_failed + job.photos_duplicate


def job_summary(job) -> dict:
    """id, status, times, upload and progress (with its percent), in the documented order."""
    if job.status in (JobStatus.SUCCEEDED.value, JobStatus.PARTIALLY_SUCCEEDED.value):
        percent = 100.0
    else:
        percent = round(100.0 * processed(job) / job.photos_total, 1) if job.photos_total else 0.0
    return {
        "id": str(job.id),
        "status": job.status,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "upload": {"name": job.upload_name, "bytes": job.upload_bytes},
        "progress": {"photos_total": job.photos_total, "photos_done": job.photos_done,
                     "photos_failed": job.photos_failed, "photos_duplicate": job.photos_duplicate,
                     "items_found": job.items_found, "percent": percent},
    }


def job_links(job) -> dict:
    return {"self": f"/v1/jobs/{job.id}", "items": f"/v1/items?job_id={job.id}"}
