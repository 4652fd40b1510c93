"""Jobs: poll one, list them."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request
from sqlalchemy import select

from api import deps
from api.errors import ApiError
from api.paging import newest_first, page_limit
from api.serializers import job_body, photo_body
from db import jobstate, quota, retention
from db.models import Job, Photo, PhotoStatus, utcnow
from services import dispatch

bp = Blueprint("jobs", __name__)
MAX_ERRORS = 500


def _own_job(job_id: str) -> Job:
    jid = deps.parse_uuid(job_id, "job")
    job = deps.db().scalar(select(Job).where(Job.id == jid, Job.user_id == g.user_id))
    if job is None:
        raise ApiError(404, "not_found", "no such job")
    return job


def _photos(job: Job, status: PhotoStatus, count: int) -> list[Photo]:
    """The job's photos in one state, in zip order (no query when the counter says none)."""
    if not count:
        return []
    return list(deps.db().scalars(
        select(Photo).where(Photo.job_id == job.id, Photo.status == status.value).order_by(Photo.entry_index).limit(MAX_ERRORS)))


def _zip_available(job: Job) -> bool:
    """Whether a retry could read the rest of the job's zip: kept by its retention (db.quota.zip_kept),
    and there (a zip deleted under an older rule, or by hand, is not)."""
    if job.ingest_finished:
        return True
    if not quota.zip_kept(job.status, job.finished_at, False, deps.settings(), utcnow()):
        return False
    return deps.storage().exists(job.upload_key)  # (storage down: StorageError's handler answers 503)


def full_job_body(job: Job) -> dict:
    body = job_body(job, _photos(job, PhotoStatus.FAILED, job.photos_failed),
                    _photos(job, PhotoStatus.DUPLICATE, job.photos_duplicate))
    # POST /v1/jobs/<id>/retry would run (the zip is only looked for when the retry needs it)
    body["retryable"] = (job.status in jobstate.RETRYABLE_JOB_STATES
                         and jobstate.retryable(deps.db(), job, _zip_available(job)))
    return body


@bp.get("/v1/jobs/<job_id>")
@deps.require_user
def get_job(job_id: str):
    return jsonify(full_job_body(_own_job(job_id)))


@bp.delete("/v1/jobs/<job_id>")
@deps.require_user
def cancel_job(job_id: str):
    job = _own_job(job_id)
    s = deps.db()
    if not jobstate.cancel(s, job.id):
        s.rollback()
        raise ApiError(409, "job_finished", f"the job has already {_ENDED.get(job.status, 'ended')}")
    dispatch.commit(s)  # then its webhook events go out, and its zip (retention 0)
    s.refresh(job)
    return jsonify(full_job_body(job))


# "the job has already ...": each end state as a verb
_ENDED = {"succeeded": "succeeded", "partially_succeeded": "ended (partially succeeded)", "failed": "failed",
          "cancelled": "been cancelled"}


@bp.post("/v1/jobs/<job_id>/retry")
@deps.require_user
def retry_job(job_id: str):
    """Run an ended job's photos that failed for a transient reason again, as the same job (202). 409
    when it is still going, when nothing failed that a retry can mend, or when its zip was never read
    to the end and is no longer kept."""
    from sqlalchemy.exc import IntegrityError

    from api.uploads import POLL_AFTER
    from core.queue import enqueue_ingest

    job = _own_job(job_id)
    s = deps.db()
    zip_available = _zip_available(job)
    try:
        again = jobstate.retry(s, job.id, zip_available)
        s.commit()
    except jobstate.NotRetryable as e:
        s.rollback()
        raise ApiError(409, e.code, e.message) from None
    except IntegrityError:  # a photo's bytes became live in another upload at this very moment
        s.rollback()
        raise ApiError(409, "retry_conflict", "the job changed while it was being retried: try again") from None
    try:
        enqueue_ingest(deps.celery(), job.id)  # a second ingest sends the job's pending photos
    except Exception as e:  # noqa: BLE001 - the broker is down
        deps.log.error("enqueue of the retried job %s failed: %s", job.id, e)
        jobstate.fail(s, job.id, "queue_unavailable", "the retry could not be queued; retry again")
        dispatch.commit(s)
        raise ApiError(503, "queue_unavailable", "the job queue is unavailable; try again shortly",
                       {"Retry-After": "5"}) from None
    s.refresh(job)
    body = full_job_body(job)
    body["retried_photos"] = again
    resp = jsonify(body)
    resp.status_code = 202
    resp.headers["Location"] = f"/v1/jobs/{job.id}"
    resp.headers["Retry-After"] = str(POLL_AFTER)
    return resp


@bp.get("/v1/jobs")
@deps.require_user
def list_jobs():
    rows, next_cursor = newest_first(deps.db(), select(Job).where(Job.user_id == g.user_id), Job, request.args,
                                     deps.settings())
    return jsonify({"jobs": [job_body(j) for j in rows], "next_cursor": next_cursor})


@bp.get("/v1/jobs/<job_id>/photos")
@deps.require_user
def list_job_photos(job_id: str):
    """The job's photos in zip order: entry name, state, stored size. `cursor` is the last entry's
    position in the zip, as returned in `next_cursor`."""
    job = _own_job(job_id)
    limit = page_limit(request.args, deps.settings())
    q = select(Photo).where(Photo.job_id == job.id)
    cursor = request.args.get("cursor")
    if cursor is not None:
        after = _zip_position(cursor)
        q = q.where(Photo.entry_index > after)
    rows = list(deps.db().scalars(q.order_by(Photo.entry_index).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {"photos": [photo_body(p) for p in rows], "next_cursor": str(rows[-1].entry_index) if more else None}


def _zip_position(cursor: str) -> int:
    """A photos cursor: an entry's position in the zip. Anything else, a number too large for the
    column included (the database refuses to bind it: a 500 before), is not one this API returned."""
    try:
        after = int(cursor)
    except ValueError:
        after = -1
    if not 0 <= after < 2**31:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API returned")
    return after


@bp.delete("/v1/jobs/<job_id>/data")
@deps.require_user
def delete_job_data(job_id: str):
    """Delete an ended job with everything it brought: photos, items, cut-outs, the zip, and the job
    itself (204; the job is 404 afterwards). 409 while it is queued or running: cancel it first."""
    return deps.purge(retention.purge_job, deps.parse_uuid(job_id, "job"), "no such job",
                      "the job is still queued or running: cancel it first (DELETE /v1/jobs/<id>)")
