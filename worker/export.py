"""The `wardrobe.export` task body: a user's catalogue as one zip, `annotations.json` (COCO instances,
db/coco.py) with every photo and cut-out beside it, stored as `users/<user>/exports/<export>.zip`.

The zip is written to a temp file as it is built (the photos and cut-outs are streamed from storage
into it, the JSON's arrays are spooled to temp files and streamed in last), so neither the zip nor
the document is ever whole in memory. Progress goes to the exports table every PROGRESS_EVERY
photos; the table is the only truth about it.

Safe to run twice (at-least-once delivery, or the reaper re-sending it): a second run starts over,
writes the same key and finishes only an export that is still running; an export deleted meanwhile
stops the run at its next progress write, and a zip stored after the deletion is removed again.
"""
from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import time
import uuid
import zipfile
from datetime import timezone
from typing import IO, Iterator

from celery.exceptions import SoftTimeLimitExceeded

from core import logs
from core.storage import ObjectNotFound, Storage, StorageError, keys
from core.taxonomy import CLASSES
from db import coco, exports, quota
from core.runtime import Runtime
from db.models import ExportStatus, Item, ItemStatus, Photo, utcnow
from db.session import session_scope

log = logging.getLogger("wardrobe.export")

PROGRESS_EVERY = 10  # photos between progress writes
FORMAT_VERSION = 1

README = """wardrobe catalogue export (format {version})
====================================

annotations.json   COCO instances (https://cocodataset.org/#format-data): info, licenses, images,
                   annotations, categories; plus "wardrobe_not_garment" (see below)
photos/<photo id>.jpg   every segmented photo, upright, as stored (the pixels polygons are in)
cutouts/<item id>.<webp|png>   every item's RGBA cut-out (the mask as alpha)
README.txt         this file

images: id, file_name ("photos/<photo id>.jpg"), width, height, and "wardrobe":
    {{photo_id, entry_name (the file's name in your upload), job_id, uploaded_at, original_size, sha256}}
annotations: id, image_id, category_id, segmentation (polygons [[x1, y1, x2, y2, ...], ...] in the
    photo's pixels), bbox [x, y, width, height], area (pixels), iscrowd 0, and "wardrobe":
    {{item_id, category, confidence, color, colors [{{hex, name, fraction}}], status, corrected,
      original_class_id, original_category (the model's class when you changed it), reviewed,
      cutout (its file name here), model_version, duplicate_of, alternatives, created_at}}
categories: the catalogue's 23 classes; id = the catalogue's class_id (0-22), name and
    supercategory as Fashionpedia names them.

Your corrections are applied: category_id is the class you chose; the model's is original_class_id.
Items you marked "not a garment" are not in "annotations" but in "wardrobe_not_garment" (same
shape, category_id the class the item had), so nothing is lost and training tools skip them.
Near-duplicate items (duplicate_of set) are included: each is its own garment on its own photo.
Photos skipped at upload as byte-identical to one you already had are not repeated: the photo
they repeat is here.

Re-import for training (YOLO-seg labels of the 23 classes; the one file as both splits puts every
photo in both: hold some out yourself, or use `wardrobe export-training`, which splits):
    wardrobe import-fashionpedia --train-json annotations.json --val-json annotations.json \\
        --images . --out dataset
"""


class ExportGone(Exception):
    """The export was deleted (or ended) while this run was building it."""


class ExportTooLarge(Exception):
    """The zip grew past WARDROBE_EXPORT_MAX_BYTES: it is built on the worker's temp disk, which a
    catalogue of any size must not fill (other tasks on that worker write there too)."""

    def __init__(self, written: int, limit: int, photos: int, photos_total: int | None):
        self.written, self.limit = written, limit
        super().__init__(
            f"the catalogue does not fit in one export: its zip passed {limit} bytes (WARDROBE_EXPORT_MAX_BYTES) "
            f"after {photos} of {photos_total if photos_total is not None else '?'} photos; "
            "delete photos you no longer need, or ask the operator to raise the limit")


def _entry(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, time.localtime()[:6])
    info.compress_type = compress
    info.external_attr = 0o644 << 16
    return info


def _copy(storage: Storage, key: str, zf: zipfile.ZipFile, name: str) -> None:
    """An object into the zip as it streams from storage (stored: JPEG and WebP are compressed already).
    ObjectNotFound before the entry is begun, so a missing object leaves no empty entry behind."""
    chunks = storage.iter_chunks(key)
    with zf.open(_entry(name, zipfile.ZIP_STORED), "w") as dst:
        for chunk in chunks:
            dst.write(chunk)


def _lines(f: IO[str]) -> Iterator[dict]:
    f.seek(0)
    for line in f:
        yield json.loads(line)


def _ext(item: Item) -> str:
    return os.path.splitext(item.cutout_key)[1].lstrip(".") or "webp"


