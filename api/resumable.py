"""Resumable uploads: /v1/upload-sessions. A zip that arrives over many requests and survives a cut
connection, then becomes a job exactly as one POSTed to /v1/uploads.

One resource, two modes, chosen by the storage (the session's `mode`):
- `s3_multipart` (S3 storage): the bytes never pass through the API. The session is an S3 multipart
  upload; the client asks for presigned part URLs (POST .../parts), PUTs the parts straight to the
  bucket, and GET lists what the bucket holds (S3's ListParts), so a client that lost its connection
  sends only the parts missing.
- `chunked` (folder storage, the embedded default): the client PATCHes chunks to the session with
  `Upload-Offset` (the tus 1.0 core protocol: HEAD/GET tell the offset received, a PATCH at another
  offset is 409); the API appends them to a partial file. A cut chunk keeps exactly the bytes that
  arrived: the offset says where to go on.
POST .../complete checks the whole (size, the zip's central directory, the declared SHA-256 where the
bytes are local) and makes the job (services.completion, with services.uploads as POST /v1/uploads);
completing again answers the same job.
A refused zip loses its bytes and its session; a quota refusal keeps both, to complete later. The
sessions expire (WARDROBE_UPLOAD_SESSION_TTL); the sweeper (services.sweeper) drops what they held.
"""
from __future__ import annotations

import re
from datetime import timedelta

from flask import Blueprint, current_app, g, jsonify, request

from api import deps
from api.bodies import accepted
from api.errors import ApiError, json_object
from api.formats import whole_number
from core.s3 import MAX_PARTS
from core.storage import AppendInProgress, ObjectNotFound, OffsetMismatch
from db import upload_sessions
from db.jobview import iso, utc
from db.models import UploadMode, UploadSession, utcnow
from db.upload_sessions import COMPLETED, OPEN, part_count, part_length
from services import completion, resumable
from services.uploads import clean_name

bp = Blueprint("resumable", __name__)

S3, CHUNKED = UploadMode.S3_MULTIPART.value, UploadMode.CHUNKED.value
TUS_VERSION = "1.0.0"
CHUNK_TYPES = {"application/offset+octet-stream", "application/octet-stream"}
PART_URL_TTL = 3600  # seconds a presigned part URL is valid (at most until the session expires)
MAX_URLS = 1000  # part URLs per request
MAX_OFFSET = 2**63 - 1  # the largest Upload-Offset (an int64, as tus clients send it)
SHA256 = re.compile(r"[0-9a-fA-F]{64}")
MAX_NAME = 512  # characters of a filename (as services.uploads.clean_name keeps them)


# --- the tus protocol's headers ----------------------------------------------------------------------------------

@bp.before_request
def _tus_version():
    asked = request.headers.get("Tus-Resumable")
    if asked is not None and asked != TUS_VERSION and request.method != "OPTIONS":
        raise ApiError(412, "unsupported_tus_version", f"this server speaks tus {TUS_VERSION}",
                       {"Tus-Version": TUS_VERSION})


@bp.after_request
def _tus_headers(resp):
    resp.headers["Tus-Resumable"] = TUS_VERSION
    if request.method == "OPTIONS":  # tus discovery
        resp.headers["Tus-Version"] = TUS_VERSION
        resp.headers["Tus-Extension"] = "termination,expiration"
        resp.headers["Tus-Max-Size"] = str(deps.settings().max_upload_bytes)
    return resp


# --- the session's shape -----------------------------------------------------------------------------------------

def _received(sess: UploadSession) -> tuple[int, list[dict] | None]:
    """Bytes received so far, and (S3) the parts the bucket holds."""
    if sess.status != OPEN:  # all there: assembled or completed
        if sess.mode != S3:
            return sess.size, None
        return sess.size, [{"number": n, "size": part_length(sess, n), "etag": None} for n in range(1, part_count(sess) + 1)]
    if sess.mode == S3:
        try:
            parts = deps.storage().list_parts(sess.object_key, sess.multipart_id)
        except ObjectNotFound:
            parts = []  # aborted behind our back: complete says so
        listed = [{"number": p.number, "size": p.size, "etag": p.etag} for p in parts]
        return sum(p.size for p in parts), listed
    return _received_chunks(sess.object_key), None


