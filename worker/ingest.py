"""The ingest task's body, free of Celery: a zip into photos, in steps.

Take the job up (`photos.begin_ingest`), re-send what a first delivery may not have sent, fetch and
open the zip, then for each entry: read it under the limits, decode it, drop a duplicate, and start
its upload on the I/O threads; its row follows once the bytes are stored (`settle`), a few photos
behind. Safe to run twice: photos are keyed by the entry's position in the zip. No session is held
while files move.
"""
from __future__ import annotations

import logging
import tempfile
import uuid
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable, Sequence

from sqlalchemy.exc import IntegrityError

from core import logs
from core.logs import fields
from core.storage import ObjectNotFound, keys
from db import photos, quota
from core.runtime import Runtime
from worker.images import ImageRejected, content_hash, decode_photo
from worker.iopool import io_pool
from worker.zipreader import ArchiveRejected, EntryRejected, Limits, candidate_entries, display_name, open_zip, read_entry

log = logging.getLogger("wardrobe.pipeline")

SendSegment = Callable[[uuid.UUID, Sequence[uuid.UUID]], None]

QUOTA_CODE = "storage_quota_exceeded"
INGEST_UPLOADS_IN_FLIGHT = 8  # photos stored ahead of their rows...
INGEST_BYTES_IN_FLIGHT = 64 << 20  # ...and no more bytes than this held for them (originals can be large)


def limits(rt: Runtime) -> Limits:
    s = rt.settings
    return Limits(s.max_entries, s.max_entry_bytes, s.max_total_uncompressed_bytes, s.max_compression_ratio)


def send_in_chunks(send: SendSegment, job_id: uuid.UUID, ids: list[uuid.UUID], chunk: int) -> None:
    for i in range(0, len(ids), chunk):
        send(job_id, ids[i : i + chunk])


@dataclass
class _Storing:
    id: uuid.UUID
    index: int
    name: str
    digest: str
    size: tuple[int, int, int, int]  # width, height, original width, original height: not the pixels
    keys: list[str]
    puts: list[Future]
    nbytes: int

    @property
    def key(self) -> str:
        return self.keys[0]