def _ts(v) -> str | None:
    if v is None:
        return None
    if v.tzinfo is None:  # SQLite hands back naive values; they were written as UTC
        v = v.replace(tzinfo=timezone.utc)
    return v.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def image_entry(photo: Photo, image_id: int, uploaded_at) -> dict:
    return coco.image(photo, image_id, f"photos/{photo.id}.jpg") | {"wardrobe": {
        "photo_id": str(photo.id), "entry_name": photo.entry_name, "job_id": str(photo.job_id),
        "uploaded_at": _ts(uploaded_at),
        "original_size": [photo.original_width, photo.original_height] if photo.original_width else None,
        "sha256": photo.sha256,
    }}


def annotation_entry(item: Item, photo: Photo, ann_id: int, image_id: int, cutout: str | None) -> dict:
    ann = coco.annotation(item, photo, ann_id, image_id, item.class_id, keep_empty=True)
    original = item.original_class_id
    ann["wardrobe"] = {
        "item_id": str(item.id), "category": item.category, "confidence": item.confidence, "color": item.color,
        "colors": item.colors or [], "status": item.status,
        "corrected": original is not None or item.status != ItemStatus.OK.value, "original_class_id": original,
        "original_category": CLASSES[original].name if original is not None else None,
        "reviewed": item.corrected_at is not None, "cutout": cutout, "model_version": item.model_version,
        "duplicate_of": str(item.duplicate_of) if item.duplicate_of else None,
        "alternatives": item.alternatives or [], "created_at": _ts(item.created_at),
    }
    return ann


class Builder:
    """One run's zip: photos and cut-outs as they come, the JSON's arrays spooled until the end."""

    def __init__(self, export_id: uuid.UUID, user_id: uuid.UUID, storage: Storage, progress_every: int,
                 max_bytes: int = 0, photos_total: int | None = None):
        self.export_id, self.user_id, self.storage, self.every = export_id, user_id, storage, max(1, progress_every)
        self.max_bytes, self.photos_total = max_bytes, photos_total
        self.counts = {"photos": 0, "items": 0, "not_garment": 0, "photos_missing": 0, "cutouts_missing": 0}

    def build(self, out: IO[bytes]) -> dict:
        self.out = out  # its position is the zip's size so far
        def spool():  # one JSON array's entries, a line each, until annotations.json is written
            return tempfile.TemporaryFile("w+", encoding="utf-8", prefix="wardrobe-")

        with zipfile.ZipFile(out, "w", allowZip64=True) as zf, spool() as images, spool() as anns, spool() as rejected:
            zf.writestr(_entry("README.txt", zipfile.ZIP_DEFLATED), README.format(version=FORMAT_VERSION))
            with session_scope() as s:
                uploaded = exports.uploaded_at(s, self.user_id)
            for photos, items_by_photo in coco.photo_pages(self.user_id):
                for photo in photos:
                    self._photo(zf, photo, items_by_photo.get(photo.id, []), uploaded.get(photo.job_id), images, anns, rejected)
            self._report()  # every photo is in: the rest is the JSON
            with zf.open(_entry("annotations.json", zipfile.ZIP_DEFLATED), "w", force_zip64=True) as raw:
                text = io.TextIOWrapper(raw, encoding="utf-8")
                info = coco.info("wardrobe catalogue export", date_created=_ts(utcnow()), wardrobe={
                    "format": FORMAT_VERSION, "export_id": str(self.export_id), "user_id": str(self.user_id),
                    **self.counts})
                coco.write(text, info, _lines(images), _lines(anns), coco.CATEGORIES, wardrobe_not_garment=_lines(rejected))
                text.flush()
                text.detach()
        return self.counts

    def _photo(self, zf, photo: Photo, items: list[Item], uploaded_at, images, anns, rejected) -> None:
        self._check_size()
        try:
            _copy(self.storage, photo.storage_key, zf, f"photos/{photo.id}.jpg")
        except ObjectNotFound:  # deleted since the page was read: so are its items
            log.info("export %s: photo %s is gone from storage; left out", self.export_id, photo.id)
            self.counts["photos_missing"] += 1
            return
        self.counts["photos"] += 1
        image_id = self.counts["photos"]
        images.write(json.dumps(image_entry(photo, image_id, uploaded_at)) + "\n")
        for item in items:
            cutout: str | None = f"cutouts/{item.id}.{_ext(item)}"
            try:
                _copy(self.storage, item.cutout_key, zf, cutout)
            except ObjectNotFound:
                self.counts["cutouts_missing"] += 1
                cutout = None
            self.counts["items"] += 1
            ann = annotation_entry(item, photo, self.counts["items"], image_id, cutout)
            if item.status == ItemStatus.OK.value:
                anns.write(json.dumps(ann) + "\n")
            else:
                self.counts["not_garment"] += 1
                rejected.write(json.dumps(ann) + "\n")
        if self.counts["photos"] % self.every == 0:
            self._report()

    def _check_size(self) -> None:
        """Checked before each photo goes in, so the zip stops within one photo and its cut-outs of the cap."""
        written = self.out.tell()
        if self.max_bytes > 0 and written > self.max_bytes:
            raise ExportTooLarge(written, self.max_bytes, self.counts["photos"], self.photos_total)

    def _report(self) -> None:
        with session_scope() as s:
            if not exports.progress(s, self.export_id, self.counts["photos"], self.counts["items"]):
                raise ExportGone()


