"""GET /v1/jobs/<id>/events: a job's progress as Server-Sent Events.

The jobs table stays the only truth: a stream reads the job's row every `events_poll` seconds (one
primary-key read) and reads items and failed photos only when its counters moved. No worker publishes
anything for it, so a stream can never disagree with GET /v1/jobs/<id>.

Events, in order: `progress` (the job's body, at the start and whenever its status or counters
change), `item` (each garment as it is written, the item's body), `photo_failed` (each photo that
failed, with its entry name and code), and `end` (the job's full body, once it has ended; the stream
then closes). Each `item` and `photo_failed` event carries an `id:`: a client that reconnects with it
in `Last-Event-ID` (browsers' EventSource do so by themselves) is sent only what came after.

Each process serves at most `events_max_streams` streams (more: 503 with Retry-After; poll GET
/v1/jobs/<id> instead), and at most `events_max_streams_per_user` of one user (more: 429), so one user
never takes every slot. A stream ends after `events_max_seconds` (the client reconnects and loses
nothing), and as soon as its client is gone: each poll looks whether the client closed its socket, so
the slot comes back within `events_poll`, not at the next keep-alive write.
"""
from __future__ import annotations

import json
from select import select as readable_now
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta

from flask import Blueprint, Response, current_app, g, request, stream_with_context

from api import deps, formats
from api.bodies import full_job_body, item_body
from api.errors import ApiError
from api.paging import from_micros, micros
from api.serializers import job_body
from db import jobfeed, jobstate, owned
from db.models import Job
from db.session import session_scope

bp = Blueprint("events", __name__)
BATCH = 200  # rows of one kind read per look; more are read at once on the next
RETRY_MS = 2000  # how soon an EventSource reconnects after the stream ends


MARGIN = timedelta(seconds=30)  # rows are stamped when written and seen when committed: this much later at most


class _Feed:
    """One kind of row sent in the order it was stamped (items: created_at; failed photos: processed_at).
    Two workers commit independently, so a row stamped earlier can become visible after a later one:
    each look re-reads from MARGIN before the newest stamp sent and skips the ids already sent. After a
    reconnect the ids are forgotten, so a row of that margin may come twice: clients dedupe by its id."""

    def __init__(self, since: datetime | None):
        self.newest = since
        self.sent: dict[uuid.UUID, datetime] = {}

    def window(self) -> tuple[datetime | None, list[uuid.UUID]]:
        """Where the next look starts (None: from the first), and the ids sent since then."""
        if self.newest is None:
            return None, []
        since = self.newest - MARGIN
        return since, [i for i, t in self.sent.items() if t > since]

    def took(self, row_id: uuid.UUID, ts: datetime) -> None:
        self.sent[row_id] = ts
        if self.newest is None or ts > self.newest:
            self.newest = ts
        if len(self.sent) > 4 * BATCH:
            self.sent = {i: t for i, t in self.sent.items() if t > self.newest - MARGIN}


class _Cursor:
    """Where a client is: the newest stamp of the items and of the failed photos it was sent. It travels
    as the events' `id:`."""

    def __init__(self, item: datetime | None = None, failed: datetime | None = None):
        self.items, self.failed = _Feed(item), _Feed(failed)

    def encode(self) -> str:
        return "i{}f{}".format(*("" if f.newest is None else micros(f.newest) for f in (self.items, self.failed)))

    @classmethod
    def decode(cls, token: str | None, aware: bool) -> "_Cursor":
        """The cursor of an id as the document states them (api/formats.py: `i` and `f`, each followed by a
        stamp in microseconds or by nothing); 400 for anything else. `aware`: whether the database gives its stamps with their zone
        (PostgreSQL: UTC) or without (SQLite), as the stream compares them with the rows' own. Every id of
        that form is a place in the stream: its stamps lie between 1970 and 5138."""
        if token is None:
            return cls()
        if not formats.matches(formats.EVENT_ID, token):
            raise ApiError(400, "invalid_last_event_id", "Last-Event-ID is not an id this stream sent")
        item, failed = (_stamp(int(v), aware) if v else None for v in token[1:].split("f"))
        return cls(item, failed)


def _stamp(n: int, aware: bool) -> datetime:
    ts = from_micros(n)
    return ts if aware else ts.replace(tzinfo=None)


