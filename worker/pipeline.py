"""The task bodies, free of Celery: ingest a zip into photos, segment photos into items.

Both are safe to run twice (at-least-once delivery): ingest keys photos by the
entry's position in the zip, and segment writes a photo's items and marks it
done in one transaction that first locks the photo and checks it is pending.
Sessions are short: none is held while files move or the model runs.
"""
from __future__ import annotations

import io
import logging
import tempfile
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image
from sqlalchemy import delete, insert, inspect, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from db import jobstate
from core import metrics
from db.bootup import Runtime
from db.models import Item, Job, Photo, PhotoStatus, utcnow
from db.session import session_scope
from core.storage import ObjectNotFound, keys
from core.taxonomy import by_id
from worker.colors import dhash, dominant_colors, small_rgba
from worker.cutouts import make_cutout
from worker.images import ImageRejected, content_hash, decode_photo, pil_open
from segmentation.segmenter import Segmenter
from worker.zipreader import ArchiveRejected, EntryRejected, Limits, candidate_entries, display_name, open_zip, read_entry

log = logging.getLogger("wardrobe.pipeline")

SendSegment = Callable[[uuid.UUID, Sequence[uuid.UUID]], None]


def _limits(rt: Runtime) -> Limits:
    s = rt.settings
    return Limits(s.max_entries, s.max_entry_bytes, s.max_total_uncompressed_bytes, s.max_compression_ratio)


def _job_active(job_id: uuid.UUID) -> bool:
    with session_scope() as s:
        return s.scalar(select(Job.status).where(Job.id == job_id)) in jobstate.ACTIVE


def _send_in_chunks(send: SendSegment, job_id: uuid.UUID, ids: list[uuid.UUID], chunk: int) -> None:
    for i in range(0, len(ids), chunk):
        send(job_id, ids[i : i + chunk])


def _record_failed_entry(job_id, user_id, index, name, code, message) -> None:
    try:
        with session_scope() as s:
            s.add(Photo(job_id=job_id, user_id=user_id, entry_index=index, entry_name=name,
                        status=PhotoStatus.FAILED.value, error_code=code, error_message=message[:2000],
                        processed_at=utcnow()))
            s.flush()
            jobstate.add_progress(s, job_id, failed=1)
        metrics.PHOTOS.labels("failed", code).inc()
    except IntegrityError:
        pass  # another delivery of this task recorded the entry first


def _live_photo(user_id: uuid.UUID, digest: str) -> uuid.UUID | None:
    """The user's photo with these bytes that counts as the original: one segmented (done), or one
    still waiting in a job that is still going. A photo left waiting by a job that ended (failed
    before this was closed with it) never gets items: it is closed here, so the hash is free."""
    with session_scope() as s:
        row = s.execute(select(Photo.id, Photo.status, Photo.job_id, Job.status).join(Job, Job.id == Photo.job_id)
                        .where(Photo.user_id == user_id, Photo.sha256 == digest,
                               Photo.status.in_([PhotoStatus.PENDING.value, PhotoStatus.DONE.value]))).first()
        if row is None:
            return None
        pid, status, job_id, job_status = row
        if status == PhotoStatus.DONE.value or job_status in jobstate.ACTIVE:
            return pid
        closed = s.execute(update(Photo).where(Photo.id == pid, Photo.status == PhotoStatus.PENDING.value)
                           .values(status=PhotoStatus.FAILED.value, error_code="job_ended",
                                   error_message=f"the job ended ({job_status}) before this photo was segmented",
                                   processed_at=utcnow())).rowcount
        if closed:
            jobstate.add_progress(s, job_id, failed=closed)
            metrics.PHOTOS.labels("failed", "job_ended").inc(closed)
        return None


def _entry_recorded(job_id: uuid.UUID, index: int) -> bool:
    with session_scope() as s:
        return s.scalar(select(Photo.id).where(Photo.job_id == job_id, Photo.entry_index == index)) is not None


