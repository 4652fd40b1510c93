"""Catalogue exports as a user starts and deletes them: the row committed, then the task queued
(the worker must find the row); the zip deleted from storage before the row that names it."""
from __future__ import annotations

import logging

from core.queue import enqueue_export
from core.storage import StorageError
from db import exports, quota
from db.models import Export
from services.context import Ctx
from services.errors import Refused, unavailable

log = logging.getLogger("wardrobe.exports")


def start(ctx: Ctx) -> Export:
    """A queued export; while one of the user's is queued or running, that one."""
    s, settings = ctx.s, ctx.settings
    if settings.max_stored_bytes > 0 and exports.active(s, ctx.user_id) is None:
        used = quota.used(s, ctx.user_id, settings)  # full already: the zip (a copy of the catalogue) cannot fit
        if used >= settings.max_stored_bytes:
            raise Refused(413, "storage_quota_exceeded", f"you store {used} bytes already: " + quota.refused_message(settings))
    e, created = exports.create(s, ctx.user_id)
    if created:
        try:
            enqueue_export(ctx.queue, e.id)  # only after the commit: the worker must find the row
        except Exception as exc:  # noqa: BLE001 - the broker is down
            log.error("enqueue of export %s failed: %s", e.id, exc)
            exports.fail(s, e.id, "queue_unavailable", "the export could not be queued; start another")
            s.commit()
            raise unavailable("queue_unavailable", "the job queue is unavailable; try again shortly") from None
    return e


def delete(ctx: Ctx, e: Export) -> None:
    """The zip goes first: storage down answers 503 and the export stays, so no zip is left behind
    unnamed. An export in the making stops at its task's next progress write."""
    if e.storage_key:
        try:
            ctx.storage.delete(e.storage_key)
        except StorageError:
            raise unavailable("storage_unavailable", "storage is unavailable; try again shortly") from None
    exports.delete_row(ctx.s, e.id)
    ctx.s.commit()
