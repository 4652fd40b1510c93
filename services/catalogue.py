"""The user's changes to their catalogue, each committed and then carried out in storage: an item
corrected or deleted (its cut-out), a photo or a whole ended job deleted (db.retention records every
object its rows named; services.dispatch deletes them)."""
from __future__ import annotations

import uuid

from core.storage import StorageError
from core.taxonomy import GarmentClass
from db import corrections, retention
from db.models import Item
from services import dispatch
from services.context import Ctx
from services.errors import Refused, not_found


def correct_item(ctx: Ctx, item: Item, new_class: GarmentClass | None, not_garment: bool | None) -> None:
    corrections.correct(item, new_class, not_garment)
    ctx.s.commit()


def delete_item(ctx: Ctx, item: Item) -> None:
    key = corrections.delete_item(ctx.s, item)
    ctx.s.commit()
    try:
        ctx.storage.delete(key)
    except StorageError:
        pass  # the row is gone; an orphaned cut-out is harmless and unreachable


def _purge(ctx: Ctx, purge_fn, row_id: uuid.UUID, what: str, still_running: str) -> None:
    """Delete one of the user's ended jobs or photos with `purge_fn` (db.retention), then its objects
    (services.dispatch, after the commit); 404 when it is not the user's; 409 while its job is queued
    or running."""
    s = ctx.s
    try:
        purged = purge_fn(s, ctx.user_id, row_id)
    except retention.StillRunning:
        s.rollback()
        raise Refused(409, "job_active", still_running) from None
    if purged is None:
        raise not_found(what)
    dispatch.commit(s)


def purge_job(ctx: Ctx, job_id: uuid.UUID) -> None:
    """An ended job with everything it brought: photos, items, cut-outs, the zip, and the job itself."""
    _purge(ctx, retention.purge_job, job_id, "job",
           "the job is still queued or running: cancel it first (DELETE /v1/jobs/<id>)")


def purge_photo(ctx: Ctx, photo_id: uuid.UUID) -> None:
    """A photo of an ended job with its items and their cut-outs."""
    _purge(ctx, retention.purge_photo, photo_id, "photo",
           "the photo's job is still queued or running: cancel it or wait for it to end")
