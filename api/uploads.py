"""POST /v1/uploads: stream the zip to a temp file and on to storage, then queue the job.

The zip is never held in memory: multipart files are spooled to disk by
Werkzeug, raw bodies are copied in 1 MiB chunks. The check done here is cheap
(the zip's central directory); every byte is checked again by the ingest worker.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from urllib.parse import unquote

from flask import Blueprint, g, jsonify, request

from api import deps
from api.errors import ApiError
from api.serializers import job_body
from core.queue import enqueue_ingest
from core.storage import StorageError, keys
from db import idempotency, jobstate, quota
from db.models import Job
from services import dispatch

log = logging.getLogger("wardrobe.api.uploads")
bp = Blueprint("uploads", __name__)

RAW_TYPES = {"application/zip", "application/x-zip-compressed", "application/octet-stream"}
CHUNK = 1024 * 1024
JUNK = ("__MACOSX/",)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".webp", ".heic", ".heif", ".avif", ".gif", ".bmp", ".tif", ".tiff", ".mpo")
RETRY_IN_FLIGHT = 30  # seconds a client over the in-flight limit is told to wait


def _spool_to(dst, src, limit: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the upload is larger than the limit of {limit} bytes")
        digest.update(chunk)
        dst.write(chunk)
    dst.flush()
    return size, digest.hexdigest()


def clean_name(raw: str | None, default: str = "upload.zip") -> str:
    """The upload's name as shown back: its last path component, without control characters
    (a NUL cannot even be stored in PostgreSQL text), at most 512 characters."""
    name = os.path.basename((raw or "").replace("\\", "/"))
    name = "".join(ch for ch in name if ch.isprintable() or ch == " ").strip()
    return name[:512] or default


def check_zip(source, settings) -> int:
    """Cheap checks from the central directory; returns the number of file entries. `source`: a path,
    or a seekable file (a stored object's Storage.open_reader: only the zip's end is read)."""
    try:
        with zipfile.ZipFile(source) as zf:
            infos = zf.infolist()
    except StorageError:
        raise  # the store failed while reading (a 503), not the zip
    except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, NotImplementedError (zip version), struct errors...
        raise ApiError(422, "invalid_zip", f"the upload is not a readable zip file: {e}") from None
    if len(infos) > settings.max_entries:
        raise ApiError(413, "too_many_entries", f"the zip has {len(infos)} entries; the limit is {settings.max_entries}")
    declared = sum(i.file_size for i in infos)
    if declared > settings.max_total_uncompressed_bytes:
        raise ApiError(413, "zip_too_large", f"the zip inflates to {declared} bytes; the limit is {settings.max_total_uncompressed_bytes}")
    # (not ZipInfo.is_dir(): it raises on an entry whose name starts with a NUL byte)
    files = [i for i in infos if not i.filename.endswith("/") and not i.filename.startswith(JUNK)]
    if not files:
        raise ApiError(422, "empty_zip", "the zip holds no files")
    if not any(i.filename.lower().endswith(IMAGE_EXTENSIONS) for i in files):
        raise ApiError(422, "no_images", "the zip holds no image files (JPEG, PNG, WebP, HEIC, ...)")
    return len(files)


def _claim(s, user_id, key: str, sha: str):
    """The job already accepted for this key and payload, or None with the key now claimed."""
    try:
        return idempotency.claim(s, user_id, key, sha)
    except idempotency.KeyReused:
        raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used for a different upload") from None
    except idempotency.ClaimInProgress:
        raise ApiError(409, "idempotency_in_progress",
                       "an upload with this Idempotency-Key is still being accepted") from None


def _user_lock(s, user_id) -> None:
    """Serialize one user's uploads from here to the commit (PostgreSQL; SQLite writes one at a time anyway)."""
    from sqlalchemy import text

    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": (user_id.int >> 64) - (1 << 63)})


