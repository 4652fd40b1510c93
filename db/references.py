"""Which stored objects no row keeps (services.sweeper lists them, deletes what this says is unreferenced).

Keys are made by the server (core.objects.keys): `users/<user>/<kind>/<owner>...`, where the owner is
the job, photo, session or export the object belongs to. What keeps each kind is described in
services.sweeper.
"""
from __future__ import annotations

import re
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone

from sqlalchemy import select

from core.objects import StoredObject
from db import exports, upload_sessions
from db.models import Item, Job, Photo, User
from db.quota import zip_kept
from db.session import session_scope

_KEY = re.compile(r"^users/([0-9a-f-]{36})/(uploads|photos|originals|cutouts|incoming|exports)/([0-9a-f-]{36})"
                  r"(?:\.zip|\.jpg|\.part|/[^/]+)?$")
BATCH = 500


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def unreferenced(objs: list[StoredObject], settings, counts: Counter) -> list[StoredObject]:
    """Of these old-enough objects, the ones no row keeps."""
    by_kind: dict[str, list[tuple[StoredObject, uuid.UUID, uuid.UUID]]] = defaultdict(list)
    for o in objs:
        m = _KEY.match(o.key)
        user, owner = (_uuid(m.group(1)), _uuid(m.group(3))) if m else (None, None)
        if user is None or owner is None:
            counts["unknown"] += 1
            continue
        by_kind[m.group(2)].append((o, user, owner))
    now = datetime.now(timezone.utc)
    out: list[StoredObject] = []
    with session_scope() as s:
        users = {u for kind in by_kind.values() for _, u, _ in kind}
        live_users = set(s.scalars(select(User.id).where(User.id.in_(users)))) if users else set()
        for kind, rows in by_kind.items():
            owners = list({o for _, u, o in rows if u in live_users})
            kept: set[str] = set()
            for i in range(0, len(owners), BATCH):
                part = owners[i:i + BATCH]
                if kind == "uploads":
                    for key, status, finished, ingested in s.execute(
                            select(Job.upload_key, Job.status, Job.finished_at, Job.ingest_finished)
                            .where(Job.id.in_(part))):
                        if zip_kept(status, finished, ingested, settings, now):
                            kept.add(key)
                    kept |= upload_sessions.keys_of_jobs(s, part)  # assembled by a session, its job not made yet
                elif kind == "incoming":
                    kept |= upload_sessions.keys_of_sessions(s, part)
                elif kind == "exports":
                    kept |= {str(i) for i in exports.keeping_zips(s, part)}
                elif kind == "photos":
                    kept.update(k for k in s.scalars(select(Photo.storage_key).where(Photo.id.in_(part))) if k)
                elif kind == "originals":
                    kept.update(str(p) for p in s.scalars(select(Photo.id).where(Photo.id.in_(part))))
                else:
                    kept.update(s.scalars(select(Item.cutout_key).where(Item.photo_id.in_(part))))
            for o, user, owner in rows:
                ref = str(owner) if kind in ("originals", "exports") else o.key
                if user not in live_users or ref not in kept:
                    counts[kind] += 1
                    counts["bytes"] += o.size
                    out.append(o)
    return out
