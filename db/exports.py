"""Catalogue exports' state transitions. As with jobs (db/jobstate.py) each one is a single
conditional UPDATE, so a second delivery of the export task, or a user deleting the export while it
runs, can never finish it twice or bring it back."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Export, ExportStatus, Item, Job, Photo, PhotoStatus, utcnow

ACTIVE = (ExportStatus.QUEUED.value, ExportStatus.RUNNING.value)


def active(s: Session, user_id: uuid.UUID) -> Export | None:
    return s.scalar(select(Export).where(Export.user_id == user_id, Export.status.in_(ACTIVE)))


def create(s: Session, user_id: uuid.UUID) -> tuple[Export, bool]:
    """A new queued export for the user, committed; or, while one of theirs is queued or running, that
    one (False): one export in the making per user, and a client that asks twice gets the same one."""
    existing = active(s, user_id)
    if existing is not None:
        return existing, False
    export = Export(user_id=user_id)
    s.add(export)
    try:
        s.commit()
    except IntegrityError:  # another request made one meanwhile (uq_exports_user_active)
        s.rollback()
        existing = active(s, user_id)
        if existing is None:
            raise
        return existing, False
    return export, True


def start(s: Session, export_id: uuid.UUID) -> uuid.UUID | None:
    """queued (or running: a second delivery, or a run the reaper re-sent) -> running, counters back to
    zero; the export's user, or None when it is gone or already ended (nothing to do)."""
    now = utcnow()
    res = s.execute(
        update(Export)
        .where(Export.id == export_id, Export.status.in_(ACTIVE))
        .values(status=ExportStatus.RUNNING.value, started_at=func.coalesce(Export.started_at, now), updated_at=now,
                photos_done=0, items_done=0)
        .returning(Export.user_id)
    ).first()
    return res[0] if res else None


def totals(s: Session, user_id: uuid.UUID) -> tuple[int, int]:
    """(photos, items) an export of the user's catalogue holds now: the segmented photos and their items."""
    photos = s.scalar(select(func.count()).select_from(Photo)
                      .where(Photo.user_id == user_id, Photo.status == PhotoStatus.DONE.value))
    items = s.scalar(select(func.count()).select_from(Item).join(Photo, Photo.id == Item.photo_id)
                     .where(Item.user_id == user_id, Photo.status == PhotoStatus.DONE.value))
    return photos or 0, items or 0


def status(s: Session, export_id: uuid.UUID) -> str | None:
    """The export's status now; None when it is gone (deleted)."""
    return s.scalar(select(Export.status).where(Export.id == export_id))


def done_of_total(s: Session, export_id: uuid.UUID) -> tuple[int, int | None] | None:
    """(photos_done, photos_total) of the export; None when it is gone."""
    row = s.execute(select(Export.photos_done, Export.photos_total).where(Export.id == export_id)).first()
    return None if row is None else (row.photos_done, row.photos_total)


def uploaded_at(s: Session, user_id: uuid.UUID) -> dict[uuid.UUID, datetime]:
    """When each of the user's jobs was uploaded, by job id (an export names each photo's upload time)."""
    return dict(s.execute(select(Job.id, Job.created_at).where(Job.user_id == user_id)).all())


def progress(s: Session, export_id: uuid.UUID, photos_done: int, items_done: int, photos_total: int | None = None,
             items_total: int | None = None) -> bool:
    """Record how far a running export got; False when it is no longer running (deleted or ended)."""
    values = {"photos_done": photos_done, "items_done": items_done, "updated_at": utcnow()}
    if photos_total is not None:
        values |= {"photos_total": photos_total, "items_total": items_total}
    res = s.execute(update(Export).where(Export.id == export_id, Export.status == ExportStatus.RUNNING.value)
                    .values(**values))
    return bool(res.rowcount)


def succeed(s: Session, export_id: uuid.UUID, key: str, size: int, photos: int, items: int) -> bool:
    """running -> succeeded with its zip; False when it was deleted or ended meanwhile."""
    now = utcnow()
    res = s.execute(
        update(Export)
        .where(Export.id == export_id, Export.status == ExportStatus.RUNNING.value)
        .values(status=ExportStatus.SUCCEEDED.value, storage_key=key, size_bytes=size, finished_at=now, updated_at=now,
                photos_done=photos, items_done=items, photos_total=photos, items_total=items)
    )
    return bool(res.rowcount)


REPLACED = "export_replaced"


