"""Webhooks' tables: users' endpoints, the outbox of events and every attempt at sending one.

An event is written to the outbox (webhook_deliveries) in the transaction that made it: a job's end
(db.jobstate calls job_ended) or its progress (job_progressed). So an event is never lost when the
process dies right after the job ends, and never sent for a transaction that rolled back. Once the
transaction commits, a task message is sent per new row due now (the `webhooks` queue: a WebhooksDue
event, which services.dispatch acts on); a message that is lost
(broker down, Redis restarted) is made good by the sweep (due_deliveries, on the --beat worker's
schedule), which also sends the retries: when a delivery may be tried next is next_attempt_at in
the table, never only a countdown in the broker.

The sender (worker.webhooks) holds the delivery's row lock while it calls the endpoint, so two
messages for one delivery never send it twice at once; a duplicate message finds it sent or not
yet due and does nothing. Delivery is at least once: a receiver dedupes on `webhook-id`.
"""
from __future__ import annotations

import base64
import logging
import random
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from core.config import Settings
from core.runtime import current
from db import events
from db.jobview import iso, job_links, job_summary
from db.models import (DeliveryStatus, Job, JobStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow)

log = logging.getLogger("wardrobe.webhooks")

END_EVENTS = {
    JobStatus.SUCCEEDED.value: "job.succeeded",
    JobStatus.PARTIALLY_SUCCEEDED.value: "job.partially_succeeded",
    JobStatus.FAILED.value: "job.failed",
    JobStatus.CANCELLED.value: "job.cancelled",
}
PROGRESS = "job.progress"
EVENTS = (*END_EVENTS.values(), PROGRESS)
DEFAULT_EVENTS = tuple(END_EVENTS.values())  # job.progress is opt-in
SECRET_PREFIX = "whsec_"
PENDING = DeliveryStatus.PENDING.value


