"""The segment task's body, free of Celery: photos into items, in steps.

Fetch and decode the pending photos on the I/O threads ahead of the model (`load`); run the model
a batch at a time; post-process each batch (cut-outs, colours, hashes, encoding, uploads: `items_for`)
on a second thread while the model works on the next (WARDROBE_POST_OVERLAP=off: in turn with it);
every few photos, once their cut-outs are stored, write their items and mark them done in one
transaction (`flush` → db.items.commit_photos). Safe to run twice: the commit first locks the
photo and checks it is pending. No session is held while files move or the model runs.
"""
from __future__ import annotations

import io
import logging
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol, Sequence

import cv2
import numpy as np
from PIL import Image

from core import logs, metrics
from core.storage import ObjectNotFound, StorageError, keys
from core.taxonomy import by_id
from db import photos
from core.runtime import Runtime
from db.items import NewItem, commit_photos
from segmentation.segmenter import Segmenter
from worker.colors import dhash, dominant_colors, small_rgba
from worker.cutouts import make_cutout
from worker.images import pil_open
from worker.iopool import io_pool, post_pool


log = logging.getLogger("wardrobe.pipeline")

COMMIT_EVERY = 8  # photos per catalogue transaction...
COMMIT_AFTER_S = 0.5  # ...or fewer, once this long has passed since the last


@dataclass
class Loaded:
    id: uuid.UUID
    user_id: uuid.UUID
    rgb: np.ndarray


def decode_stored(data: bytes) -> np.ndarray:
    """A stored photo (always an upright 8-bit RGB JPEG) as an RGB array. OpenCV decodes it
    faster than PIL + NumPy, pixel for pixel the same; but OpenCV returns what it could of a
    truncated file, so a JPEG that does not end in its EOI marker goes through PIL, which
    refuses it."""
    if data[:2] == b"\xff\xd8" and data[-64:].rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is not None:
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    with pil_open(io.BytesIO(data)) as im:  # Pillow's own, not Ultralytics' replacement (see worker.images)
        return np.asarray(im.convert("RGB"))


def load(rt: Runtime, jid: uuid.UUID, pid, uid, key) -> Loaded | None:
    try:
        return Loaded(pid, uid, decode_stored(rt.storage.get_bytes(key)))
    except ObjectNotFound:
        photos.mark_photos_failed(jid, [pid], "photo_missing", "the stored photo is gone")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        photos.mark_photos_failed(jid, [pid], "unreadable_image", f"stored photo cannot be decoded: {e}")
    return None


def _item(item_id: uuid.UUID, jid: uuid.UUID, photo: Loaded, det, cut, index: int, key: str, version: str,
          thumb) -> NewItem:
    cls = by_id(det.class_id)
    colors = dominant_colors(thumb)
    h = dhash(thumb)
    return NewItem(
        id=item_id, colors=colors, color=colors[0]["name"] if colors else None,
        phash=h - (1 << 64) if h >= (1 << 63) else h,
        user_id=photo.user_id, photo_id=photo.id, job_id=jid, instance_index=index,
        class_id=cls.id, category=cls.name, supercategory=cls.supercategory,
        confidence=round(det.confidence, 4), bbox=cut.bbox, polygons=cut.polygons,
        area_fraction=round(cut.area_fraction, 6), model_version=version,
        cutout_key=key, cutout_content_type=cut.content_type, cutout_width=cut.size[0], cutout_height=cut.size[1],
        cutout_bytes=len(cut.data),
        alternatives=[{"class_id": c, "category": by_id(c).name, "confidence": round(conf, 4)}
                      for c, conf in det.alternatives] or None,
    )


class Stages(Protocol):
    """Where a segment call's time goes: `add` is told each stage's seconds as they pass. Wall-clock:
    load (waiting for photos), infer (the model), post (post-processing, which overlaps the model),
    store (waiting for cut-out uploads); this thread's CPU: post_cpu, and within it cutout (mask and
    encoding), features (colours and hash), commit. Called from the loop's thread and the post
    thread, never for the same stage from both."""

    def add(self, stage: str, seconds: float) -> None: ...


class StageMetrics:
    """The worker's observer: the seconds, added up by stage, in the process's metrics
    (wardrobe_segment_stage_seconds_total{stage}). The benchmark passes its own."""

    def add(self, stage: str, seconds: float) -> None:
        metrics.SEGMENT_STAGE_SECONDS.labels(stage).inc(max(0.0, seconds))


def items_for(rt: Runtime, jid: uuid.UUID, photo: Loaded, dets, version: str, t: Stages,
              uploads: list[Future]) -> list[NewItem]:
    """Cut-outs, colours and hashes for one photo's detections. The cut-outs' uploads are started
    on the I/O threads and added to `uploads`, not waited for: the caller waits before it writes
    the rows that name them. Adds the CPU seconds of each stage to `t` (cutout: mask and encoding;
    features: colours and hash)."""
    clock = time.thread_time  # this thread's CPU time: the cost, whatever else runs beside it
    settings = rt.settings
    items: list[NewItem] = []
    for det in dets:
        t0 = clock()
        cut = make_cutout(photo.rgb, det, settings.cutout_format, settings.cutout_quality, settings.cutout_max_side)
        t1 = clock()
        t.add("cutout", t1 - t0)
        if cut is None:
            continue
        item_id = uuid.uuid4()
        key = keys.cutout(photo.user_id, photo.id, item_id, cut.ext)
        uploads.append(io_pool().submit(rt.storage.put_bytes, key, cut.data, cut.content_type))
        thumb = small_rgba(cut.rgba)  # once: colours and hash both read the same 32-px thumbnail
        items.append(_item(item_id, jid, photo, det, cut, len(items), key, version, thumb))
        t.add("features", clock() - t1)
    return items


