"""Notice jobs whose work was lost and put it back on the queue.

A queued or running job that has not moved for `stale_after` seconds is a candidate. Its work is
lost only when no message of it is left: none waiting in a queue, none held by a worker that is
alive. A job merely queued behind a backlog has its messages waiting, and one being worked on has
its message held by a live worker: neither is re-sent, so a short `stale_after` (a minute) brings
lost work back quickly without segmenting anything twice. A message held (unacknowledged) by a
worker that is gone, or lost with a Redis restart, leaves the job with nothing: its ingest is
re-sent, which re-sends every pending photo and is harmless to repeat.

Where the broker cannot be looked into (the embedded filesystem broker), a job counts as lost
only after ten times `stale_after` without moving.

Catalogue exports (worker/export.py) are reaped the same way (`reap_exports`): a queued or running
export that has not moved and has no message left is sent again, and its run starts over.
"""
from __future__ import annotations

import base64
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from core.logs import fields
from core.queue import QUEUES
from db import exports, jobstate
from core.runtime import Runtime
from db.session import session_scope

log = logging.getLogger("wardrobe.reaper")

UNINSPECTED_FACTOR = 10  # where the broker cannot be looked into, wait this many times longer
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

JobsInBroker = Callable[[], "set[str] | None"]


def _job_of(payload) -> str | None:
    """The job id a wardrobe task message carries (its first argument)."""
    try:
        msg = json.loads(payload) if isinstance(payload, (bytes, str)) else payload
        body = msg["body"]
        if msg.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except Exception:  # noqa: BLE001 - not one of ours, or not readable: it names no job
        return None


def _live_jobs(app, timeout: float = 2.0) -> set[str] | None:
    """Jobs of the tasks live workers are running, hold reserved, or hold scheduled (a retry waiting
    out its countdown); None when no worker answered."""
    insp = app.control.inspect(timeout=timeout)
    # each broadcast waits out its whole timeout for replies (it cannot know how many workers there
    # are): the three side by side take one timeout, not three, of the pool slot the sweep holds
    with ThreadPoolExecutor(3) as pool:
        replies = [r for r in pool.map(lambda ask: ask(), (insp.active, insp.reserved, insp.scheduled)) if r]
    if not replies:
        return None
    jobs: set[str] = set()
    for reply in replies:
        for requests in reply.values():
            for req in requests or []:
                req = req.get("request", req)  # scheduled entries wrap the request with its eta
                args = req.get("args")
                if isinstance(args, (list, tuple)) and args:
                    jobs.add(str(args[0]))
                elif isinstance(args, str):
                    jobs.update(_UUID.findall(args)[:1])
    return jobs


def broker_jobs(app) -> set[str] | None:
    """Ids of the jobs that have work in the broker: a message waiting in a queue, or one held
    (delivered, not yet acknowledged) by a worker that is alive. None where the broker is not Redis."""
    if not str(app.conf.broker_url or "").startswith(("redis://", "rediss://")):
        return None
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        client = channel.client
        jobs: set[str] = set()
        for queue in QUEUES:
            for name in {channel._q_for_pri(queue, pri) for pri in channel.priority_steps}:
                jobs.update(j for j in map(_job_of, client.lrange(name, 0, -1)) if j)
        held = {}
        for raw in client.hvals(channel.unacked_key):
            try:
                job = _job_of(json.loads(raw)[0])
            except (ValueError, TypeError, IndexError):
                continue
            if job:
                held[job] = True
    if held:
        live = _live_jobs(app)
        # no worker answered: none may be running, or all may be too busy to say; count them held
        jobs.update(held if live is None else (j for j in held if j in live))
    return jobs


def _stale(cutoff_seconds: float) -> list:
    with session_scope() as s:
        return jobstate.stale(s, cutoff_seconds)


def reap(rt: Runtime, send_ingest: Callable, stale_after: int | None = None, in_broker: JobsInBroker | None = None) -> int:
    """Re-send the work of jobs that stopped moving and have none left in the broker; returns how many.
    `in_broker` gives the ids of jobs with work in the broker (None: it cannot tell); without it, every
    job that has not moved for ten times `stale_after` is re-sent."""
    stale_after = stale_after or rt.settings.stale_after
    ids = _stale(stale_after)
    if not ids:
        return 0
    # the broker is read after the jobs: a message delivered meanwhile is seen held, not lost
    known = in_broker() if in_broker is not None else None
    if known is None:
        wait = stale_after * UNINSPECTED_FACTOR
        ids = _stale(wait)
    else:
        wait = stale_after
        ids = [jid for jid in ids if str(jid) not in known]
    for jid in ids:
        log.warning("job %s has not moved for %ss and has no work left in the broker: re-sending its work", jid, wait,
                    extra=fields(job_id=jid, task="reap"))
        with session_scope() as s:
            jobstate.touch(s, jid)
        send_ingest(jid)
    return len(ids)


def reap_exports(rt: Runtime, send_export: Callable, stale_after: int | None = None,
                 in_broker: JobsInBroker | None = None) -> int:
    """As `reap`, for catalogue exports: re-send those queued or running that stopped moving and have no
    message left in the broker (an export's messages carry its id first, as a job's do); returns how many."""
    stale_after = stale_after or rt.settings.stale_after
    with session_scope() as s:
        ids = exports.stale(s, stale_after)
    if not ids:
        return 0
    known = in_broker() if in_broker is not None else None
    if known is None:
        wait = stale_after * UNINSPECTED_FACTOR
        with session_scope() as s:
            ids = exports.stale(s, wait)
    else:
        wait = stale_after
        ids = [eid for eid in ids if str(eid) not in known]
    for eid in ids:
        log.warning("export %s has not moved for %ss and has no message left in the broker: re-sending it", eid, wait,
                    extra=fields(export_id=eid, task="reap"))
        with session_scope() as s:
            exports.touch(s, eid)
        send_export(eid)
    return len(ids)