def _record_duplicate(job_id, user_id, index, name, digest, original) -> None:
    try:
        with session_scope() as s:
            s.add(Photo(job_id=job_id, user_id=user_id, entry_index=index, entry_name=name, sha256=digest,
                        status=PhotoStatus.DUPLICATE.value, duplicate_of=original, processed_at=utcnow()))
            s.flush()
            jobstate.add_progress(s, job_id, duplicate=1)
        metrics.PHOTOS.labels("duplicate", "").inc()
    except IntegrityError:
        pass  # this entry was recorded by another delivery of the task


INGEST_UPLOADS_IN_FLIGHT = 8  # photos stored ahead of their rows...
INGEST_BYTES_IN_FLIGHT = 64 << 20  # ...and no more bytes than this held for them (originals can be large)


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


def ingest(job_id: str | uuid.UUID, rt: Runtime, send_segment: SendSegment) -> None:
    jid = uuid.UUID(str(job_id))
    settings = rt.settings
    with session_scope() as s:
        job = s.get(Job, jid)
        if job is None:
            log.warning("ingest: job %s does not exist", jid)
            return
        if job.status not in jobstate.ACTIVE:
            return  # cancelled or already finished
        jobstate.mark_running(s, jid)
        user_id, upload_key = job.user_id, job.upload_key
        pending_before = list(s.scalars(select(Photo.id).where(Photo.job_id == jid, Photo.status == PhotoStatus.PENDING.value)))
        seen = set(s.scalars(select(Photo.entry_index).where(Photo.job_id == jid)))
        already_ingested = job.ingest_finished

    # A second delivery re-sends what may not have reached the broker the first time.
    _send_in_chunks(send_segment, jid, pending_before, settings.segment_chunk)
    if already_ingested:
        with session_scope() as s:
            jobstate.maybe_finish(s, jid)
        return

    with tempfile.NamedTemporaryFile(prefix="wardrobe-ingest-", suffix=".zip") as tmp:
        try:
            rt.storage.download_to(upload_key, tmp.name)
        except ObjectNotFound:
            with session_scope() as s:
                jobstate.fail(s, jid, "upload_missing", "the uploaded zip is no longer in storage")
            return
        try:
            zf = open_zip(tmp.name)
            entries = candidate_entries(zf, _limits(rt))
        except ArchiveRejected as e:
            with session_scope() as s:
                jobstate.fail(s, jid, e.code, e.message)
            return
        with session_scope() as s:
            s.execute(update(Job).where(Job.id == jid).values(photos_total=len(entries), updated_at=utcnow()))

        budget = [settings.max_total_uncompressed_bytes]
        ready: list[uuid.UUID] = []
        storing: deque[_Storing] = deque()  # photos whose bytes are on their way to storage, in order

        def settle(p: _Storing) -> None:
            """Once a photo's bytes are stored, its row; or, if the row lost a race, undo the store."""
            for f in p.puts:
                f.result()  # a storage error raises here and retries the task
            for attempt in range(3):
                try:
                    with session_scope() as s:
                        s.add(Photo(id=p.id, job_id=jid, user_id=user_id, entry_index=p.index, entry_name=p.name,
                                    storage_key=p.key, sha256=p.digest, width=p.size[0], height=p.size[1],
                                    original_width=p.size[2], original_height=p.size[3]))
                    break
                except IntegrityError:
                    # either another delivery stored this entry meanwhile, or another upload stored the same
                    # bytes; or that upload's photo was closed since (its job ended): then try again
                    original = None if _entry_recorded(jid, p.index) else _live_photo(user_id, p.digest)
                    if original is None and attempt < 2 and not _entry_recorded(jid, p.index):
                        continue
                    for key in p.keys:
                        rt.storage.delete(key)
                    if original is not None:
                        _record_duplicate(jid, user_id, p.index, p.name, p.digest, original)
                    return
            ready.append(p.id)
            if len(ready) >= settings.segment_chunk:
                send_segment(jid, ready[:])  # segmentation starts while ingest goes on
                ready.clear()

        def settle_all() -> None:
            while storing:
                settle(storing.popleft())

        for n, (index, info) in enumerate(entries):
            if index in seen:
                continue
            if n % 25 == 0:
                settle_all()
                if not _job_active(jid):
                    return  # cancelled while ingesting
            name = display_name(info)
            try:
                data = read_entry(zf, info, _limits(rt), budget)
                photo = decode_photo(data, settings.max_pixels, settings.work_max_side, settings.photo_jpeg_quality)
            except (EntryRejected, ImageRejected) as e:
                _record_failed_entry(jid, user_id, index, name, e.code, e.message)
                continue
            digest = content_hash(data)
            if any(p.digest == digest for p in storing):
                settle_all()  # the same bytes earlier in this zip: their row first, then this is its duplicate
            original = _live_photo(user_id, digest)
            if original is not None:
                _record_duplicate(jid, user_id, index, name, digest, original)
                continue
            photo_id = uuid.uuid4()
            stored = [(keys.photo(user_id, photo_id), photo.jpeg, "image/jpeg")]
            if settings.keep_originals and photo.jpeg is not data:
                stored.append((keys.original(user_id, photo_id), data, "application/octet-stream"))
            # Uploads go on the I/O threads while the next entries are read and decoded: against S3
            # each is a round trip. The row follows the upload (settle), a few photos behind.
            size = (photo.width, photo.height, photo.original_width, photo.original_height)
            storing.append(_Storing(photo_id, index, name, digest, size, [k for k, _, _ in stored],
                                    [_io().submit(rt.storage.put_bytes, *args) for args in stored],
                                    sum(len(b) for _, b, _ in stored)))
            while len(storing) > INGEST_UPLOADS_IN_FLIGHT or (
                    len(storing) > 1 and sum(p.nbytes for p in storing) > INGEST_BYTES_IN_FLIGHT):
                settle(storing.popleft())
        settle_all()
        if ready:
            send_segment(jid, ready)
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == jid).values(ingest_finished=True, updated_at=utcnow()))
        s.flush()
        if not entries:
            jobstate.fail(s, jid, "no_images", "the zip holds no image files")
        else:
            jobstate.maybe_finish(s, jid)


