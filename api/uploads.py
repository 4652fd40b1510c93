"""POST /v1/uploads: stream the zip to a temp file, then hand it to the upload service
(services.uploads: checked, stored, its job committed and queued).

The zip is never held in memory: multipart files are spooled to disk by
Werkzeug, raw bodies are copied in 1 MiB chunks. The check done here is cheap
(the zip's central directory); every byte is checked again by the ingest worker.
"""
from __future__ import annotations

import hashlib
import tempfile
from urllib.parse import unquote

from flask import Blueprint, request

from api import deps, formats
from api.bodies import accepted
from api.errors import ApiError
from services import uploads
from services.uploads import clean_name

bp = Blueprint("uploads", __name__)

RAW_TYPES = {"application/zip", "application/x-zip-compressed", "application/octet-stream"}
CHUNK = 1024 * 1024


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


def _idempotency_key() -> str | None:
    idem_key = request.headers.get("Idempotency-Key")
    if idem_key is not None and not formats.matches(formats.IDEMPOTENCY_KEY, idem_key):
        raise ApiError(400, "invalid_idempotency_key",
                       "Idempotency-Key must be 1-200 visible ASCII characters (spaces only between them)")
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


@bp.post("/v1/uploads")
@deps.require_user
def create_upload():
    ctx = deps.ctx()
    idem_key = _idempotency_key()
    ctype = (request.mimetype or "").lower()
    uploads.check_before_reading(ctx, idem_key, (request.content_length or 0) if ctype in RAW_TYPES else 0)
    with tempfile.NamedTemporaryFile(prefix="wardrobe-upload-", suffix=".zip") as tmp:
        name, size, sha = _spool_body(tmp, ctype, ctx.settings)
        return accepted(uploads.accept_zip(ctx, tmp, name, size, sha, idem_key))
