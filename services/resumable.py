"""Resumable upload sessions as a user opens and abandons them (api/resumable.py); completing one is
services.completion. A session is an S3 multipart upload on S3 storage (the client PUTs its parts
straight to the bucket) or a partial file the API appends chunks to on folder storage."""
from __future__ import annotations

import math
import uuid
from datetime import timedelta

from core.s3 import MAX_PARTS, MIN_PART_SIZE
from core.storage import keys
from db import upload_sessions, uploads
from db.models import UploadMode, UploadSession, utcnow
from db.upload_sessions import COMPLETED, OPEN
from services import objects
from services.context import Ctx
from services.errors import Refused
from services.uploads import check_quota

S3, CHUNKED = UploadMode.S3_MULTIPART.value, UploadMode.CHUNKED.value
MiB = 1024 * 1024


def _part_size(settings, size: int) -> int:
    """The configured part size, at least S3's least, and large enough for S3's 10,000 parts."""
    least = math.ceil(size / MAX_PARTS / MiB) * MiB
    return max(settings.upload_part_size, MIN_PART_SIZE, least)


def _room_for_one_more(ctx: Ctx, size: int) -> None:
    """The user's quotas with this upload and their open sessions counted (their bytes will be kept)."""
    open_n, open_bytes = upload_sessions.open_totals(ctx.s, ctx.user_id)
    most = ctx.settings.max_upload_sessions
    if most > 0 and open_n >= most:
        raise Refused(429, "too_many_upload_sessions",
                      f"you have {open_n} open upload sessions, the most is {most}: complete "
                      "or delete one (DELETE /v1/upload-sessions/<id>)", {"Retry-After": "60"})
    check_quota(ctx, size + open_bytes)


def open_session(ctx: Ctx, name: str, size: int, sha: str | None) -> tuple[UploadSession, bool]:
    """A new session for the user's upload, committed (True); or (False) their open session for these
    very bytes: a client whose create was answered but whose answer was lost (a reset, a gateway's 504)
    retries it, and gets one session, not several holding quota and the open-session limit for a day."""
    s, settings, storage = ctx.s, ctx.settings, ctx.storage
    if not (storage.multipart or storage.appendable):
        raise Refused(501, "not_implemented", "this storage takes no resumable uploads: POST /v1/uploads")
    uploads.user_lock(s, ctx.user_id)  # counted and added at once
    same = upload_sessions.open_for(s, ctx.user_id, size, sha, S3 if storage.multipart else CHUNKED) if sha else None
    if same is not None:
        return same, False
    _room_for_one_more(ctx, size)
    now = utcnow()
    sess = UploadSession(id=uuid.uuid4(), user_id=ctx.user_id, filename=name, size=size, sha256=sha,
                         job_id=uuid.uuid4(), status=OPEN, created_at=now,
                         expires_at=now + timedelta(seconds=settings.upload_session_ttl))
    if storage.multipart:
        sess.mode, sess.part_size = S3, _part_size(settings, size)
        sess.object_key = keys.upload(ctx.user_id, sess.job_id)  # where the job will find its zip
        sess.multipart_id = storage.create_multipart(sess.object_key, "application/zip")
    else:
        sess.mode, sess.object_key = CHUNKED, keys.incoming(ctx.user_id, sess.id)
    s.add(sess)
    try:
        s.commit()
    except BaseException:
        s.rollback()
        if sess.multipart_id:
            objects.drop_bytes(storage, sess)
        raise
    return sess, True


def abort(ctx: Ctx, sess: UploadSession) -> None:
    """The parts or chunks received deleted (storage down: 503, the session stays), then the session;
    409 once it completed. `sess` is locked."""
    if sess.status == COMPLETED:
        raise Refused(409, "upload_completed", f"this upload is completed: it is job {sess.job_id}")
    objects.drop_bytes(ctx.storage, sess)
    ctx.s.delete(sess)
    ctx.s.commit()
