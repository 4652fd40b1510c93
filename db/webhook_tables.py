"""Webhooks' tables: users' endpoints, the outbox of deliveries, and every attempt at sending one
(db.webhooks reads and writes them). db.models holds them with the rest of the catalogue's tables."""
from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utcnow
from db.base import enum_check as _enum_check


class DeliveryStatus(str, enum.Enum):
    """A webhook event's delivery to one endpoint (db.webhooks)."""

    PENDING = "pending"  # to be sent at next_attempt_at (first try, or a retry)
    DELIVERED = "delivered"  # the endpoint answered 2xx
    FAILED = "failed"  # a 4xx, 410 Gone, a refused address, or every retry used up
    CANCELLED = "cancelled"  # the endpoint was disabled before it could be sent


class WebhookEndpoint(Base):
    """A URL a user registered for job events. The signing secret is stored as it is (the sender
    needs it to sign), unlike API tokens; the API shows it once, when the endpoint is created."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(128))  # whsec_ + base64 (Standard Webhooks)
    events: Mapped[list] = mapped_column(JSON)  # the event types it receives
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(300))  # why it stopped (410 Gone)
    # registered at a private address while the API allowed them (WARDROBE_WEBHOOK_ALLOW_PRIVATE): the
    # sender allows them for it too, whatever its own setting (a name that moves to one later is refused)
    private_ok: Mapped[bool] = mapped_column(default=False, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_webhook_endpoints_user_created", "user_id", "created_at", "id"),)


class WebhookDelivery(Base):
    """The outbox: one event for one endpoint, written in the transaction that made the event; its
    id is the `webhook-id` every attempt sends. next_attempt_at is when it may be sent (next)."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # no foreign key: the event outlives a deleted job
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(JSON)  # the body as sent, the same on every attempt
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    scheduled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)  # first due (job.progress: held back)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # null once it is no longer pending
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # a task message was last sent for it
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        _enum_check("webhook_deliveries", "status", DeliveryStatus),
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),
        Index("ix_webhook_deliveries_endpoint_job", "endpoint_id", "job_id", "event_type"),
        Index("ix_webhook_deliveries_finished", "finished_at"),  # the sweep forgets old ones
        # the sweep's query: pending deliveries by when they are due
        Index("ix_webhook_deliveries_due", "next_attempt_at",
              postgresql_where=text("status = 'pending'"), sqlite_where=text("status = 'pending'")),
    )


class WebhookAttempt(Base):
    """One try at sending a delivery: what the endpoint answered, or the error, and how long it took."""

    __tablename__ = "webhook_attempts"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)  # 1 for the first try
    status_code: Mapped[int | None] = mapped_column(Integer)  # null: no answer (timeout, connection refused ...)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("delivery_id", "attempt", name="uq_webhook_attempts_delivery_attempt"),)
