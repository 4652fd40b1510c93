"""The catalogue's items as the worker writes them: a batch of photos' items committed in one
transaction (each photo once), near-duplicates flagged against what the user already has."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, fields

import numpy as np
from sqlalchemy import delete, func, insert, select, tuple_, update

from core import metrics
from db import jobstate, quota
from db.models import Item, Job, Photo, PhotoStatus, utcnow
from db.session import session_scope


@dataclass(slots=True)
class NewItem:
    """One garment the worker found on a photo, as it hands it to commit_photos: plain values, one
    per column of the items row it becomes (the rest take their defaults). No ORM object is built
    for it: the rows go in as one multi-row INSERT."""

    id: uuid.UUID
    user_id: uuid.UUID
    photo_id: uuid.UUID
    job_id: uuid.UUID
    instance_index: int
    class_id: int
    category: str
    supercategory: str
    confidence: float
    bbox: list
    polygons: list
    area_fraction: float
    model_version: str
    cutout_key: str
    cutout_content_type: str
    cutout_width: int
    cutout_height: int
    cutout_bytes: int
    colors: list | None = None
    color: str | None = None
    phash: int | None = None  # signed, as stored
    alternatives: list | None = None
    duplicate_of: uuid.UUID | None = None  # set by flag_near_duplicates

    def row(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _lock_active_job(s, job_id: uuid.UUID) -> bool:
    """Lock the job row, always first (before any photo row): every writer takes the locks in
    the same order, so a cancel and a commit wait for each other instead of deadlocking."""
    return s.scalar(select(Job.status).where(Job.id == job_id).with_for_update()) in jobstate.ACTIVE


DUPLICATE_MAX_DISTANCE = 6  # of 64 dHash bits


def _aspect(bbox) -> float:
    return (bbox[2] - bbox[0]) / max(bbox[3] - bbox[1], 1)


def _remember(bucket: tuple[list, list, list], item_id, phash: int, bbox) -> None:
    ids, hashes, ratios = bucket
    ids.append(item_id)
    hashes.append(phash)
    ratios.append(_aspect(bbox))


def flag_near_duplicates(s, user_id: uuid.UUID, batch: list[tuple[uuid.UUID, list[NewItem]]]) -> None:
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


def commit_photos(job_id: uuid.UUID, user_id: uuid.UUID, batch: list[tuple[uuid.UUID, list[NewItem]]]) -> set[uuid.UUID]:
    """Write a batch of photos' items and mark them done, each photo once, in one transaction.
    Photos that are no longer pending (a second delivery of the task, a cancelled or deleted job) are
    skipped: their items' cut-outs are named by no row, and the caller deletes them. Returns the
    photos this call committed."""
    if not batch:
        return set()
    with session_scope() as s:
        # the job first: a cancel either lands before (and nothing is written) or waits for this
        if not _lock_active_job(s, job_id):
            return set()
        ids = sorted(pid for pid, _ in batch)
        pending = set(s.scalars(select(Photo.id).where(Photo.id.in_(ids), Photo.status == PhotoStatus.PENDING.value)
                                .order_by(Photo.id).with_for_update()))
        todo = [(pid, items) for pid, items in batch if pid in pending]
        if not todo:
            return set()
        # (a pending photo has no items; any left by an older version of this commit are replaced)
        replaced = s.scalar(select(func.coalesce(func.sum(Item.cutout_bytes), 0)).where(Item.photo_id.in_(pending)))
        s.execute(delete(Item).where(Item.photo_id.in_(pending)).execution_options(synchronize_session=False))
        flag_near_duplicates(s, user_id, todo)
        rows = [item.row() for _, items in todo for item in items]
        if rows:
            # one multi-row INSERT: the unit of work's per-object bookkeeping cost more than the rows
            s.execute(insert(Item), rows)
        s.execute(update(Photo).where(Photo.id.in_(pending))
                  .values(status=PhotoStatus.DONE.value, processed_at=utcnow()).execution_options(synchronize_session=False))
        s.flush()
        jobstate.progress_and_finish(s, job_id, done=len(todo), items=sum(len(items) for _, items in todo))
        quota.add(s, user_id, sum(r.get("cutout_bytes") or 0 for r in rows) - (replaced or 0))  # the user's row last
    metrics.PHOTOS.labels("done", "").inc(len(todo))  # after the commit: counted once, as the catalogue has them
    metrics.ITEMS.inc(len(rows))
    return pending