class _Segmentation:
    """One delivery's photos through the model. `unwritten` and `uploads` are the post thread's."""

    def __init__(self, jid: uuid.UUID, user_id: uuid.UUID, rt: Runtime, segmenter: Segmenter, t: Stages):
        self.jid, self.user_id, self.rt, self.segmenter, self.t = jid, user_id, rt, segmenter, t
        self.unwritten: list[tuple[uuid.UUID, list[NewItem]]] = []
        self.uploads: list[Future] = []  # their cut-outs on the way to storage
        self.last_flush = time.perf_counter()

    def flush(self) -> int:
        t, clock = self.t, time.perf_counter
        t_start, c_start = clock(), time.thread_time()
        self.last_flush = t_start
        # Rows only once the cut-outs they name are stored. Waiting here, not after each photo, lets
        # the uploads of several photos overlap the next photos' cut-outs: against S3 a photo's
        # uploads take a round trip. A storage error raises here, before any of these rows are
        # written, and the task is retried.
        pending, self.uploads[:] = self.uploads[:], []
        try:
            for f in pending:
                f.result()
        except BaseException:
            # none of these rows: one of them names a cut-out that is not stored; the others go
            for f in pending:
                if not f.cancelled():
                    f.exception()  # waits until this upload has ended, whatever its outcome
            self.forget_cutouts([item.cutout_key for _, items in self.unwritten for item in items])
            self.unwritten.clear()
            raise
        t.add("store", clock() - t_start)
        # a task's photos are all one job's, one user's
        batch, self.unwritten[:] = self.unwritten[:], []
        committed = commit_photos(self.jid, self.user_id, batch) if batch else set()
        for pid, items in batch:
            if pid in committed:
                log.info("photo %s: %d items", pid, len(items), extra=logs.fields(photo_id=pid))
        self.forget_cutouts([item.cutout_key for pid, items in batch if pid not in committed for item in items])
        done = len(committed)
        t.add("commit", time.thread_time() - c_start)
        t.add("post", clock() - t_start)
        t.add("post_cpu", time.thread_time() - c_start)
        return done

    def forget_cutouts(self, keys_: list[str]) -> None:
        """Cut-outs stored for photos whose items were not written (the job was cancelled or deleted
        meanwhile, or another delivery wrote them first): no row names them, so they go now, not after
        the sweeper's grace period."""
        if keys_:
            try:
                self.rt.storage.delete_many(keys_)
            except StorageError as e:  # the sweeper removes them later
                log.warning("segment: %d cut-outs of unwritten items stay until the sweeper's pass: %s", len(keys_), e)

    def post(self, batch: list[Loaded], results) -> int:
        t, clock = self.t, time.perf_counter
        t_start, c_start = clock(), time.thread_time()
        version = self.segmenter.version
        self.unwritten.extend((photo.id, items_for(self.rt, self.jid, photo, dets, version, t, self.uploads))
                              for photo, dets in zip(batch, results))
        t.add("post", clock() - t_start)
        t.add("post_cpu", time.thread_time() - c_start)
        # rows go in a few photos at a time, not per forward pass (one photo on the CPU), and at
        # least every COMMIT_AFTER_S so progress shows and a task cut short keeps what it did
        if len(self.unwritten) >= COMMIT_EVERY or clock() - self.last_flush >= COMMIT_AFTER_S:
            return self.flush()
        return 0

    def infer(self, batch: list[Loaded]):
        t1 = time.perf_counter()
        results = self.segmenter.segment([p.rgb for p in batch])
        t2 = time.perf_counter()
        self.t.add("infer", t2 - t1)
        metrics.INFER_SECONDS.observe(t2 - t1)
        metrics.INFER_PHOTOS.inc(len(batch))
        return results

    def run(self, loading: list[Future]) -> int:
        bs = max(1, getattr(self.segmenter, "batch", 0) or self.rt.settings.batch_size or 1)
        pending_posts = []
        with post_pool(self.rt.settings.post_overlap != "off") as pool:
            for start in range(0, len(loading), bs):
                t0 = time.perf_counter()
                batch = [p for p in (f.result() for f in loading[start : start + bs]) if p is not None]
                self.t.add("load", time.perf_counter() - t0)
                if batch:
                    pending_posts.append(pool.submit(self.post, batch, self.infer(batch)))
            pending_posts.append(pool.submit(self.flush))
            return sum(f.result() for f in pending_posts)


def run(jid: uuid.UUID, photo_ids: Sequence[uuid.UUID], rt: Runtime, segmenter: Segmenter,
        stages: Stages | None = None) -> int:
    """Segment the pending photos among photo_ids; returns how many this call committed. Each
    stage's seconds go to `stages` (the benchmark's adds them up), by default to the metrics."""
    rows = photos.pending_photos(jid, list(photo_ids))
    if rows is None:
        log.info("segmented 0 of %d photos", len(photo_ids))
        return 0
    user_id = rows[0][1] if rows else None
    with logs.adding(user_id=user_id):  # on every line its photos log, on whichever thread (worker.iopool)
        loading = [io_pool().submit(load, rt, jid, pid, uid, key) for pid, uid, key in rows]
        done = _Segmentation(jid, user_id, rt, segmenter, stages or StageMetrics()).run(loading)
        log.info("segmented %d of %d photos", done, len(photo_ids))
        return done