def _frame(event: str, data: dict, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class _Slots:
    """At most n open streams in this process, and at most per_user of them one user's: a user who opens
    many takes only their share, in every process, and the others' streams still find a slot."""

    def __init__(self):
        self._lock = threading.Lock()
        self.open = 0
        self.by_user: dict[uuid.UUID, int] = {}

    def take(self, user_id: uuid.UUID, n: int, per_user: int) -> str | None:
        """None when a slot is taken, else which cap refused it ("process" or "user")."""
        with self._lock:
            if per_user > 0 and self.by_user.get(user_id, 0) >= per_user:
                return "user"
            if self.open >= n:
                return "process"
            self.open += 1
            self.by_user[user_id] = self.by_user.get(user_id, 0) + 1
            return None

    def give(self, user_id: uuid.UUID) -> None:
        with self._lock:
            self.open -= 1
            left = self.by_user.get(user_id, 0) - 1
            if left > 0:
                self.by_user[user_id] = left
            else:
                self.by_user.pop(user_id, None)


def _slots() -> _Slots:
    return current_app.extensions.setdefault("wardrobe.event_slots", _Slots())


class _Held:
    """The stream as the response's body: its slot is given back when the server closes it, whether the
    stream ran to its end, the client went away, or it never started."""

    def __init__(self, frames, slots: _Slots, user_id: uuid.UUID):
        self.frames, self.slots, self.user_id, self.held = frames, slots, user_id, True

    def __iter__(self):
        return iter(self.frames)

    def close(self) -> None:
        try:
            self.frames.close()
        finally:
            if self.held:
                self.held = False
                self.slots.give(self.user_id)


def client_gone(sock) -> bool:
    """Whether the client closed its end of `sock`. A stream's client sends nothing after its request,
    so a readable socket that holds no byte has reached its end (or was reset): the stream can stop and
    give its slot back now, not at its next write (a keep-alive comment, seconds away)."""
    if sock is None:
        return False
    try:
        readable, _, _ = readable_now([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except (OSError, ValueError):  # reset, or already closed on our side
        return True


def _stream(job_id: uuid.UUID, user_id: uuid.UUID, cursor: _Cursor, item_body, sock=None):
    settings = deps.settings()
    deadline = time.monotonic() + settings.events_max_seconds
    beat = time.monotonic()
    seen = None  # (status, counters) last sent
    yield f"retry: {RETRY_MS}\n\n"
    while True:
        frames = []
        with session_scope() as s:
            job = owned.owned(s, Job, job_id, user_id)
            if job is None:  # its data was deleted meanwhile
                yield _frame("end", {"id": str(job_id), "status": "deleted"})
                return
            state = (job.status, job.photos_total, job.photos_done, job.photos_failed, job.photos_duplicate,
                     job.items_found)
            if state != seen:
                more = True
                while more:  # items and failures up to now, in pages
                    items = jobfeed.items(s, job_id, *cursor.items.window(), BATCH)
                    failed = jobfeed.failed_photos(s, job_id, *cursor.failed.window(), BATCH)
                    for it in items:
                        cursor.items.took(it.id, it.created_at)
                        frames.append(_frame("item", item_body(it), cursor.encode()))
                    for p in failed:
                        cursor.failed.took(p.id, p.processed_at)
                        frames.append(_frame("photo_failed", {
                            "photo_id": str(p.id), "entry": p.entry_name, "code": p.error_code or "failed",
                            "message": p.error_message or ""}, cursor.encode()))
                    more = len(items) == BATCH or len(failed) == BATCH
                frames.append(_frame("progress", job_body(job)))
                seen = state
            ended = job.status not in jobstate.ACTIVE
            if ended:
                frames.append(_frame("end", full_job_body(job)))
        if frames:
            yield "".join(frames)
            beat = time.monotonic()
        if ended:
            return
        now = time.monotonic()
        if now >= deadline:
            return  # the client reconnects (retry:) with the last id it got
        if now - beat >= settings.events_heartbeat:
            yield ": keep-alive\n\n"
            beat = now
        if client_gone(sock):
            return
        time.sleep(min(settings.events_poll, max(0.0, deadline - now)))


@bp.get("/v1/jobs/<job_id>/events")
@deps.require_user
def job_events(job_id: str):
    jid = deps.parse_uuid(job_id, "job")
    s = deps.db()
    aware = s.get_bind().dialect.name != "sqlite"
    # both checked when both are sent (the header is the one followed): neither may be an id the stream never sent
    query = _Cursor.decode(request.args.get("last_event_id"), aware)
    header = request.headers.get("Last-Event-ID")
    cursor = query if header is None else _Cursor.decode(header, aware)
    if owned.owned(s, Job, jid, g.user_id) is None:
        raise ApiError(404, "not_found", "no such job")
    deps.review_below()  # read now, kept in g for the stream's item bodies
    s.rollback()  # the stream reads in sessions of its own; hold no transaction while it is open
    slots = _slots()
    settings = deps.settings()
    refused = slots.take(g.user_id, settings.events_max_streams, settings.events_max_streams_per_user)
    if refused == "user":
        raise ApiError(429, "too_many_streams", "you have as many live streams open as one user may: close one, "
                       "or poll GET /v1/jobs/<id> instead", {"Retry-After": "5"})
    if refused:
        raise ApiError(503, "too_many_streams", "this server has as many live streams open as it serves: "
                       "poll GET /v1/jobs/<id> instead, or try again shortly", {"Retry-After": "5"})
    sock = request.environ.get("gunicorn.socket")  # `wardrobe serve`; other servers: noticed at the next write
    try:
        frames = _Held(stream_with_context(_stream(jid, g.user_id, cursor, item_body, sock)), slots, g.user_id)
    except BaseException:
        slots.give(g.user_id)
        raise
    resp = Response(frames, mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"  # nginx: pass events on as they come
    return resp