def _body(sess: UploadSession, offset: int, parts: list[dict] | None) -> dict:
    base = f"/v1/upload-sessions/{sess.id}"
    out = {
        "id": str(sess.id), "mode": sess.mode, "status": sess.status, "filename": sess.filename, "size": sess.size,
        "sha256": sess.sha256, "offset": offset, "created_at": iso(sess.created_at), "expires_at": iso(sess.expires_at),
        "job_id": str(sess.job_id) if sess.status == COMPLETED else None,
    }
    links = {"self": base, "complete": f"{base}/complete"}
    if sess.mode == S3:
        have = {p["number"] for p in parts or [] if p["size"] == part_length(sess, p["number"])}
        out |= {"part_size": sess.part_size, "part_count": part_count(sess), "parts": parts or [],
                "missing_parts": [n for n in range(1, part_count(sess) + 1) if n not in have]}
        links["parts"] = f"{base}/parts"
    if sess.status == COMPLETED:
        links["job"] = f"/v1/jobs/{sess.job_id}"
    out["links"] = links
    return out


def _http_date(v) -> str:
    from email.utils import format_datetime

    return format_datetime(utc(v), usegmt=True)


def _session_response(sess: UploadSession, status: int = 200):
    offset, parts = _received(sess)
    resp = jsonify(_body(sess, offset, parts))
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    if sess.mode == CHUNKED:
        resp.headers["Upload-Offset"] = str(offset)
        resp.headers["Upload-Length"] = str(sess.size)
    resp.headers["Upload-Expires"] = _http_date(sess.expires_at)
    return resp


def _find(session_id: str, lock: bool = False) -> UploadSession:
    sess = upload_sessions.find(deps.db(), g.user_id, deps.parse_uuid(session_id, "upload session"), lock)
    if sess is None:
        raise ApiError(404, "not_found", "no such upload session (or it expired)")
    return sess


# --- create ------------------------------------------------------------------------------------------------------

def _create_body(settings) -> tuple[str, int, str | None]:
    body = json_object('{"filename": ..., "size": bytes, "sha256": optional hex}', {"filename", "size", "sha256"})
    size, name, sha = whole_number(body.get("size")), body.get("filename"), body.get("sha256")
    if size is None or size < 1:  # 1744.0 is 1744, as JSON Schema counts integers
        raise ApiError(400, "invalid_body", "size must be the zip's length in bytes, an integer of at least 1")
    if size > settings.max_upload_bytes:
        raise ApiError(413, "payload_too_large", f"the upload is larger than the limit of {settings.max_upload_bytes} bytes")
    if name is not None and not (isinstance(name, str) and len(name) <= MAX_NAME):
        raise ApiError(400, "invalid_body", f"filename must be a string of at most {MAX_NAME} characters")
    if sha is not None and not (isinstance(sha, str) and SHA256.fullmatch(sha)):
        raise ApiError(400, "invalid_body", "sha256 must be 64 hexadecimal digits")
    return clean_name(name), size, sha.lower() if sha else None


@bp.post("/v1/upload-sessions")
@deps.require_user
def create_session():
    ctx = deps.ctx()
    name, size, sha = _create_body(ctx.settings)
    sess, created = resumable.open_session(ctx, name, size, sha)
    # the same bytes' open session answers 200 (services.resumable.open_session), a new one 201
    resp = _session_response(sess, 201 if created else 200)
    resp.headers["Location"] = f"/v1/upload-sessions/{sess.id}"
    return resp


# --- read, parts, chunks, delete -----------------------------------------------------------------------------------

@bp.get("/v1/upload-sessions/<session_id>")
@deps.require_user
def get_session(session_id: str):
    """HEAD too (tus): Upload-Offset and Upload-Length in the headers."""
    return _session_response(_find(session_id))


def _part_numbers(sess: UploadSession) -> list[int]:
    body = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(body, dict) or set(body) - {"numbers"}:
        raise ApiError(400, "invalid_body", 'send a JSON object: {"numbers": [part numbers]}, or nothing for the missing parts')
    numbers = body.get("numbers")
    if numbers is None:
        offset, parts = _received(sess)
        return _body(sess, offset, parts)["missing_parts"][:MAX_URLS]
    wanted = [whole_number(n) for n in numbers] if isinstance(numbers, list) else []
    if not 1 <= len(wanted) <= MAX_URLS or not all(n is not None and 1 <= n <= MAX_PARTS for n in wanted):
        raise ApiError(400, "invalid_body", f"numbers must be 1 to {MAX_URLS} part numbers from 1 to {MAX_PARTS}")
    count = part_count(sess)
    if beyond := [n for n in wanted if n > count]:  # a number S3 would take, past this upload's own parts
        raise ApiError(409, "no_such_part", f"this upload has {count} parts; part {beyond[0]} is beyond them")
    return sorted(set(wanted))


