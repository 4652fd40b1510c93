"""Accepting an upload, one way for all three paths: POST /v1/uploads (a whole zip in one request),
a resumable upload's completion (its chunks on folder storage, or its S3 multipart parts:
services.resumable). Each checks the zip the same way (`check_zip`: the central directory only; the
ingest worker checks every byte), counts the user's quotas the same way (`check_quota`), makes its job
in `commit_job` (under the user's lock, quotas counted again) and queues it in `enqueue_job`, only once
the job is committed.
"""
from __future__ import annotations

import logging
import math
import os
import uuid
import zipfile
from collections.abc import Callable
from datetime import timedelta

from core.queue import enqueue_ingest
from core.storage import StorageError, keys
from db import idempotency, jobstate, quota, uploads, users
from db.models import Job, utcnow
from services import dispatch
from services.context import Ctx
from services.errors import Refused, unavailable

log = logging.getLogger("wardrobe.uploads")

JUNK = ("__MACOSX/",)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".webp", ".heic", ".heif", ".avif", ".gif", ".bmp", ".tif", ".tiff", ".mpo")
RETRY_IN_FLIGHT = 30  # seconds a client over the in-flight limit is told to wait


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
        raise Refused(422, "invalid_zip", f"the upload is not a readable zip file: {e}") from None
    if len(infos) > settings.max_entries:
        raise Refused(413, "too_many_entries", f"the zip has {len(infos)} entries; the limit is {settings.max_entries}")
    declared = sum(i.file_size for i in infos)
    if declared > settings.max_total_uncompressed_bytes:
        raise Refused(413, "zip_too_large", f"the zip inflates to {declared} bytes; the limit is {settings.max_total_uncompressed_bytes}")
    # (not ZipInfo.is_dir(): it raises on an entry whose name starts with a NUL byte)
    files = [i for i in infos if not i.filename.endswith("/") and not i.filename.startswith(JUNK)]
    if not files:
        raise Refused(422, "empty_zip", "the zip holds no files")
    if not any(i.filename.lower().endswith(IMAGE_EXTENSIONS) for i in files):
        raise Refused(422, "no_images", "the zip holds no image files (JPEG, PNG, WebP, HEIC, ...)")
    return len(files)


def check_quota(ctx: Ctx, incoming: int = 0) -> None:
    """The user's limits (0: none): uploads in flight and per hour (429 with Retry-After) and kept upload
    bytes (413). `incoming`: the new upload's size, as far as it is known yet."""
    s, settings, user_id = ctx.s, ctx.settings, ctx.user_id
    if settings.max_uploads_in_flight > 0:
        busy = uploads.in_flight(s, user_id)
        if busy >= settings.max_uploads_in_flight:
            raise Refused(429, "too_many_uploads_in_flight",
                          f"{busy} of your uploads are still being processed, the most at once is "
                          f"{settings.max_uploads_in_flight}: upload again when one has finished",
                          {"Retry-After": str(RETRY_IN_FLIGHT)})
    if settings.max_uploads_per_hour > 0:
        since = utcnow() - timedelta(hours=1)
        recent = uploads.made_since(s, user_id, since)
        if recent >= settings.max_uploads_per_hour:
            # when enough of the hour's uploads have aged out to leave room for one more
            oldest = uploads.nth_made_since(s, user_id, since, recent - settings.max_uploads_per_hour)
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=since.tzinfo)
            wait = max(1, math.ceil((oldest - since).total_seconds()))
            raise Refused(429, "too_many_uploads",
                          f"{recent} uploads in the last hour, the most is {settings.max_uploads_per_hour}: "
                          f"the next is possible in {wait} s", {"Retry-After": str(wait)})
    if settings.max_stored_bytes > 0:
        kept = quota.used(s, user_id, settings)  # photos, cut-outs, kept zips and exports
        if kept + incoming > settings.max_stored_bytes:
            raise Refused(413, "storage_quota_exceeded",
                          f"your photos, cut-outs, uploads and exports stored add up to {kept} bytes, with this "
                          f"upload {kept + incoming}; the limit is {settings.max_stored_bytes} "
                          f"(WARDROBE_MAX_STORED_BYTES): delete a job's data (DELETE /v1/jobs/<id>/data) or an "
                          f"export to make room")


def check_before_reading(ctx: Ctx, idem_key: str | None, incoming: int) -> None:
    """The quotas, before a byte of the body is read; a replay of an accepted Idempotency-Key is not a
    new upload. No transaction is held afterwards (the body may take minutes to arrive)."""
    if idem_key is None or uploads.job_for_key(ctx.s, ctx.user_id, idem_key) is None:
        check_quota(ctx, incoming)
        ctx.s.rollback()


