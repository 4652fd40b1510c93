"""A user's webhook endpoints as the API changes and shows them (db.webhooks makes them and sends
their events): one deleted, the attempts at a page of its deliveries."""
from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import WebhookAttempt, WebhookEndpoint


def delete_endpoint(s: Session, endpoint_id: uuid.UUID) -> None:
    """The endpoint and its deliveries (ON DELETE CASCADE): none pending is sent afterwards."""
    s.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))


def attempts(s: Session, delivery_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[WebhookAttempt]]:
    """Every attempt at sending each delivery, in order."""
    out: dict[uuid.UUID, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
    if delivery_ids:
        for a in s.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
                           .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt)):
            out[a.delivery_id].append(a)
    return out