@dataclass
class _Loaded:
    id: uuid.UUID
    user_id: uuid.UUID
    rgb: np.ndarray


def _decode_stored(data: bytes) -> np.ndarray:
    """A stored photo (always an upright 8-bit RGB JPEG) as an RGB array. OpenCV decodes it
    4-5x faster than PIL + NumPy here, pixel for pixel the same; but OpenCV returns what it
    could of a truncated file, so a JPEG that does not end in its EOI marker goes through PIL,
    which refuses it."""
    if data[:2] == b"\xff\xd8" and data[-64:].rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is not None:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    with pil_open(io.BytesIO(data)) as im:  # Pillow's own, not Ultralytics' replacement (see worker.images)
        return np.asarray(im.convert("RGB"))


def _lock_active_job(s, job_id: uuid.UUID) -> bool:
    """Lock the job row, always first (before any photo row): every writer takes the locks in
    the same order, so a cancel and a commit wait for each other instead of deadlocking."""
    return s.scalar(select(Job.status).where(Job.id == job_id).with_for_update()) in jobstate.ACTIVE


def mark_photos_failed(job_id: uuid.UUID, photo_ids: Sequence[uuid.UUID], code: str, message: str) -> None:
    ids = [uuid.UUID(str(p)) for p in photo_ids]
    if not ids:
        return
    with session_scope() as s:
        s.scalar(select(Job.id).where(Job.id == job_id).with_for_update())
        res = s.execute(
            update(Photo)
            .where(Photo.id.in_(ids), Photo.status == PhotoStatus.PENDING.value)
            .values(status=PhotoStatus.FAILED.value, error_code=code, error_message=message[:2000], processed_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if res.rowcount:
            jobstate.add_progress(s, job_id, failed=res.rowcount)
            s.flush()
            jobstate.maybe_finish(s, job_id)
    if res.rowcount:
        metrics.PHOTOS.labels("failed", code).inc(res.rowcount)


DUPLICATE_MAX_DISTANCE = 6  # of 64 dHash bits


def _aspect(bbox) -> float:
    return (bbox[2] - bbox[0]) / max(bbox[3] - bbox[1], 1)


def _remember(bucket: tuple[list, list, list], item_id, phash: int, bbox) -> None:
    ids, hashes, ratios = bucket
    ids.append(item_id)
    hashes.append(phash)
    ratios.append(_aspect(bbox))


def _flag_near_duplicates(s, user_id: uuid.UUID, batch: list[tuple[uuid.UUID, list[Item]]]) -> None:
    """Mark items that look like one the user already has (same class and colour, cut-outs
    a few hash bits apart, a box of similar shape) as near-duplicates of the closest such item.
    Items of the same photo (a pair of shoes) are never duplicates of each other; earlier photos
    of the batch count.

    Only the batch's own (class, colour) pairs are read back, and each item is compared with its
    pair's candidates in one NumPy pass: a user's catalogue grows, and this runs on every commit."""
    pairs = {(i.class_id, i.color) for _, items in batch for i in items if i.color and i.phash is not None}
    if not pairs:
        return
    rows = s.connection().execute(  # plain rows: no ORM loading for what is only compared
        select(Item.id, Item.class_id, Item.color, Item.phash, Item.bbox)
        .where(Item.user_id == user_id, tuple_(Item.class_id, Item.color).in_(sorted(pairs)),
               Item.photo_id.not_in([pid for pid, _ in batch]),
               Item.duplicate_of.is_(None), Item.phash.is_not(None))
    ).all()
    # per pair: ids, hashes (signed 64-bit, as stored), box aspect ratios. The batch's own photos
    # were left out above and its items join below only after their photo.
    known: dict[tuple, tuple[list, list, list]] = {p: ([], [], []) for p in pairs}
    for rid, cid, color, ph, bbox in rows:
        _remember(known[(cid, color)], rid, ph, bbox)

    for _pid, items in batch:
        keep = []
        for item in items:
            if not item.color or item.phash is None:
                continue
            ids, hashes, ratios = known[(item.class_id, item.color)]
            if ids:
                r = _aspect(item.bbox)
                theirs = np.array(ratios)
                dist = np.bitwise_count(np.array(hashes, np.int64).view(np.uint64) ^ np.int64(item.phash).view(np.uint64))
                ok = (np.abs(theirs - r) <= 0.15 * np.maximum(theirs, r)) & (dist <= DUPLICATE_MAX_DISTANCE)
                if ok.any():
                    item.duplicate_of = ids[int(np.argmin(np.where(ok, dist, 255)))]
                    continue
            keep.append(item)
        for item in keep:  # after the photo: its own items do not match each other
            _remember(known[(item.class_id, item.color)], item.id, item.phash, item.bbox)


_ITEM_COLUMNS = frozenset(c.key for c in Item.__table__.columns)


def _row(item: Item) -> dict:
    """The values set on an (unsaved) Item, as an INSERT row; unset columns take their defaults."""
    return {k: v for k, v in inspect(item).dict.items() if k in _ITEM_COLUMNS}


def commit_photos(job_id: uuid.UUID, user_id: uuid.UUID, batch: list[tuple[uuid.UUID, list[Item]]]) -> int:
    """Write a batch of photos' items and mark them done, each photo once, in one transaction.
    Photos that are no longer pending (a second delivery of the task) are skipped. Returns how
    many photos this call committed."""
    if not batch:
        return 0
    with session_scope() as s:
        # the job first: a cancel either lands before (and nothing is written) or waits for this
        if not _lock_active_job(s, job_id):
            return 0
        ids = sorted(pid for pid, _ in batch)
        pending = set(s.scalars(select(Photo.id).where(Photo.id.in_(ids), Photo.status == PhotoStatus.PENDING.value)
                                .order_by(Photo.id).with_for_update()))
        todo = [(pid, items) for pid, items in batch if pid in pending]
        if not todo:
            return 0
        s.execute(delete(Item).where(Item.photo_id.in_(pending)).execution_options(synchronize_session=False))
        _flag_near_duplicates(s, user_id, todo)
        rows = [_row(item) for _, items in todo for item in items]
        if rows:
            # one multi-row INSERT: the unit of work's per-object bookkeeping cost more than the rows
            s.execute(insert(Item), rows)
        s.execute(update(Photo).where(Photo.id.in_(pending))
                  .values(status=PhotoStatus.DONE.value, processed_at=utcnow()).execution_options(synchronize_session=False))
        s.flush()
        jobstate.add_progress(s, job_id, done=len(todo), items=sum(len(items) for _, items in todo))
        s.flush()
        jobstate.maybe_finish(s, job_id)
    metrics.PHOTOS.labels("done", "").inc(len(todo))  # after the commit: counted once, as the catalogue has them
    metrics.ITEMS.inc(len(rows))
    return len(todo)


COMMIT_EVERY = 8  # photos per catalogue transaction...
COMMIT_AFTER_S = 0.5  # ...or fewer, once this long has passed since the last

_io_pool = None


def _io():
    """Threads for storage round trips and decoding ahead of the model: shared by the process's tasks."""
    global _io_pool
    if _io_pool is None:
        _io_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="wardrobe-io")
    return _io_pool


class _Inline:
    """An executor that runs each call at once, on the calling thread: post-processing in turn
    with the model (WARDROBE_POST_OVERLAP=off)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, fn, *args):
        f: Future = Future()
        f.set_result(fn(*args))  # an error raises here, at once: the task retries sooner
        return f


def _load(rt: Runtime, jid: uuid.UUID, pid, uid, key) -> _Loaded | None:
    try:
        return _Loaded(pid, uid, _decode_stored(rt.storage.get_bytes(key)))
    except ObjectNotFound:
        mark_photos_failed(jid, [pid], "photo_missing", "the stored photo is gone")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        mark_photos_failed(jid, [pid], "unreadable_image", f"stored photo cannot be decoded: {e}")
    return None


def _items_for(rt: Runtime, jid: uuid.UUID, photo: _Loaded, dets, version: str, t: dict,
               uploads: list[Future]) -> list[Item]:
    """Cut-outs, colours and hashes for one photo's detections. The cut-outs' uploads are started
    on the I/O threads and added to `uploads`, not waited for: the caller waits before it writes
    the rows that name them. Adds the CPU seconds of each stage to `t` (cutout: mask and encoding;
    features: colours and hash)."""
    clock = time.thread_time  # this thread's CPU time: the cost, whatever else runs beside it
    settings = rt.settings
    items: list[Item] = []
    for det in dets:
        t0 = clock()
        cut = make_cutout(photo.rgb, det, settings.cutout_format, settings.cutout_quality, settings.cutout_max_side)
        t1 = clock()
        t["cutout"] = t.get("cutout", 0.0) + t1 - t0
        if cut is None:
            continue
        index = len(items)
        key = keys.cutout(photo.user_id, photo.id, index, cut.ext)
        uploads.append(_io().submit(rt.storage.put_bytes, key, cut.data, cut.content_type))
        cls = by_id(det.class_id)
        thumb = small_rgba(cut.rgba)  # once: colours and hash both read the same 32-px thumbnail
        colors = dominant_colors(thumb)
        h = dhash(thumb)
        t["features"] = t.get("features", 0.0) + clock() - t1
        items.append(
            Item(
                id=uuid.uuid4(), colors=colors, color=colors[0]["name"] if colors else None,
                phash=h - (1 << 64) if h >= (1 << 63) else h,
                user_id=photo.user_id, photo_id=photo.id, job_id=jid, instance_index=index,
                class_id=cls.id, category=cls.name, supercategory=cls.supercategory,
                confidence=round(det.confidence, 4), bbox=cut.bbox, polygons=cut.polygons,
                area_fraction=round(cut.area_fraction, 6), model_version=version,
                cutout_key=key, cutout_content_type=cut.content_type, cutout_width=cut.size[0], cutout_height=cut.size[1],
                alternatives=[{"class_id": c, "category": by_id(c).name, "confidence": round(conf, 4)}
                              for c, conf in det.alternatives] or None,
            )
        )
    return items


def segment(job_id: str | uuid.UUID, photo_ids: Sequence[str | uuid.UUID], rt: Runtime, segmenter: Segmenter,
            timings: dict | None = None) -> int:
    """Segment the pending photos among photo_ids; returns how many this call committed.

    Stored photos are fetched and decoded by I/O threads ahead of the model. Each batch's
    post-processing (cut-outs, colours, hashes, encoding, uploads, rows) runs on a second
    thread while the model works on the next batch (WARDROBE_POST_OVERLAP=off: in turn with
    it; `make bench` measured that slower even on 2 vCPUs, where the thread competes with
    the model's).

    `timings`, when given, accumulates seconds spent waiting for photos, in the model, and in
    post-processing (which overlaps the model), and post-processing's CPU seconds by stage: the
    benchmark's breakdown."""
    clock = time.perf_counter
    t = timings if timings is not None else {}
    jid = uuid.UUID(str(job_id))
    ids = [uuid.UUID(str(p)) for p in photo_ids]
    settings = rt.settings
    with session_scope() as s:
        if s.scalar(select(Job.status).where(Job.id == jid)) not in jobstate.ACTIVE:
            return 0
        rows = s.execute(
            select(Photo.id, Photo.user_id, Photo.storage_key)
            .where(Photo.id.in_(ids), Photo.job_id == jid, Photo.status == PhotoStatus.PENDING.value)
        ).all()
    loading = [_io().submit(_load, rt, jid, pid, uid, key) for pid, uid, key in rows]

    unwritten: list[tuple[uuid.UUID, list[Item]]] = []  # touched by the post thread only
    uploads: list[Future] = []  # their cut-outs on the way to storage; the post thread's too
    last_flush = [clock()]

    def flush() -> int:
        t_start, c_start = clock(), time.thread_time()
        last_flush[0] = t_start
        # Rows only once the cut-outs they name are stored. Waiting here, not after each photo, lets
        # the uploads of several photos overlap the next photos' cut-outs: against S3 a photo's
        # uploads take a round trip. A storage error raises here, before any of these rows are
        # written, and the task is retried.
        pending, uploads[:] = uploads[:], []
        try:
            for f in pending:
                f.result()
        except BaseException:
            unwritten.clear()  # none of these rows: one of them names a cut-out that is not stored
            raise
        t["store"] = t.get("store", 0.0) + clock() - t_start
        # a task's photos are all one job's, one user's
        done = commit_photos(jid, rows[0][1], unwritten[:]) if unwritten else 0
        unwritten.clear()
        t["commit"] = t.get("commit", 0.0) + time.thread_time() - c_start
        t["post"] = t.get("post", 0.0) + clock() - t_start
        t["post_cpu"] = t.get("post_cpu", 0.0) + time.thread_time() - c_start
        return done

    def post(batch: list[_Loaded], results) -> int:
        t_start, c_start = clock(), time.thread_time()
        unwritten.extend((photo.id, _items_for(rt, jid, photo, dets, segmenter.version, t, uploads))
                         for photo, dets in zip(batch, results))
        t["post"] = t.get("post", 0.0) + clock() - t_start
        t["post_cpu"] = t.get("post_cpu", 0.0) + time.thread_time() - c_start
        # rows go in a few photos at a time, not per forward pass (one photo on the CPU), and at
        # least every COMMIT_AFTER_S so progress shows and a task cut short keeps what it did
        if len(unwritten) >= COMMIT_EVERY or clock() - last_flush[0] >= COMMIT_AFTER_S:
            return flush()
        return 0

    bs = max(1, getattr(segmenter, "batch", 0) or settings.batch_size or 1)
    pending_posts = []
    overlap = settings.post_overlap != "off"
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wardrobe-post") if overlap else _Inline()
    with pool as post_pool:
        for start in range(0, len(loading), bs):
            t0 = clock()
            batch = [p for p in (f.result() for f in loading[start : start + bs]) if p is not None]
            t1 = clock()
            t["load"] = t.get("load", 0.0) + t1 - t0
            if not batch:
                continue
            results = segmenter.segment([p.rgb for p in batch])
            t2 = clock()
            t["infer"] = t.get("infer", 0.0) + t2 - t1
            metrics.INFER_SECONDS.observe(t2 - t1)
            metrics.INFER_PHOTOS.inc(len(batch))
            pending_posts.append(post_pool.submit(post, batch, results))
        pending_posts.append(post_pool.submit(flush))
        return sum(f.result() for f in pending_posts)