def new_secret() -> str:
    """A Standard Webhooks signing secret: whsec_ and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def create_endpoint(s: Session, user_id: uuid.UUID, url: str, events: list[str]) -> WebhookEndpoint:
    """A new, enabled endpoint; the caller has checked the URL (core.urlguard) and the events."""
    ep = WebhookEndpoint(user_id=user_id, url=url, secret=new_secret(), events=list(events), enabled=True)
    s.add(ep)
    s.flush()
    return ep


def set_enabled(ep: WebhookEndpoint, enabled: bool) -> None:
    """On again: nothing says why it was off. Off by the user: said so (410 Gone says its own reason)."""
    if enabled:
        ep.enabled, ep.disabled_at, ep.disabled_reason = True, None, None
    elif ep.enabled:
        ep.enabled, ep.disabled_at = False, utcnow()
        ep.disabled_reason = "turned off by its owner"


def count_endpoints(s: Session, user_id: uuid.UUID) -> int:
    return s.scalar(select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.user_id == user_id)) or 0


# --- events ----------------------------------------------------------------------------------------------------------

def event_body(event_type: str, job, now: datetime) -> dict:
    """The event as sent: the job as GET /v1/jobs/<id> shows it, less its lists of failed and
    duplicate photos and its pace (GET links.self for those), with its own error."""
    data = job_summary(job)
    data["error"] = {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None
    data["links"] = job_links(job)
    return {"type": event_type, "timestamp": iso(now), "data": data}


def _job_row(s: Session, job_id: uuid.UUID):
    """The job's columns as the database has them now: a Core row, never a stale ORM object
    (the transitions update jobs with synchronize_session=False)."""
    return s.execute(select(*Job.__table__.c).where(Job.id == job_id)).first()


def _send_after_commit(s: Session, ids: list[uuid.UUID]) -> None:
    if ids:
        events.record(s, events.WebhooksDue(tuple(ids)))  # their task messages, once it commits (services.dispatch)


def job_ended(s: Session, job_id: uuid.UUID) -> int:
    """Called by each transition that ends a job (db.jobstate), in its transaction: one outbox row
    per enabled endpoint of the job's user that takes the event. Progress events waiting to be sent
    are dropped (cancelled, when an attempt of theirs failed already): the end event carries the
    final counts. Returns how many rows it wrote."""
    job = _job_row(s, job_id)
    event_type = END_EVENTS.get(job.status) if job is not None else None
    if event_type is None:
        return 0
    endpoints = s.execute(select(WebhookEndpoint.id, WebhookEndpoint.events).where(
        WebhookEndpoint.user_id == job.user_id, WebhookEndpoint.enabled.is_(True))).all()
    if not endpoints:
        return 0
    now = utcnow()
    waiting = s.execute(select(WebhookDelivery.id, WebhookDelivery.attempts)
                        .where(WebhookDelivery.endpoint_id.in_([e.id for e in endpoints]), WebhookDelivery.job_id == job_id,
                               WebhookDelivery.event_type == PROGRESS, WebhookDelivery.status == PENDING)
                        .with_for_update(skip_locked=True)).all()  # one being sent right now: see claim
    never_tried = [w.id for w in waiting if w.attempts == 0]
    retrying = [w.id for w in waiting if w.attempts > 0]  # cancelled, so that their attempts stay in the history
    if never_tried:
        s.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(never_tried))
                  .execution_options(synchronize_session=False))
    _cancel(s, retrying, now)
    body = event_body(event_type, job, now)
    rows = [dict(id=uuid.uuid4(), endpoint_id=e.id, job_id=job_id, event_type=event_type, payload=body,
                 status=PENDING, attempts=0, created_at=now, scheduled_at=now, next_attempt_at=now, queued_at=now)
            for e in endpoints if event_type in (e.events or ())]
    if rows:
        s.execute(insert(WebhookDelivery), rows)
        _send_after_commit(s, [r["id"] for r in rows])
    return len(rows)


def _cancel(s: Session, ids: list[uuid.UUID], now: datetime) -> None:
    """Waiting deliveries that will not be sent; their attempts stay in the history."""
    if ids:
        s.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                  .values(status=DeliveryStatus.CANCELLED.value, next_attempt_at=None, finished_at=now)
                  .execution_options(synchronize_session=False))


def job_progressed(s: Session, job_id: uuid.UUID, interval: float | None = None) -> int:
    """Called where a running job's counts move (db.jobstate.add_progress, progress_and_finish), in that transaction.
    For each endpoint that opted in to job.progress: a delivery not yet sent takes the latest counts
    (coalesced); one waiting for a retry is cancelled for a new one due at its retry's time; else a
    new one is written, due no sooner than `interval` seconds after the last one for this job and
    endpoint (WARDROBE_WEBHOOK_PROGRESS_INTERVAL). Returns the rows touched."""
    endpoints = s.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.events)
        .join(Job, Job.user_id == WebhookEndpoint.user_id)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value, WebhookEndpoint.enabled.is_(True))).all()
    targets = [e.id for e in endpoints if PROGRESS in (e.events or ())]
    if not targets:
        return 0
    if interval is None:
        rt = current()
        interval = (rt.settings if rt else Settings).webhook_progress_interval
    now = utcnow()
    body = event_body(PROGRESS, _job_row(s, job_id), now)
    send_now = []
    for endpoint_id in targets:
        mine = (WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.job_id == job_id,
                WebhookDelivery.event_type == PROGRESS)
        waiting = s.execute(select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookDelivery.next_attempt_at)
                            .where(*mine, WebhookDelivery.status == PENDING)
                            .limit(1).with_for_update(skip_locked=True)).first()
        if waiting is not None and waiting.attempts == 0:  # not sent yet: it takes the latest counts
            s.execute(update(WebhookDelivery).where(WebhookDelivery.id == waiting.id).values(payload=body)
                      .execution_options(synchronize_session=False))
            continue
        if waiting is not None:
            # Waiting for a retry: its body is not changed under the webhook-id a receiver may have
            # seen already (receivers dedupe on it). It is cancelled, and a new event with the latest
            # counts takes its turn.
            _cancel(s, [waiting.id], now)
            due = max(now, _aware(waiting.next_attempt_at))
        else:
            last = s.scalar(select(func.max(WebhookDelivery.scheduled_at)).where(*mine))
            due = now if last is None else max(now, _aware(last) + timedelta(seconds=interval))
        row_id = uuid.uuid4()
        # one due later is left to the sweep, which sends it when it is due (queued_at null)
        s.execute(insert(WebhookDelivery).values(
            id=row_id, endpoint_id=endpoint_id, job_id=job_id, event_type=PROGRESS, payload=body, status=PENDING,
            attempts=0, created_at=now, scheduled_at=due, next_attempt_at=due, queued_at=now if due <= now else None))
        if due <= now:
            send_now.append(row_id)
    _send_after_commit(s, send_now)
    return len(targets)


def _aware(v: datetime) -> datetime:
    return v if v.tzinfo is not None else v.replace(tzinfo=timezone.utc)


# --- sending: claim, record, retry -----------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What one attempt got: the status code (None: no answer) or the error, and how long it took."""

    status_code: int | None
    duration_ms: int
    error: str | None = None
    refused: bool = False  # the address is not allowed (core.urlguard): not retried
    retry_after: float | None = None  # the endpoint's Retry-After on a 429 or 503, in seconds