def commit_job(ctx: Ctx, job_id: uuid.UUID, key: str, name: str, size: int, sha: str,
               idem_key: str | None = None, also: Callable | None = None) -> Job:
    """The job row for a zip already checked and stored at `key`, committed: under the user's lock, the
    user still there and their quotas counted again (concurrent uploads included). `also(s)` adds to
    the same transaction (a resumable upload's session, marked completed)."""
    s = ctx.s
    uploads.user_lock(s, ctx.user_id)
    if users.find(s, ctx.user_id) is None:  # deleted since this API process cached the token (a few seconds)
        raise Refused(401, "unauthorized", "the API token is not valid",
                      {"WWW-Authenticate": 'Bearer realm="wardrobe", error="invalid_token"'})
    check_quota(ctx, size)  # again, with the size read and concurrent uploads counted
    job = uploads.add_job(s, job_id, ctx.user_id, key, name, size, sha, idem_key)
    if idem_key is not None:
        idempotency.attach_job(s, ctx.user_id, idem_key, job_id)
    if also is not None:
        also(s)
    s.commit()
    return job


def enqueue_job(ctx: Ctx, job_id: uuid.UUID, take_back: Callable[[], None] | None = None) -> None:
    """Queue a committed job's ingest (only after the commit: the worker must find the row). A broker
    that is down answers 503 and fails the job (its zip goes with it), or, given `take_back`, lets the
    caller unmake it so that nothing is lost (a resumable upload keeps its bytes for a later complete)."""
    s = ctx.s
    try:
        enqueue_ingest(ctx.queue, job_id)
    except Exception as e:  # noqa: BLE001 - the broker is down
        log.error("enqueue of job %s failed: %s", job_id, e)
        if take_back is not None:
            take_back()
        else:
            jobstate.fail(s, job_id, "queue_unavailable", "the job could not be queued; upload again")
            idempotency.forget_job(s, job_id)  # "try again shortly" with the same Idempotency-Key makes a new job
        dispatch.commit(s)
        raise unavailable("queue_unavailable", "the job queue is unavailable; try again shortly", None) from None


def forget_zip(storage, key: str) -> None:
    try:
        storage.delete(key)
    except Exception as e:  # noqa: BLE001 - storage down as well: the object stays, unreferenced
        log.error("could not remove the stored zip %s of a refused upload: %s", key, e)


def _claim(ctx: Ctx, key: str, sha: str) -> Job | None:
    """The job already accepted for this key and payload, or None with the key now claimed."""
    try:
        return idempotency.claim(ctx.s, ctx.user_id, key, sha)
    except idempotency.KeyReused:
        raise Refused(422, "idempotency_key_reused", "this Idempotency-Key was used for a different upload") from None
    except idempotency.ClaimInProgress:
        raise Refused(409, "idempotency_in_progress",
                      "an upload with this Idempotency-Key is still being accepted") from None


def _store_job(ctx: Ctx, tmp, name: str, size: int, sha: str, idem_key: str | None) -> Job:
    """Check the zip, store it and add its job row, committed; on any failure neither is left behind."""
    stored = None
    try:
        check_zip(tmp.name, ctx.settings)
        job_id = uuid.uuid4()
        key = keys.upload(ctx.user_id, job_id)
        tmp.seek(0)
        try:
            ctx.storage.put_file(key, tmp, "application/zip")
        except StorageError as e:
            log.error("storing upload failed: %s", e)
            raise unavailable("storage_unavailable", "storage is unavailable; try again shortly") from None
        stored = key
        return commit_job(ctx, job_id, key, name, size, sha, idem_key)
    except BaseException:
        if stored is not None:
            forget_zip(ctx.storage, stored)  # no job names it: it would never be read, nor ever deleted
        if idem_key is not None:
            idempotency.release(ctx.s, ctx.user_id, idem_key)  # a refused upload does not burn the key
        raise


def accept_zip(ctx: Ctx, tmp, name: str, size: int, sha: str, idem_key: str | None) -> Job:
    """A whole zip spooled to `tmp` (POST /v1/uploads) made a queued job; the same job again for an
    Idempotency-Key already accepted with these bytes."""
    if idem_key is not None:
        existing = _claim(ctx, idem_key, sha)
        if existing is not None:
            return existing
    job = _store_job(ctx, tmp, name, size, sha, idem_key)
    enqueue_job(ctx, job.id)
    return job
