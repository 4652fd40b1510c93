"""POST /v1/uploads: stream the zip to a temp file and on to storage, then queue the job.

The zip is never held in memory: multipart files are spooled to disk by
Werkzeug, raw bodies are copied in 1 MiB chunks. The check done here is cheap
(the zip's central directory); every byte is checked again by the ingest worker.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import uuid
import zipfile

from flask import Blueprint, g, jsonify, request

from api import deps
from api.errors import ApiError
from api.serializers import job_body
from db import jobstate
from db.models import Job
from db.queue import enqueue_ingest
from db.storage import StorageError, keys

log = logging.getLogger("wardrobe.api.uploads")
bp = Blueprint("uploads", __name__)

RAW_TYPES = {"application/zip", "application/x-zip-compressed", "application/octet-stream"}
CHUNK = 1024 * 1024
JUNK = ("__MACOSX/",)


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


def check_zip(path: str, settings) -> int:
    """Cheap checks from the central directory; returns the number of file entries."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ApiError(422, "invalid_zip", f"the upload is not a readable zip file: {e}") from None
    if len(infos) > settings.max_entries:
        raise ApiError(413, "too_many_entries", f"the zip has {len(infos)} entries; the limit is {settings.max_entries}")
    declared = sum(i.file_size for i in infos)
    if declared > settings.max_total_uncompressed_bytes:
        raise ApiError(413, "zip_too_large", f"the zip inflates to {declared} bytes; the limit is {settings.max_total_uncompressed_bytes}")
    files = [i for i in infos if not i.is_dir() and not i.filename.startswith(JUNK)]
    if not files:
        raise ApiError(422, "empty_zip", "the zip holds no files")
    return len(files)


@bp.post("/v1/uploads")
@deps.require_user
def create_upload():
    settings = deps.settings()
    ctype = (request.mimetype or "").lower()
    with tempfile.NamedTemporaryFile(prefix="wardrobe-upload-", suffix=".zip") as tmp:
        if ctype == "multipart/form-data":
            f = request.files.get("file")
            if f is None:
                raise ApiError(400, "missing_file", "send the zip as the multipart field 'file'")
            name = os.path.basename((f.filename or "upload.zip").replace("\\", "/"))[:512]
            size, sha = _spool_to(tmp, f.stream, settings.max_upload_bytes)
        elif ctype in RAW_TYPES:
            name = (request.headers.get("X-Filename") or "upload.zip")[:512]
            size, sha = _spool_to(tmp, request.stream, settings.max_upload_bytes)
        else:
            raise ApiError(415, "unsupported_media_type", "send a zip as multipart/form-data (field 'file') or as an application/zip body")
        if size == 0:
            raise ApiError(400, "empty_upload", "the upload is empty")
        check_zip(tmp.name, settings)

        job_id = uuid.uuid4()
        key = keys.upload(g.user_id, job_id)
        tmp.seek(0)
        try:
            deps.storage().put_file(key, tmp, "application/zip")
        except StorageError as e:
            log.error("storing upload failed: %s", e)
            raise ApiError(503, "storage_unavailable", "storage is unavailable; try again shortly") from None

    s = deps.db()
    job = Job(id=job_id, user_id=g.user_id, upload_key=key, upload_name=name, upload_bytes=size, upload_sha256=sha)
    s.add(job)
    s.commit()
    try:
        enqueue_ingest(deps.celery(), job_id)  # only after the commit: the worker must find the row
    except Exception as e:  # noqa: BLE001 - the broker is down
        log.error("enqueue of job %s failed: %s", job_id, e)
        jobstate.fail(s, job_id, "queue_unavailable", "the job could not be queued; upload again")
        s.commit()
        raise ApiError(503, "queue_unavailable", "the job queue is unavailable; try again shortly") from None
    resp = jsonify(job_body(job))
    resp.status_code = 202
    resp.headers["Location"] = f"/v1/jobs/{job_id}"
    return resp
