"""Completing a resumable upload (POST /v1/upload-sessions/<id>/complete, api/resumable.py): the bytes
made whole (S3: the multipart upload's parts assembled), checked as POST /v1/uploads checks them, and
the job made by the same step (services.uploads.commit_job), its ingest queued after the commit
(services.uploads.enqueue_job).

The session's row is locked (SELECT ... FOR UPDATE) from the start: two completes at once make one
job, and the second answers it. A zip refused (422, 413: the same codes as POST /v1/uploads) loses
its bytes and its session; a quota refusal (429, storage_quota_exceeded) keeps both, so the client
completes again later without sending a byte more.

The job's upload_sha256: in chunked mode the API reads the partial file once (local disk) and checks
the client's declared SHA-256 against it; in S3 mode hashing would mean downloading the whole object,
so the job records what the client declared (empty when it declared nothing), unverified: the
ingest worker checks every entry's bytes anyway.
"""
from __future__ import annotations

import hashlib
import logging

from core.storage import ObjectNotFound, StorageError, keys
from db import upload_sessions, uploads
from db.models import Job, UploadMode, UploadSession, utcnow
from db.upload_sessions import ASSEMBLED, COMPLETED, OPEN, part_count, part_length
from services import objects
from services.context import Ctx
from services.errors import Refused
from services.uploads import check_zip, commit_job, enqueue_job

log = logging.getLogger("wardrobe.uploads")

S3 = UploadMode.S3_MULTIPART.value


def complete(ctx: Ctx, sess: UploadSession) -> Job:
    """The session's job, queued: made now, or the one an earlier complete made. `sess` is locked."""
    s, settings, storage = ctx.s, ctx.settings, ctx.storage
    if sess.status == COMPLETED:
        return _existing(ctx, sess)
    if sess.mode == S3 and sess.status == OPEN:
        _assemble(ctx, sess)  # committed: the lock is let go, so take it again
        sess = upload_sessions.find(s, ctx.user_id, sess.id, lock=True)
        if sess is None:
            raise Refused(404, "not_found", "no such upload session (or it expired)")
        if sess.status == COMPLETED:
            return _existing(ctx, sess)  # another complete made the job meanwhile
    size = _whole_size(ctx, sess)
    try:
        with storage.open_reader(sess.object_key) as f:
            check_zip(f, settings)  # S3: ranged reads of the zip's end and central directory only
        sha = _sha256(ctx, sess)
    except Refused as e:
        _refuse(ctx, sess, e)
    final = keys.upload(ctx.user_id, sess.job_id)
    if sess.object_key != final:
        storage.rename(sess.object_key, final)  # chunked: the partial file becomes the job's zip
    partial = sess.object_key

    before = sess.status

    def mark_completed(_s) -> None:
        sess.status, sess.object_key, sess.completed_at = COMPLETED, final, utcnow()

    def take_back() -> None:
        """The job could not be queued: it is unmade and the session is as it was, bytes included."""
        uploads.delete_job(s, sess.job_id)
        sess.status, sess.object_key, sess.completed_at = before, partial, None
        _put_back(ctx, final, partial)

    try:
        job = commit_job(ctx, sess.job_id, final, sess.filename, size, sha, also=mark_completed)
    except BaseException:
        s.rollback()
        _put_back(ctx, final, partial)
        raise
    enqueue_job(ctx, job.id, take_back=take_back)
    return job


def _existing(ctx: Ctx, sess: UploadSession) -> Job:
    job = uploads.find_job(ctx.s, sess.job_id)
    if job is None:
        raise Refused(404, "not_found", "this upload's job was deleted")
    return job


def _refuse(ctx: Ctx, sess: UploadSession, err: Refused):
    """The zip is refused for good: its bytes and its session go, and the client hears why."""
    try:
        objects.drop_bytes(ctx.storage, sess)
    except StorageError as e:  # no session names them any more: the sweeper removes them after its grace
        log.error("could not remove the bytes of refused upload session %s: %s", sess.id, e)
    ctx.s.delete(sess)
    ctx.s.commit()
    raise err


def _assemble(ctx: Ctx, sess: UploadSession) -> None:
    """S3: the parts, all there and each of its length, completed into one object at the job's key."""
    storage, limit = ctx.storage, ctx.settings.max_upload_bytes
    try:
        parts = {p.number: p for p in storage.list_parts(sess.object_key, sess.multipart_id)}
    except ObjectNotFound:
        sess.multipart_id = None  # aborted behind our back: nothing to drop
        _refuse(ctx, sess, Refused(404, "not_found", "this upload's parts are gone from storage; start a new session"))
    received = sum(p.size for p in parts.values())
    if received > limit:
        _refuse(ctx, sess, Refused(413, "payload_too_large", f"the parts add up to {received} bytes, over the limit "
                                                             f"of {limit} bytes"))
    count = part_count(sess)
    missing = [n for n in range(1, count + 1) if n not in parts]
    if missing:
        raise Refused(409, "upload_incomplete", f"{len(missing)} of {count} parts are not received yet, the first "
                                                f"{missing[0]}: GET the session for the list")
    wrong = [n for n in range(1, count + 1) if parts[n].size != part_length(sess, n)]
    if wrong:
        raise Refused(409, "part_size_mismatch", f"parts {', '.join(map(str, wrong[:10]))} are not of their length "
                                                 "(part_size, the last the rest): PUT them again")
    storage.complete_multipart(sess.object_key, sess.multipart_id, [parts[n] for n in range(1, count + 1)])
    sess.multipart_id, sess.status = None, ASSEMBLED
    ctx.s.commit()


def _whole_size(ctx: Ctx, sess: UploadSession) -> int:
    """The object's real size: all received (chunked), within the limit, the size declared."""
    limit = ctx.settings.max_upload_bytes
    try:
        size = ctx.storage.size(sess.object_key)
    except ObjectNotFound:
        if sess.mode == S3:  # assembled, then removed behind our back
            _refuse(ctx, sess, Refused(404, "not_found", "this upload's bytes are gone from storage; start a new session"))
        size = 0
    if sess.mode != S3 and size < sess.size:
        raise Refused(409, "upload_incomplete", f"{size} of {sess.size} bytes are received: PATCH the rest "
                                                f"from Upload-Offset {size}")
    if size > limit:
        _refuse(ctx, sess, Refused(413, "payload_too_large", f"the upload is {size} bytes, over the limit of {limit}"))
    if size != sess.size:
        _refuse(ctx, sess, Refused(422, "size_mismatch", f"the upload is {size} bytes, not the {sess.size} declared"))
    return size


def _sha256(ctx: Ctx, sess: UploadSession) -> str:
    if sess.mode == S3:
        return sess.sha256 or ""  # as declared: hashing would mean reading the whole object back
    digest = hashlib.sha256()
    with ctx.storage.open_reader(sess.object_key) as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    sha = digest.hexdigest()
    if sess.sha256 and sess.sha256 != sha:
        raise Refused(422, "checksum_mismatch", f"the bytes received hash to {sha}, not the sha256 declared")
    return sha


def _put_back(ctx: Ctx, final: str, partial: str) -> None:
    """The job was not made (a quota, storage, the broker, the database): the chunks go back where the
    session finds them (S3: the assembled object is at the job's key already)."""
    if final == partial:
        return
    try:
        ctx.storage.rename(final, partial)
    except StorageError as e:
        log.error("could not move %s back to %s: %s", final, partial, e)
