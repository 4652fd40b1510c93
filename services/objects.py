"""Deleting stored objects: those of deleted rows (after the commit: services.dispatch) and the bytes
an upload session holds. db/ says which; only the service layer touches storage. A delete that storage
refuses leaves bytes that no row names: the sweeper (services.sweeper) removes them after its grace
period, so a failed delete never leaves data reachable, only bytes for a while."""
from __future__ import annotations

import logging
import uuid

from core.storage import Storage, StorageError
from db.models import UploadMode, UploadSession
from db.upload_sessions import ASSEMBLED, COMPLETED

log = logging.getLogger("wardrobe.retention")


def delete_keys(storage: Storage, keys: list[str]) -> int:
    """Delete these objects; how many storage refused (all or none): the sweeper's."""
    try:
        storage.delete_many(keys)
    except StorageError as e:
        log.warning("%d objects of deleted rows stay until the sweeper's next pass: %s", len(keys), e)
        return len(keys)
    return 0


def delete_user(storage: Storage, user_id: uuid.UUID) -> int | None:
    """Delete everything stored under the user's prefix; how many objects, None when storage refused."""
    try:
        return storage.delete_prefix(f"users/{user_id}/")
    except StorageError as e:
        log.warning("the objects of deleted user %s stay until the sweeper's next pass: %s", user_id, e)
        return None


def drop_bytes(storage: Storage, sess: UploadSession) -> None:
    """Delete what an unfinished upload session holds in storage (StorageError when storage refuses)."""
    if sess.status == COMPLETED:
        return  # the bytes are its job's zip now
    if sess.multipart_id:
        storage.abort_multipart(sess.object_key, sess.multipart_id)
    if sess.status == ASSEMBLED or sess.mode == UploadMode.CHUNKED.value:
        storage.delete(sess.object_key)