def make_room(s: Session, export_id: uuid.UUID, user_id: uuid.UUID, size: int, settings) -> list[str] | None:
    """Before a finished export of `size` bytes is kept: the user's oldest succeeded exports past
    WARDROBE_MAX_EXPORTS (this one counted) become expired, replaced (their zips' keys returned, for the
    caller to delete after the commit). None (nothing changed) when the user's stored bytes, without the
    replaced zips and with this one, would pass WARDROBE_MAX_STORED_BYTES. Takes the user's row lock, so
    two exports of one user (one in the making, one a late re-run) finish one after the other."""
    from db import quota
    from db.models import User

    s.scalar(select(User.id).where(User.id == user_id).with_for_update())
    older = s.execute(select(Export.id, Export.storage_key, Export.size_bytes)
                      .where(Export.user_id == user_id, Export.id != export_id,
                             Export.status == ExportStatus.SUCCEEDED.value)
                      .order_by(Export.finished_at.desc(), Export.id.desc())).all()
    replaced = older[settings.max_exports - 1:] if settings.max_exports > 0 else []
    if settings.max_stored_bytes > 0:
        after = quota.used(s, user_id, settings) - sum(r.size_bytes or 0 for r in replaced) + size
        if after > settings.max_stored_bytes:
            return None
    if replaced:
        s.execute(update(Export).where(Export.id.in_([r.id for r in replaced]))
                  .values(status=ExportStatus.EXPIRED.value, error_code=REPLACED, updated_at=utcnow(),
                          error_message=f"replaced by a newer export: a user keeps {settings.max_exports} "
                                        f"(WARDROBE_MAX_EXPORTS)"))
    return [r.storage_key for r in replaced if r.storage_key]


def fail(s: Session, export_id: uuid.UUID, code: str, message: str) -> bool:
    now = utcnow()
    res = s.execute(
        update(Export)
        .where(Export.id == export_id, Export.status.in_(ACTIVE))
        .values(status=ExportStatus.FAILED.value, error_code=code, error_message=message[:2000], finished_at=now,
                updated_at=now)
    )
    return bool(res.rowcount)


def expires_at(e: Export, retention: int) -> datetime | None:
    """When a succeeded export's zip goes (None: it is not ready, or exports are kept for ever)."""
    if e.status != ExportStatus.SUCCEEDED.value or retention < 0 or e.finished_at is None:
        return None
    return e.finished_at + timedelta(seconds=retention)


def expire_due(s: Session, retention: int, dry_run: bool = False, limit: int = 500) -> list[tuple[uuid.UUID, str]]:
    """Succeeded exports finished more than `retention` seconds ago -> expired, committed; their
    (id, zip key) for the caller to delete. The row goes first: should the delete fail, the zip is
    named by no export that keeps it, and the sweeper's next pass deletes it as unreferenced."""
    if retention < 0:
        return []
    cutoff = utcnow() - timedelta(seconds=retention)
    due = (select(Export.id).where(Export.status == ExportStatus.SUCCEEDED.value, Export.finished_at < cutoff)
           .order_by(Export.finished_at).limit(limit))
    if dry_run:
        return [(i, k) for i, k in s.execute(select(Export.id, Export.storage_key).where(Export.id.in_(due)))]
    rows = s.execute(update(Export).where(Export.id.in_(due), Export.status == ExportStatus.SUCCEEDED.value)
                     .values(status=ExportStatus.EXPIRED.value, updated_at=utcnow())
                     .returning(Export.id, Export.storage_key)).all()
    s.commit()
    return [(i, k) for i, k in rows]


def keeping_zips(s: Session, export_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Of these exports, the ones whose zip is wanted: in the making or succeeded (not expired, failed or deleted)."""
    kept = (*ACTIVE, ExportStatus.SUCCEEDED.value)
    return set(s.scalars(select(Export.id).where(Export.id.in_(export_ids), Export.status.in_(kept))))


def stale(s: Session, older_than: float) -> list[uuid.UUID]:
    """Exports queued or running that have not moved for `older_than` seconds (the reaper's candidates)."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    return list(s.scalars(select(Export.id).where(Export.status.in_(ACTIVE), Export.updated_at < cutoff)))


def touch(s: Session, export_id: uuid.UUID) -> None:
    s.execute(update(Export).where(Export.id == export_id).values(updated_at=utcnow()))


def newest_ready(s: Session, user_id: uuid.UUID) -> Export | None:
    """The user's newest succeeded export (GET /v1/export)."""
    return s.scalar(select(Export).where(Export.user_id == user_id, Export.status == ExportStatus.SUCCEEDED.value)
                    .order_by(Export.finished_at.desc(), Export.id.desc()).limit(1))


def delete_row(s: Session, export_id: uuid.UUID) -> None:
    """The export's row gone (its zip deleted first: services.exports)."""
    s.execute(delete(Export).where(Export.id == export_id))
