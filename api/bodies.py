"""Answers that several routes give: a job accepted (202 with where to poll it), a job's full body,
an item's body for the signed-in user. Here, not in one route module borrowed by the others."""
from __future__ import annotations

from flask import jsonify

from api import deps
from api.serializers import item_body as _item_body, job_body
from db.models import Item, Job
from services import jobs

POLL_AFTER = 2  # seconds a poller of an accepted job is asked to wait (Retry-After); the page streams instead


def accepted(job: Job, status: int = 202, body: dict | None = None):
    """The job (its list body, or `body`) with its Location; a 202 with Retry-After."""
    resp = jsonify(job_body(job) if body is None else body)
    resp.status_code = status
    resp.headers["Location"] = f"/v1/jobs/{job.id}"
    if status == 202:
        resp.headers["Retry-After"] = str(POLL_AFTER)
    return resp


def full_job_body(job: Job) -> dict:
    """GET /v1/jobs/<id>: the job with its errors, its duplicates and whether a retry would run."""
    d = jobs.detail(deps.ctx(), job)
    body = job_body(job, d.failed, d.duplicates)
    body["retryable"] = d.retryable
    return body


def item_body(item: Item) -> dict:
    return _item_body(item, deps.signer(), review_below=deps.review_below())