@bp.post("/v1/upload-sessions/<session_id>/parts")
@deps.require_user
def part_urls(session_id: str):
    """Presigned URLs to PUT parts to (S3 mode); each is signed for its part's exact length."""
    sess = _find(session_id)
    if sess.mode != S3:
        raise ApiError(409, "mode_mismatch", "this session takes chunks: PATCH them to the session with Upload-Offset")
    if sess.status != OPEN:
        raise ApiError(409, "upload_assembled", "the parts are all in: complete the session")
    ttl = max(1, min(PART_URL_TTL, int(upload_sessions.seconds_left(sess))))
    storage, endpoint = deps.storage(), deps.settings().s3_presign_endpoint_url or None
    parts = [{"number": n, "size": part_length(sess, n),
              "url": storage.presign_part(sess.object_key, sess.multipart_id, n, part_length(sess, n), ttl, endpoint)}
             for n in _part_numbers(sess)]
    return {"parts": parts, "expires_at": iso(utcnow() + timedelta(seconds=ttl))}


def _upload_offset() -> int:
    raw = request.headers.get("Upload-Offset", "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > MAX_OFFSET:
        raise ApiError(400, "invalid_upload_offset", "send Upload-Offset: the bytes received so far (HEAD the session)")
    return int(raw)


def _offset_mismatch(offset: int, received: int) -> ApiError:
    return ApiError(409, "offset_mismatch", f"Upload-Offset is {offset} but {received} bytes are received: "
                                            f"send from {received}", {"Upload-Offset": str(received)})


def _received_chunks(key: str) -> int:
    """Bytes of a chunked-mode upload received so far."""
    try:
        return deps.storage().size(key)
    except ObjectNotFound:
        return 0  # no chunk yet


@bp.patch("/v1/upload-sessions/<session_id>")
@deps.require_user
def append_chunk(session_id: str):
    """The next chunk (chunked mode): Upload-Offset must be the bytes received so far."""
    sess = _find(session_id)
    key, size, mode, status, expires = sess.object_key, sess.size, sess.mode, sess.status, sess.expires_at
    deps.db().rollback()  # no connection held while the chunk arrives (minutes, on a slow line)
    if mode != CHUNKED:
        raise ApiError(409, "mode_mismatch", "this session takes parts straight to S3: POST .../parts for their URLs")
    if status != OPEN:
        raise ApiError(409, "upload_completed", "this upload is completed")
    if (request.mimetype or "").lower() not in CHUNK_TYPES:
        raise ApiError(415, "unsupported_media_type", "send the chunk as Content-Type: application/offset+octet-stream")
    offset = _upload_offset()
    length = request.content_length
    if length is None:
        raise ApiError(411, "length_required", "send the chunk with a Content-Length")
    if offset + length > size:
        # a chunk sent from another offset is out of step (409, tus) whatever its length: only one sent from
        # the right offset runs past the session's length
        if offset != (received := _received_chunks(key)):
            raise _offset_mismatch(offset, received)
        raise ApiError(413, "beyond_upload_length", f"the session's upload is {size} bytes long; this chunk ends at "
                                                     f"{offset + length}")
    try:
        received = deps.storage().append(key, offset, request.stream, length)
    except OffsetMismatch as e:
        raise _offset_mismatch(offset, e.offset) from None
    except AppendInProgress:
        raise ApiError(409, "append_in_progress", "another chunk of this upload is arriving now") from None
    resp = current_app.response_class(status=204)
    resp.headers["Upload-Offset"] = str(received)
    resp.headers["Upload-Expires"] = _http_date(expires)
    return resp


@bp.delete("/v1/upload-sessions/<session_id>")
@deps.require_user
def delete_session(session_id: str):
    """Abort: the parts or chunks received are deleted (tus termination)."""
    resumable.abort(deps.ctx(), _find(session_id, lock=True))
    return "", 204


@bp.post("/v1/upload-sessions/<session_id>/complete")
@deps.require_user
def complete_session(session_id: str):
    """The job (202), made once: completing again answers the same job."""
    return accepted(completion.complete(deps.ctx(), _find(session_id, lock=True)))
