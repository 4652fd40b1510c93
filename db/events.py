"""What a state transition did, beyond its rows: the events a unit of work collects for the service
layer to act on once it has committed (services.dispatch: delete an ended job's zip and the objects of
deleted rows, send the task messages of new webhook deliveries). db/ persists and says what happened; it never sends or deletes.

A transition records its events on the session (`record`), keyed by the transaction they belong to;
whoever commits takes that transaction's events after the commit (`take`) and hands them to the
dispatcher: services.commit for a session of its own (the API's), db.session.session_scope for
db's own short units of work. Events of a transaction that rolled back are never taken."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session, SessionTransaction

_KEY = "wardrobe_events"


@dataclass(frozen=True)
class JobEnded:
    """A job reached an end state (succeeded, partially succeeded, failed, cancelled)."""

    job_id: uuid.UUID
    status: str  # the end state it reached
    ingest_finished: bool  # whether its zip was read to the end
    upload_key: str | None  # its zip, which WARDROBE_UPLOAD_RETENTION=0 deletes at once


@dataclass(frozen=True)
class WebhooksDue:
    """Outbox rows (webhook deliveries) written due now: each wants its task message."""

    delivery_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True)
class ObjectsUnreferenced:
    """Rows were deleted (a photo, a job): the stored objects they named go once that is committed."""

    keys: tuple[str, ...]


@dataclass(frozen=True)
class UserDeleted:
    """A user's rows were deleted: everything stored under their prefix goes once that is committed."""

    user_id: uuid.UUID


Event = JobEnded | WebhooksDue | ObjectsUnreferenced | UserDeleted


def record(s: Session, *events: Event) -> None:
    """Events of the session's current transaction."""
    tx = s.get_transaction()
    s.info.setdefault(_KEY, []).extend((tx, e) for e in events)


def take(s: Session, tx: SessionTransaction | None) -> list[Event]:
    """The events `tx` recorded (it committed); every other transaction's are dropped with them."""
    pending = s.info.pop(_KEY, [])
    return [e for t, e in pending if tx is not None and t is tx]