def check_quota(s, settings, user_id, incoming: int = 0) -> None:
    """The user's limits (0: none): uploads in flight and per hour (429 with Retry-After) and kept upload
    bytes (413). `incoming`: the new upload's size, as far as it is known yet."""
    from datetime import timedelta

    from sqlalchemy import func, select

    from db.models import utcnow

    if settings.max_uploads_in_flight > 0:
        busy = s.scalar(select(func.count()).select_from(Job)
                        .where(Job.user_id == user_id, Job.status.in_(jobstate.ACTIVE)))
        if busy >= settings.max_uploads_in_flight:
            raise ApiError(429, "too_many_uploads_in_flight",
                           f"{busy} of your uploads are still being processed, the most at once is "
                           f"{settings.max_uploads_in_flight}: upload again when one has finished",
                           {"Retry-After": str(RETRY_IN_FLIGHT)})
    if settings.max_uploads_per_hour > 0:
        since = utcnow() - timedelta(hours=1)
        recent = s.scalar(select(func.count()).select_from(Job).where(Job.user_id == user_id, Job.created_at > since))
        if recent >= settings.max_uploads_per_hour:
            # when enough of the hour's uploads have aged out to leave room for one more
            oldest = s.scalar(select(Job.created_at).where(Job.user_id == user_id, Job.created_at > since)
                              .order_by(Job.created_at).offset(recent - settings.max_uploads_per_hour).limit(1))
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=since.tzinfo)
            wait = max(1, math.ceil((oldest - since).total_seconds()))
            raise ApiError(429, "too_many_uploads",
                           f"{recent} uploads in the last hour, the most is {settings.max_uploads_per_hour}: "
                           f"the next is possible in {wait} s", {"Retry-After": str(wait)})
    if settings.max_stored_bytes > 0:
        kept = quota.used(s, user_id, settings)  # photos, cut-outs, kept zips and exports
        if kept + incoming > settings.max_stored_bytes:
            raise ApiError(413, "storage_quota_exceeded",
                           f"your photos, cut-outs, uploads and exports stored add up to {kept} bytes, with this "
                           f"upload {kept + incoming}; the limit is {settings.max_stored_bytes} "
                           f"(WARDROBE_MAX_STORED_BYTES): delete a job's data (DELETE /v1/jobs/<id>/data) or an "
                           f"export to make room")


def forget_zip(key: str) -> None:
    try:
        deps.storage().delete(key)
    except Exception as e:  # noqa: BLE001 - storage down as well: the object stays, unreferenced
        log.error("could not remove the stored zip %s of a refused upload: %s", key, e)


POLL_AFTER = 2  # seconds a poller of an accepted job is asked to wait (Retry-After); the page streams instead


def _accepted(job: Job, status: int = 202):
    resp = jsonify(job_body(job))
    resp.status_code = status
    resp.headers["Location"] = f"/v1/jobs/{job.id}"
    if status == 202:
        resp.headers["Retry-After"] = str(POLL_AFTER)
    return resp


def _idempotency_key() -> str | None:
    idem_key = request.headers.get("Idempotency-Key")
    if idem_key is not None and not (1 <= len(idem_key) <= 200 and idem_key.isprintable()):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key must be 1-200 printable characters")
    return idem_key


def _spool_body(tmp, ctype: str, settings) -> tuple[str, int, str]:
    """The zip, multipart or raw, into `tmp` under the size cap: its name, size and SHA-256."""
    if ctype == "multipart/form-data":
        f = request.files.get("file")
        if f is None:
            raise ApiError(400, "missing_file", "send the zip as the multipart field 'file'")
        name = clean_name(f.filename)
        size, sha = _spool_to(tmp, f.stream, settings.max_upload_bytes)
    elif ctype in RAW_TYPES:
        name = clean_name(unquote(request.headers.get("X-Filename") or "", errors="replace"))
        size, sha = _spool_to(tmp, request.stream, settings.max_upload_bytes)
    else:
        raise ApiError(415, "unsupported_media_type", "send a zip as multipart/form-data (field 'file') or as an application/zip body")
    if size == 0:
        raise ApiError(400, "empty_upload", "the upload is empty")
    return name, size, sha