def retry_schedule(settings: Settings) -> list[float]:
    """Seconds to wait before each retry (WARDROBE_WEBHOOK_RETRY_SCHEDULE)."""
    return [float(x) for x in settings.webhook_retry_schedule.replace(" ", "").split(",") if x]


def retry_delay(base: float, retry_after: float | None = None) -> float:
    """The wait before a retry: the schedule's, +-20 % jitter (endpoints that failed together do not
    all come back at once), no less than the endpoint's Retry-After (capped at a day)."""
    delay = base * random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, 86400.0))
    return delay


def claim(s: Session, delivery_id: uuid.UUID) -> tuple[WebhookDelivery, WebhookEndpoint] | None:
    """Lock a pending delivery that is due, with its endpoint, for sending; None when there is
    nothing to send (sent, not due yet, being sent by another process, or its endpoint disabled:
    then it is cancelled here). The lock lasts until the session commits the attempt."""
    now = utcnow()
    # The endpoint first, with a key-share lock: deleting it (which locks it, then its deliveries) waits
    # for this send to be recorded, instead of holding the endpoint while this holds the delivery and
    # then wants the endpoint (to disable it on a 410 Gone): a deadlock on PostgreSQL.
    endpoint_id = s.scalar(select(WebhookDelivery.endpoint_id).where(WebhookDelivery.id == delivery_id))
    if endpoint_id is None:
        return None
    ep = s.scalar(select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).with_for_update(key_share=True))
    d = s.scalar(select(WebhookDelivery)
                 .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING,
                        WebhookDelivery.next_attempt_at <= now)
                 .with_for_update(skip_locked=True))
    if d is None:
        return None
    if ep is None or not ep.enabled or (d.event_type == PROGRESS and _job_ended(s, d.job_id)):
        # a progress event retried after its job ended (it was being sent when the job ended) is stale
        d.status, d.next_attempt_at, d.finished_at = DeliveryStatus.CANCELLED.value, None, now
        return None
    if d.event_type == PROGRESS:
        held = _progress_held_until(s, d)
        if held is not None and held > now:  # the one before went out late: this waits its interval
            d.next_attempt_at, d.queued_at = held, None  # the sweep sends it when it is due
            return None
    return d, ep


