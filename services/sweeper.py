"""The sweeper: objects no row names, zips kept past their retention, and stale temp files.

Run by the worker started with `--beat` every WARDROBE_GC_INTERVAL seconds and by `wardrobe gc
[--dry-run]`. Nothing younger than WARDROBE_GC_GRACE is touched: an upload stores its zip just before
the job's row is committed, ingest stores a photo just before its row, segmentation its cut-outs just
before its items, so an object whose row is still on its way is always young. The objects are listed
first and the rows read after, so a row committed meanwhile is seen.

What is unreferenced, by key (keys are made by the server: core.storage.keys):
- `users/<user>/uploads/<job>.zip`: no such job, or the job ended longer ago than
  WARDROBE_UPLOAD_RETENTION (0: at once; -1: kept for ever), or WARDROBE_UPLOAD_RETRY_RETENTION for a
  job that failed or was cancelled before its zip was read to its end (db.quota.zip_retention);
- `users/<user>/photos/<photo>.jpg`: no photo row names it;
- `users/<user>/originals/<photo>`: no such photo;
- `users/<user>/cutouts/<photo>/<item>.<ext>`: no item row names it;
- `users/<user>/incoming/<session>.part` (a chunked upload's bytes so far): no upload session names it;
- `users/<user>/exports/<export>.zip`: no such export, or it failed or expired;
- anything under `users/<user>/` of a user that no longer exists.
Other keys are counted (`unknown`) and left alone.

Succeeded exports finished longer ago than WARDROBE_EXPORT_RETENTION go first too: the row becomes
`expired`, then its zip is deleted (db.exports.expire_due).

db/ says what is unreferenced or due (db.references, db.upload_sessions, db.exports); only this
module lists and deletes stored objects.

Resumable upload sessions past their expiry (WARDROBE_UPLOAD_SESSION_TTL) go first, with their bytes
(expire_sessions); an upload's zip that an unexpired session assembled is kept until its job exists.

Stale temp files: a folder store's half-written objects (`.tmp-*`), an S3 bucket's unfinished multipart
uploads (but those of unexpired upload sessions: a client may resume them for a day), and this machine's
`wardrobe-*` temp files (an API process or worker killed mid-upload or mid-ingest) that no process holds open.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from core.runtime import Runtime
from core.storage import StorageError, StoredObject
from db import exports, upload_sessions
from db.models import utcnow
from db.references import unreferenced
from db.session import session_scope
from services.objects import drop_bytes

log = logging.getLogger("wardrobe.gc")

TEMP_PREFIX = "wardrobe-"  # the API's and the ingest worker's temp files


def _open_files() -> set[str] | None:
    """Paths some process of this machine holds open (those /proc lets us see); None without /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    held = set()
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(proc / pid / "fd"):
                try:
                    held.add(os.readlink(proc / pid / "fd" / fd))
                except OSError:
                    pass
        except OSError:
            pass
    return held


def _stale_temp_files(older_than: float, tmpdir: str | None = None) -> list[Path]:
    base = Path(tmpdir or tempfile.gettempdir())
    candidates = []
    for p in base.glob(TEMP_PREFIX + "*"):
        try:
            if p.is_file() and not p.is_symlink() and p.stat().st_mtime < older_than:
                candidates.append(p)
        except OSError:
            pass
    if not candidates:
        return []
    held = _open_files()
    if held is None:
        return []  # cannot tell which are in use: leave them
    return [p for p in candidates if str(p) not in held]


def expire_sessions(rt: Runtime, now: datetime | None = None, dry_run: bool = False) -> dict:
    """Upload sessions past their expiry: unfinished ones lose their bytes, every one its row. A session
    whose bytes storage would not delete keeps its row for the next pass; one a complete holds is
    skipped (db.upload_sessions.expiring), its bytes untouched."""
    now = now or utcnow()
    counts = {"expired": 0, "dropped": 0, "errors": 0}
    with session_scope() as s:
        while rows := upload_sessions.expiring(s, now):
            counts["expired"] += len(rows)
            if dry_run:
                counts["dropped"] += sum(1 for r in rows if r.status in upload_sessions.UNFINISHED)
                break
            gone = []
            for r in rows:
                try:
                    drop_bytes(rt.storage, r)  # under the row's lock: no complete begins meanwhile
                except StorageError as e:
                    counts["errors"] += 1
                    log.warning("gc: the bytes of expired upload session %s stay for the next pass: %s", r.id, e)
                    continue
                counts["dropped"] += r.status in upload_sessions.UNFINISHED
                gone.append(r.id)
            upload_sessions.forget(s, gone)
            s.commit()
            if len(gone) < len(rows):
                break  # storage refuses: the rest wait for the next pass
    return counts