def commit_job(s, settings, job_id: uuid.UUID, key: str, name: str, size: int, sha: str,
               idem_key: str | None = None, also=None) -> Job:
    """The job row for a zip already checked and stored at `key`, committed: under the user's lock, the
    user still there and their quotas counted again (concurrent uploads included). `also(s)` adds to
    the same transaction (a resumable upload's session, marked completed). POST /v1/uploads and
    the resumable uploads' complete (api/resumable.py) both make their jobs here."""
    _user_lock(s, g.user_id)
    from db.models import User

    if s.get(User, g.user_id) is None:  # deleted since this API process cached the token (a few seconds)
        raise ApiError(401, "unauthorized", "the API token is not valid",
                       {"WWW-Authenticate": 'Bearer realm="wardrobe", error="invalid_token"'})
    check_quota(s, settings, g.user_id, size)  # again, with the size read and concurrent uploads counted
    job = Job(id=job_id, user_id=g.user_id, upload_key=key, upload_name=name, upload_bytes=size,
              upload_sha256=sha, idempotency_key=idem_key)
    s.add(job)
    if idem_key is not None:
        idempotency.attach_job(s, g.user_id, idem_key, job_id)
    if also is not None:
        also(s)
    s.commit()
    return job


def enqueue_job(s, job_id: uuid.UUID, take_back: Callable[[], None] | None = None) -> None:
    """Queue a committed job's ingest (only after the commit: the worker must find the row). A broker
    that is down answers 503 and fails the job (its zip goes with it), or, given `take_back`, lets the
    caller unmake it so that nothing is lost (a resumable upload keeps its bytes for a later complete)."""
    try:
        enqueue_ingest(deps.celery(), job_id)
    except Exception as e:  # noqa: BLE001 - the broker is down
        log.error("enqueue of job %s failed: %s", job_id, e)
        if take_back is not None:
            take_back()
        else:
            jobstate.fail(s, job_id, "queue_unavailable", "the job could not be queued; upload again")
            idempotency.forget_job(s, job_id)  # "try again shortly" with the same Idempotency-Key makes a new job
        dispatch.commit(s)
        raise ApiError(503, "queue_unavailable", "the job queue is unavailable; try again shortly") from None


def _store_job(s, tmp, settings, name: str, size: int, sha: str, idem_key: str | None) -> tuple[Job, uuid.UUID]:
    """Check the zip, store it and add its job row, committed; on any failure neither is left behind."""
    stored = None
    try:
        check_zip(tmp.name, settings)
        job_id = uuid.uuid4()
        key = keys.upload(g.user_id, job_id)
        tmp.seek(0)
        try:
            deps.storage().put_file(key, tmp, "application/zip")
        except StorageError as e:
            log.error("storing upload failed: %s", e)
            raise ApiError(503, "storage_unavailable", "storage is unavailable; try again shortly",
                           {"Retry-After": "5"}) from None
        stored = key
        return commit_job(s, settings, job_id, key, name, size, sha, idem_key), job_id
    except BaseException:
        if stored is not None:
            forget_zip(stored)  # no job names it: it would never be read, nor ever deleted
        if idem_key is not None:
            idempotency.release(s, g.user_id, idem_key)  # a refused upload does not burn the key
        raise


@bp.post("/v1/uploads")
@deps.require_user
def create_upload():
    settings = deps.settings()
    idem_key = _idempotency_key()
    ctype = (request.mimetype or "").lower()
    s = deps.db()
    # refused before a byte of the body is read; a replay of an accepted Idempotency-Key is not a new upload
    from sqlalchemy import select

    if idem_key is None or s.scalar(select(Job.id).where(Job.user_id == g.user_id, Job.idempotency_key == idem_key)) is None:
        check_quota(s, settings, g.user_id, (request.content_length or 0) if ctype in RAW_TYPES else 0)
        s.rollback()
    with tempfile.NamedTemporaryFile(prefix="wardrobe-upload-", suffix=".zip") as tmp:
        name, size, sha = _spool_body(tmp, ctype, settings)
        if idem_key is not None:
            existing = _claim(s, g.user_id, idem_key, sha)
            if existing is not None:
                return _accepted(existing)
        job, job_id = _store_job(s, tmp, settings, name, size, sha, idem_key)
    enqueue_job(s, job_id)
    return _accepted(job)