def _stored_after_deletion(storage: Storage, export_id: uuid.UUID, key: str) -> None:
    with session_scope() as s:
        gone = exports.status(s, export_id) is None
    if gone:  # deleted while its zip was being stored: the zip must not outlive it
        storage.delete(key)


def _over_quota(eid: uuid.UUID, rt: Runtime, size: int) -> None:
    """No retry: the same catalogue would not fit the next time either, until the user makes room."""
    with session_scope() as s:
        exports.fail(s, eid, "storage_quota_exceeded",
                     f"the export's zip of {size} bytes does not fit: " + quota.refused_message(rt.settings))
    log.warning("export %s: %d bytes would pass its user's WARDROBE_MAX_STORED_BYTES; failed", eid, size)


def _timed_out(eid: uuid.UUID, rt: Runtime, doing: str) -> None:
    """No retry: each run starts the zip over, so the next would run out of time as well."""
    with session_scope() as s:
        counts = exports.done_of_total(s, eid)
        if counts is None:
            return  # deleted meanwhile: nothing to fail
        message = (f"the export ran out of time {doing}, after {counts[0]} of {counts[1]} photos: "
                   f"a worker's task may take {rt.settings.task_time_limit} s (WARDROBE_TASK_TIME_LIMIT)")
        exports.fail(s, eid, "export_timed_out", message)
    log.warning("export %s: %s", eid, message)


def _store(eid: uuid.UUID, rt: Runtime, key: str, tmp) -> bool:
    """The built zip into storage; False (and the export failed) when time ran out meanwhile."""
    tmp.seek(0)
    try:
        rt.storage.put_file(key, tmp, "application/zip")
    except SoftTimeLimitExceeded:
        _timed_out(eid, rt, "storing its zip")
        try:
            rt.storage.delete(key)  # the store may have kept all or part of it: a failed export has no zip
        except StorageError:
            pass  # the sweeper removes an object no export names
        return False
    return True


def run(eid: uuid.UUID, rt: Runtime, progress_every: int = PROGRESS_EVERY) -> dict | None:
    """Build, store and finish the export; its counts, or None when there was nothing to do (gone, ended,
    or deleted meanwhile). Storage and database errors propagate: the task retries, then fails it."""
    with session_scope() as s:
        user_id = exports.start(s, eid)
        if user_id is None:
            log.info("export %s is gone or already ended: nothing to do", eid)
            return None
        photos_total, items_total = exports.totals(s, user_id)
        exports.progress(s, eid, 0, 0, photos_total, items_total)
    with logs.adding(user_id=user_id):  # a field of every line the build logs
        return _build(eid, user_id, photos_total, rt, progress_every)


def _build(eid: uuid.UUID, user_id: uuid.UUID, photos_total: int, rt: Runtime, progress_every: int) -> dict | None:
    t0 = time.monotonic()
    with tempfile.NamedTemporaryFile(prefix="wardrobe-export-", suffix=".zip") as tmp:
        try:
            counts = Builder(eid, user_id, rt.storage, progress_every, rt.settings.export_max_bytes,
                             photos_total).build(tmp)
        except ExportGone:
            log.info("export %s was deleted while it was being built: stopped", eid)
            return None
        except ExportTooLarge as e:  # no retry: the same catalogue would not fit the next time either
            log.warning("export %s: %d bytes written past the cap of %d; failed", eid, e.written, e.limit)
            with session_scope() as s:
                exports.fail(s, eid, "export_too_large", str(e))
            return None
        except SoftTimeLimitExceeded:
            _timed_out(eid, rt, "building its zip")
            return None
        size = os.fstat(tmp.fileno()).st_size
        with session_scope() as s:
            if exports.status(s, eid) != ExportStatus.RUNNING.value:
                return None  # deleted, or another run finished it, while this one built the zip
            room = exports.make_room(s, eid, user_id, size, rt.settings)
            s.rollback()  # only a look before the zip is stored: the finish below decides
        if room is None:
            _over_quota(eid, rt, size)
            return None
        key = keys.export(user_id, eid)
        if not _store(eid, rt, key, tmp):
            return None
    with session_scope() as s:
        replaced = exports.make_room(s, eid, user_id, size, rt.settings)
        finished = replaced is not None and exports.succeed(s, eid, key, size, counts["photos"], counts["items"])
        if not finished:
            s.rollback()  # nothing replaced
    if replaced is None:  # other uploads took the room while the zip was stored
        rt.storage.delete(key)
        _over_quota(eid, rt, size)
        return None
    if not finished:
        _stored_after_deletion(rt.storage, eid, key)
        return None
    if replaced:
        try:
            rt.storage.delete_many(replaced)
        except StorageError as e:  # their rows are expired: the sweeper deletes them
            log.warning("export %s: the %d exports it replaced stay until the sweeper's pass: %s", eid, len(replaced), e)
    log.info("export %s: %d photos, %d items (%d not garments), %d bytes in %.1fs", eid, counts["photos"],
             counts["items"], counts["not_garment"], size, time.monotonic() - t0)
    return counts
