"""Jobs: poll one, list them, cancel, retry, delete (services.jobs)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from api import deps, formats
from api.bodies import accepted, full_job_body
from api.errors import ApiError
from api.paging import newest_first, page_limit
from api.serializers import job_body, photo_body
from db import jobphotos
from db.models import Job
from services import catalogue, jobs

bp = Blueprint("jobs", __name__)


@bp.get("/v1/jobs/<job_id>")
@deps.require_user
def get_job(job_id: str):
    return jsonify(full_job_body(deps.own(Job, job_id, "job")))


@bp.delete("/v1/jobs/<job_id>")
@deps.require_user
def cancel_job(job_id: str):
    job = deps.own(Job, job_id, "job")
    jobs.cancel(deps.ctx(), job)  # then its webhook events go out, and its zip (retention 0)
    return jsonify(full_job_body(job))


@bp.post("/v1/jobs/<job_id>/retry")
@deps.require_user
def retry_job(job_id: str):
    """Run an ended job's photos that failed for a transient reason again, as the same job (202). 409
    when it is still going, when nothing failed that a retry can mend, or when its zip was never read
    to the end and is no longer kept."""
    job = deps.own(Job, job_id, "job")
    again = jobs.retry(deps.ctx(), job)
    body = full_job_body(job)
    body["retried_photos"] = again
    return accepted(job, 202, body)


@bp.get("/v1/jobs")
@deps.require_user
def list_jobs():
    rows, next_cursor = newest_first(deps.db(), Job, request.args, deps.settings(), user_id=g.user_id)
    return jsonify({"jobs": [job_body(j) for j in rows], "next_cursor": next_cursor})


@bp.get("/v1/jobs/<job_id>/photos")
@deps.require_user
def list_job_photos(job_id: str):
    """The job's photos in zip order: entry name, state, stored size. `cursor` is the last entry's
    position in the zip, as returned in `next_cursor`."""
    job = deps.own(Job, job_id, "job")
    limit = page_limit(request.args, deps.settings())
    cursor = request.args.get("cursor")
    after = _zip_position(cursor) if cursor is not None else None
    rows = jobphotos.page(deps.db(), job.id, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"photos": [photo_body(p) for p in rows], "next_cursor": str(rows[-1].entry_index) if more else None}


def _zip_position(cursor: str) -> int:
    """A photos cursor: an entry's position in the zip, as the document states it (api/formats.py: up to
    nine digits, so that the int32 column can hold it; a larger number made the database refuse to bind
    it, a 500 before). Anything else is not one this API returned."""
    if not formats.matches(formats.ZIP_POSITION, cursor):
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API returned")
    return int(cursor)


@bp.delete("/v1/jobs/<job_id>/data")
@deps.require_user
def delete_job_data(job_id: str):
    """Delete an ended job with everything it brought: photos, items, cut-outs, the zip, and the job
    itself (204; the job is 404 afterwards). 409 while it is queued or running: cancel it first."""
    catalogue.purge_job(deps.ctx(), deps.parse_uuid(job_id, "job"))
    return "", 204