def _progress_held_until(s: Session, d: WebhookDelivery) -> datetime | None:
    """When this job.progress event may go: WARDROBE_WEBHOOK_PROGRESS_INTERVAL after the last attempt at
    another progress event of its job to its endpoint. Its due time was set that far after the last one's
    due time, but that one may have been sent late (a busy queue, a retry), and a receiver would then get
    two within a second."""
    last = s.scalar(select(func.max(WebhookAttempt.created_at)).join(
        WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id).where(
        WebhookDelivery.endpoint_id == d.endpoint_id, WebhookDelivery.job_id == d.job_id,
        WebhookDelivery.event_type == PROGRESS, WebhookDelivery.id != d.id))
    if last is None:
        return None
    rt = current()
    return _aware(last) + timedelta(seconds=(rt.settings if rt else Settings).webhook_progress_interval)


def _job_ended(s: Session, job_id: uuid.UUID | None) -> bool:
    return job_id is not None and s.scalar(select(Job.status).where(Job.id == job_id)) != JobStatus.RUNNING.value


def record(s: Session, d: WebhookDelivery, ep: WebhookEndpoint, out: Outcome, schedule: list[float]) -> str:
    """Write the attempt and what follows from it; returns the delivery's status.
    2xx: delivered. 410 Gone: failed, and the endpoint is disabled. Another 3xx or 4xx (but 429),
    or a refused address: failed, not retried. 5xx, 429, a timeout or a connection error: retried
    after the schedule's next wait, failed once the schedule is used up."""
    now = utcnow()
    d.attempts += 1
    s.add(WebhookAttempt(delivery_id=d.id, attempt=d.attempts, status_code=out.status_code,
                         duration_ms=max(0, int(out.duration_ms)), error=(out.error or None) and out.error[:500],
                         created_at=now))
    code = out.status_code
    if code is not None and 200 <= code < 300:
        status = DeliveryStatus.DELIVERED.value
    elif code == 410:
        status = DeliveryStatus.FAILED.value
        ep.enabled, ep.disabled_at = False, now
        ep.disabled_reason = "the endpoint answered 410 Gone: no more events are sent to it"
        log.info("webhook endpoint %s answered 410 Gone: disabled", ep.id)
    elif out.refused or (code is not None and code < 500 and code != 429):
        status = DeliveryStatus.FAILED.value
    elif d.attempts <= len(schedule):
        d.next_attempt_at = now + timedelta(seconds=retry_delay(schedule[d.attempts - 1], out.retry_after))
        d.queued_at = None  # the sweep sends it when it is due
        return PENDING
    else:
        status = DeliveryStatus.FAILED.value
    d.status, d.next_attempt_at, d.finished_at = status, None, now
    return status


def due_deliveries(s: Session, settings: Settings, limit: int = 500) -> list[uuid.UUID]:
    """Pending deliveries that are due and have no task message on its way: never sent one
    (a retry, or a job.progress held back), or one sent longer ago than WARDROBE_WEBHOOK_REQUEUE_AFTER
    (lost with the broker, or with a worker that died). Marked as queued now; the caller sends them
    after the commit. Rows another sweep or a sender holds are skipped."""
    now = utcnow()
    stale = now - timedelta(seconds=settings.webhook_requeue_after)
    ids = list(s.scalars(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now,
               or_(WebhookDelivery.queued_at.is_(None), WebhookDelivery.queued_at < stale))
        .order_by(WebhookDelivery.next_attempt_at).limit(limit).with_for_update(skip_locked=True)))
    if ids:
        s.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(queued_at=now)
                  .execution_options(synchronize_session=False))
    return ids


def forget_finished(s: Session, keep_days: int, limit: int = 1000) -> int:
    """Delete finished deliveries (and their attempts) older than `keep_days`, `limit` at a time."""
    cutoff = utcnow() - timedelta(days=keep_days)
    old = (select(WebhookDelivery.id).where(WebhookDelivery.finished_at < cutoff).limit(limit)
           .with_for_update(skip_locked=True))
    return s.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(old))
                     .execution_options(synchronize_session=False)).rowcount or 0
