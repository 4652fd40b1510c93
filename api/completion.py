"""Completing a resumable upload (POST /v1/upload-sessions/<id>/complete, api/resumable.py): the bytes
made whole, checked as POST /v1/uploads checks them, and the job made by the same step
(api.uploads.commit_job), its ingest queued after the commit (api.uploads.enqueue_job).

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

from flask import g
from sqlalchemy import delete

from api import deps
from api.errors import ApiError
from api.uploads import _accepted, check_zip, commit_job, enqueue_job
from core.storage import ObjectNotFound, StorageError, keys
from db import upload_sessions
from db.models import Job, UploadMode, UploadSession, utcnow
from db.upload_sessions import ASSEMBLED, COMPLETED, OPEN, part_count, part_length
from services import objects

log = logging.getLogger("wardrobe.api.uploads")

S3 = UploadMode.S3_MULTIPART.value


def complete_upload(sess: UploadSession):
    s, settings, storage = deps.db(), deps.settings(), deps.storage()
    if sess.status == COMPLETED:
        return _existing(sess)
    if sess.mode == S3 and sess.status == OPEN:
        _assemble(sess)  # committed: the lock is let go, so take it again
        sess = upload_sessions.find(s, g.user_id, sess.id, lock=True)
        if sess is None:
            raise ApiError(404, "not_found", "no such upload session (or it expired)")
        if sess.status == COMPLETED:
            return _existing(sess)  # another complete made the job meanwhile
    size = _whole_size(sess)
    try:
        with storage.open_reader(sess.object_key) as f:
            check_zip(f, settings)  # S3: ranged reads of the zip's end and central directory only
        sha = _sha256(sess)
    except ApiError as e:
        _refuse(sess, e)
    final = keys.upload(g.user_id, sess.job_id)
    if sess.object_key != final:
        storage.rename(sess.object_key, final)  # chunked: the partial file becomes the job's zip
    partial = sess.object_key

    before = sess.status

    def mark_completed(_s) -> None:
        sess.status, sess.object_key, sess.completed_at = COMPLETED, final, utcnow()

    def take_back() -> None:
        """The job could not be queued: it is unmade and the session is as it was, bytes included."""
        s.execute(delete(Job).where(Job.id == sess.job_id))
        sess.status, sess.object_key, sess.completed_at = before, partial, None
        _put_back(final, partial)

    try:
        job = commit_job(s, settings, sess.job_id, final, sess.filename, size, sha, also=mark_completed)
    except BaseException:
        s.rollback()
        _put_back(final, partial)
        raise
    enqueue_job(s, job.id, take_back=take_back)
    return _accepted(job)


def _existing(sess: UploadSession):
    job = deps.db().get(Job, sess.job_id)
    if job is None:
        raise ApiError(404, "not_found", "this upload's job was deleted")
    return _accepted(job)


def _refuse(sess: UploadSession, err: ApiError):
    """The zip is refused for good: its bytes and its session go, and the client hears why."""
    s = deps.db()
    try:
        objects.drop_bytes(deps.storage(), sess)
    except StorageError as e:  # no session names them any more: the sweeper removes them after its grace
        log.error("could not remove the bytes of refused upload session %s: %s", sess.id, e)
    s.delete(sess)
    s.commit()
    raise err


def _assemble(sess: UploadSession) -> None:
    """S3: the parts, all there and each of its length, completed into one object at the job's key."""
    s, storage, limit = deps.db(), deps.storage(), deps.settings().max_upload_bytes
    try:
        parts = {p.number: p for p in storage.list_parts(sess.object_key, sess.multipart_id)}
    except ObjectNotFound:
        sess.multipart_id = None  # aborted behind our back: nothing to drop
        _refuse(sess, ApiError(404, "not_found", "this upload's parts are gone from storage; start a new session"))
    received = sum(p.size for p in parts.values())
    if received > limit:
        _refuse(sess, ApiError(413, "payload_too_large", f"the parts add up to {received} bytes, over the limit of "
                                                         f"{limit} bytes"))
    count = part_count(sess)
    missing = [n for n in range(1, count + 1) if n not in parts]
    if missing:
        raise ApiError(409, "upload_incomplete", f"{len(missing)} of {count} parts are not received yet, the first "
                                                 f"{missing[0]}: GET the session for the list")
    wrong = [n for n in range(1, count + 1) if parts[n].size != part_length(sess, n)]
    if wrong:
        raise ApiError(409, "part_size_mismatch", f"parts {', '.join(map(str, wrong[:10]))} are not of their length "
                                                  "(part_size, the last the rest): PUT them again")
    storage.complete_multipart(sess.object_key, sess.multipart_id, [parts[n] for n in range(1, count + 1)])
    sess.multipart_id, sess.status = None, ASSEMBLED
    s.commit()


def _whole_size(sess: UploadSession) -> int:
    """The object's real size: all received (chunked), within the limit, the size declared."""
    storage, limit = deps.storage(), deps.settings().max_upload_bytes
    try:
        size = storage.size(sess.object_key)
    except ObjectNotFound:
        if sess.mode == S3:  # assembled, then removed behind our back
            _refuse(sess, ApiError(404, "not_found", "this upload's bytes are gone from storage; start a new session"))
        size = 0
    if sess.mode != S3 and size < sess.size:
        raise ApiError(409, "upload_incomplete", f"{size} of {sess.size} bytes are received: PATCH the rest "
                                                 f"from Upload-Offset {size}")
    if size > limit:
        _refuse(sess, ApiError(413, "payload_too_large", f"the upload is {size} bytes, over the limit of {limit}"))
    if size != sess.size:
        _refuse(sess, ApiError(422, "size_mismatch", f"the upload is {size} bytes, not the {sess.size} declared"))
    return size


def _sha256(sess: UploadSession) -> str:
    if sess.mode == S3:
        return sess.sha256 or ""  # as declared: hashing would mean reading the whole object back
    digest = hashlib.sha256()
    with deps.storage().open_reader(sess.object_key) as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    sha = digest.hexdigest()
    if sess.sha256 and sess.sha256 != sha:
        raise ApiError(422, "checksum_mismatch", f"the bytes received hash to {sha}, not the sha256 declared")
    return sha


def _put_back(final: str, partial: str) -> None:
    """The job was not made (a quota, storage, the broker, the database): the chunks go back where the
    session finds them (S3: the assembled object is at the job's key already)."""
    if final == partial:
        return
    try:
        deps.storage().rename(final, partial)
    except StorageError as e:
        log.error("could not move %s back to %s: %s", final, partial, e)