class _Ingest:
    """One delivery's walk through one zip: the photos on their way to storage, in order, and the
    stored ones not yet sent to segment."""

    def __init__(self, jid: uuid.UUID, user_id: uuid.UUID, rt: Runtime, send_segment: SendSegment):
        self.jid, self.user_id, self.rt, self.send_segment = jid, user_id, rt, send_segment
        self.settings = rt.settings
        self.budget = [self.settings.max_total_uncompressed_bytes]
        self.ready: list[uuid.UUID] = []
        self.storing: deque[_Storing] = deque()
        self.over_quota = False  # a photo passed the user's WARDROBE_MAX_STORED_BYTES: the rest fail unread

    def settle(self, p: _Storing) -> None:
        """Once a photo's bytes are stored, its row; or, if the row lost a race, undo the store."""
        for f in p.puts:
            f.result()  # a storage error raises here and retries the task
        for attempt in range(3):
            try:
                if photos.add_stored_photo(p.id, self.jid, self.user_id, p.index, p.name, p.key, p.digest, p.size,
                                           p.nbytes, self.settings):
                    break
                self.forget(p)  # over the user's quota: the bytes go, the entry fails
                self.over_quota = True
                photos.record_failed_entry(self.jid, self.user_id, p.index, p.name, QUOTA_CODE,
                                           quota.refused_message(self.settings))
                return
            except photos.JobEnded:
                self.forget(p)
                raise
            except IntegrityError:
                if not photos.job_active(self.jid):  # deleted meanwhile (the row's job is gone)
                    self.forget(p)
                    raise photos.JobEnded() from None
                # either another delivery stored this entry meanwhile, or another upload stored the same
                # bytes; or that upload's photo was closed since (its job ended): then try again
                recorded = photos.entry_recorded(self.jid, p.index)
                original = None if recorded else photos.live_photo(self.user_id, p.digest)
                if original is None and attempt < 2 and not photos.entry_recorded(self.jid, p.index):
                    continue
                self.forget(p)
                if original is not None:
                    photos.record_duplicate(self.jid, self.user_id, p.index, p.name, p.digest, original)
                return
        log.debug("photo %s stored from entry %d", p.id, p.index, extra=fields(photo_id=p.id))
        self.ready.append(p.id)
        if len(self.ready) >= self.settings.segment_chunk:
            self.send_segment(self.jid, self.ready[:])  # segmentation starts while ingest goes on
            self.ready.clear()

    def forget(self, p: _Storing) -> None:
        """A photo's stored bytes that will have no row."""
        self.rt.storage.delete_many(p.keys)

    def abandon(self) -> None:
        """The job ended meanwhile: the photos on their way to storage will have no rows; their bytes go."""
        while self.storing:
            p = self.storing.popleft()
            for f in p.puts:
                f.exception()  # waits until this upload has ended, whatever its outcome
            self.forget(p)

    def settle_all(self) -> None:
        while self.storing:
            self.settle(self.storing.popleft())

    def entry(self, zf, index: int, info) -> None:
        """Read, decode and check one entry; start its upload."""
        settings, jid, uid = self.settings, self.jid, self.user_id
        name = display_name(info)
        if self.over_quota:  # the rest of the zip is not read: the user has no room left for it
            photos.record_failed_entry(jid, uid, index, name, QUOTA_CODE, quota.refused_message(settings))
            return
        try:
            data = read_entry(zf, info, limits(self.rt), self.budget)
            photo = decode_photo(data, settings.max_pixels, settings.work_max_side, settings.photo_jpeg_quality)
        except (EntryRejected, ImageRejected) as e:
            log.info("entry %d (%s) rejected: %s", index, name, e.code)
            photos.record_failed_entry(jid, uid, index, name, e.code, e.message)
            return
        digest = content_hash(data)
        if any(p.digest == digest for p in self.storing):
            self.settle_all()  # the same bytes earlier in this zip: their row first, then this is its duplicate
        original = photos.live_photo(uid, digest)
        if original is not None:
            photos.record_duplicate(jid, uid, index, name, digest, original)
            return
        photo_id = uuid.uuid4()
        stored = [(keys.photo(uid, photo_id), photo.jpeg, "image/jpeg")]
        if settings.keep_originals and photo.jpeg is not data:
            stored.append((keys.original(uid, photo_id), data, "application/octet-stream"))
        # Uploads go on the I/O threads while the next entries are read and decoded: against S3
        # each is a round trip. The row follows the upload (settle), a few photos behind.
        size = (photo.width, photo.height, photo.original_width, photo.original_height)
        self.storing.append(_Storing(photo_id, index, name, digest, size, [k for k, _, _ in stored],
                                     [io_pool().submit(self.rt.storage.put_bytes, *args) for args in stored],
                                     sum(len(b) for _, b, _ in stored)))
        while len(self.storing) > INGEST_UPLOADS_IN_FLIGHT or (
                len(self.storing) > 1 and sum(p.nbytes for p in self.storing) > INGEST_BYTES_IN_FLIGHT):
            self.settle(self.storing.popleft())

    def entries(self, zf, entries, seen: set[int]) -> bool:
        """Every entry not recorded yet; False when the job was cancelled (or deleted) meanwhile: each
        row is written only while the job is going (db.photos.JobEnded), so a cancel has none added behind it."""
        try:
            for index, info in entries:
                if index not in seen:
                    self.entry(zf, index, info)
            self.settle_all()
        except photos.JobEnded:
            self.abandon()
            return False
        if self.ready:
            self.send_segment(self.jid, self.ready)
        return True


def _open(rt: Runtime, jid: uuid.UUID, upload_key: str, path: str):
    """The zip and its candidate entries; None (and the job failed) when it is gone or rejected."""
    try:
        rt.storage.download_to(upload_key, path)
    except ObjectNotFound:
        photos.fail_job(jid, "upload_missing", "the uploaded zip is no longer in storage")
        return None
    try:
        zf = open_zip(path)
        return zf, candidate_entries(zf, limits(rt))
    except ArchiveRejected as e:
        photos.fail_job(jid, e.code, e.message)
        return None


def run(jid: uuid.UUID, rt: Runtime, send_segment: SendSegment) -> None:
    start = photos.begin_ingest(jid)
    if start is None:
        if photos.job_missing(jid):
            log.warning("ingest: job %s does not exist", jid, extra=fields(job_id=jid, task="ingest"))
        return  # gone, cancelled or already finished
    with logs.adding(job_id=jid, user_id=start.user_id):  # on every line logged on the way
        _ingest(jid, start, rt, send_segment)


def _ingest(jid: uuid.UUID, start, rt: Runtime, send_segment: SendSegment) -> None:
    # A second delivery re-sends what may not have reached the broker the first time.
    send_in_chunks(send_segment, jid, start.pending, rt.settings.segment_chunk)
    if start.ingested:
        photos.maybe_finish(jid)
        return
    with tempfile.NamedTemporaryFile(prefix="wardrobe-ingest-", suffix=".zip") as tmp:
        opened = _open(rt, jid, start.upload_key, tmp.name)
        if opened is None:
            return
        zf, entries = opened
        photos.set_photos_total(jid, len(entries))
        if not _Ingest(jid, start.user_id, rt, send_segment).entries(zf, entries, start.seen):
            return
    photos.finish_ingest(jid, len(entries))
    log.info("ingested %d entries of job %s", len(entries), jid)
