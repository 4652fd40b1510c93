"""Notice jobs whose worker vanished and put their work back on the queue.

A running job that has not moved for `stale_after` seconds has its ingest
re-sent; ingest re-sends every pending photo and is harmless to repeat.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Callable

from sqlalchemy import select, update

from db.bootup import Runtime
from db.models import Job, JobStatus, utcnow
from db.session import session_scope

log = logging.getLogger("wardrobe.reaper")


def reap(rt: Runtime, send_ingest: Callable, stale_after: int | None = None) -> int:
    stale_after = stale_after or rt.settings.stale_after
    cutoff = utcnow() - timedelta(seconds=stale_after)
    with session_scope() as s:
        ids = list(
            s.scalars(
                select(Job.id).where(
                    Job.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]), Job.updated_at < cutoff
                )
            )
        )
    for jid in ids:
        log.warning("job %s has not moved for %ss: re-sending its work", jid, stale_after)
        with session_scope() as s:
            s.execute(update(Job).where(Job.id == jid).values(updated_at=utcnow()))
        send_ingest(jid)
    return len(ids)