def _expire(rt: Runtime, dry_run: bool, counts: Counter) -> dict:
    """Upload sessions and exports past their time: rows expired, their bytes deleted."""
    expired = expire_sessions(rt, dry_run=dry_run)
    counts["errors"] += expired["errors"]
    with session_scope() as s:
        due = exports.expire_due(s, rt.settings.export_retention, dry_run=dry_run)
    counts["expired_exports"] = len(due)
    if due and not dry_run:
        try:
            rt.storage.delete_many([key for _, key in due if key])
        except StorageError as e:  # their rows are expired: the object pass below deletes them next time
            counts["errors"] += 1
            log.warning("gc: deleting %d expired exports' zips failed: %s", len(due), e)
    return expired


def _objects(rt: Runtime, cutoff: float, dry_run: bool, counts: Counter) -> None:
    """Every stored object older than the cutoff that no row names, in batches."""
    old: list[StoredObject] = []

    def settle() -> None:
        doomed = unreferenced(old, rt.settings, counts)  # rows read after the objects were listed
        old.clear()
        if doomed and not dry_run:
            try:
                rt.storage.delete_many([o.key for o in doomed])
                counts["deleted"] += len(doomed)
            except StorageError as e:
                counts["errors"] += 1
                log.warning("gc: deleting %d unreferenced objects failed: %s", len(doomed), e)

    for o in rt.storage.list("users/"):
        counts["objects"] += 1
        if o.modified >= cutoff:
            counts["young"] += 1
            continue
        old.append(o)
        if len(old) >= 5000:
            settle()
    if old:
        settle()


def _leftovers(rt: Runtime, cutoff: float, tmpdir: str | None, dry_run: bool, counts: Counter) -> None:
    """Stale partial writes (not a live resumable upload's) and stale temp files."""
    partials = rt.storage.stale_partials(cutoff)
    with session_scope() as s:
        resumable = upload_sessions.multipart_keys(s)  # listed first, rows read after (as the objects)
    partials = [p for p in partials if p.rpartition("?uploadId=")[0] not in resumable]
    counts["partials"] = len(partials)
    temps = _stale_temp_files(cutoff, tmpdir)
    counts["temp_files"] = len(temps)
    if dry_run:
        return
    for name in partials:
        try:
            rt.storage.drop_partial(name)
        except StorageError as e:
            counts["errors"] += 1
            log.warning("gc: %s: %s", name, e)
    for p in temps:
        try:
            p.unlink(missing_ok=True)
        except OSError as e:
            counts["errors"] += 1
            log.warning("gc: %s: %s", p, e)


def sweep(rt: Runtime, dry_run: bool = False, grace: int | None = None, tmpdir: str | None = None) -> dict:
    """One pass; returns the counts (also logged). With dry_run, only counts what it would delete."""
    grace = rt.settings.gc_grace if grace is None else grace
    t0 = time.monotonic()
    cutoff = time.time() - grace
    counts: Counter = Counter()
    expired = _expire(rt, dry_run, counts)
    _objects(rt, cutoff, dry_run, counts)
    _leftovers(rt, cutoff, tmpdir, dry_run, counts)
    result = {"dry_run": dry_run, "grace_seconds": grace, "objects_seen": counts["objects"], "young": counts["young"],
              "unreferenced": {k: counts[k] for k in ("uploads", "photos", "originals", "cutouts", "exports")},
              "expired_exports": counts["expired_exports"],
              "unreferenced_bytes": counts["bytes"], "deleted": counts["deleted"], "unknown": counts["unknown"],
              "stale_partials": counts["partials"], "stale_temp_files": counts["temp_files"], "errors": counts["errors"],
              "upload_sessions": {"expired": expired["expired"], "dropped": expired["dropped"],
                                  "orphan_chunks": counts["incoming"]},
              "seconds": round(time.monotonic() - t0, 3)}
    log.info("gc%s: %d objects seen (%d younger than %ss); unreferenced %s (%d bytes), %d deleted; "
             "%d unknown keys left alone; %d stale partial writes, %d stale temp files%s; %d errors; %.2fs",
             " (dry run)" if dry_run else "", result["objects_seen"], result["young"], grace,
             " ".join(f"{k}={v}" for k, v in result["unreferenced"].items()), result["unreferenced_bytes"],
             result["deleted"], result["unknown"], result["stale_partials"], result["stale_temp_files"],
             " (left: dry run)" if dry_run else " removed", result["errors"], result["seconds"])
    return result
