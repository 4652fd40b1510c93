"""Webhooks: a user's endpoints for job events, and what was sent to each (db.webhooks)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request
from sqlalchemy import delete, select

from api import deps
from api.errors import ApiError, json_object, short
from api.paging import newest_first
from core.urlguard import UrlRefused, check_url, reaches_private
from db import webhooks
from db.jobview import iso
from db.models import User, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from db.session import lock_row

bp = Blueprint("webhooks", __name__)


def endpoint_body(ep: WebhookEndpoint, secret: str | None = None) -> dict:
    body = {
        "id": str(ep.id),
        "url": ep.url,
        "events": list(ep.events or []),
        "enabled": ep.enabled,
        "disabled_reason": ep.disabled_reason,
        "disabled_at": iso(ep.disabled_at),
        "created_at": iso(ep.created_at),
        "links": {"self": f"/v1/webhooks/{ep.id}", "deliveries": f"/v1/webhooks/{ep.id}/deliveries"},
    }
    if secret is not None:
        body["secret"] = secret  # only in the answer to the POST that made it
    return body


def delivery_body(d: WebhookDelivery, attempts: list[WebhookAttempt]) -> dict:
    return {
        "id": str(d.id),  # the webhook-id header of every attempt
        "type": d.event_type,
        "job_id": str(d.job_id) if d.job_id else None,
        "status": d.status,
        "created_at": iso(d.created_at),
        "next_attempt_at": iso(d.next_attempt_at),
        "finished_at": iso(d.finished_at),
        "attempts": [{"attempt": a.attempt, "at": iso(a.created_at), "status_code": a.status_code,
                      "duration_ms": a.duration_ms, "error": a.error} for a in attempts],
        "payload": d.payload,
    }


def _own_endpoint(webhook_id: str) -> WebhookEndpoint:
    eid = deps.parse_uuid(webhook_id, "webhook")
    ep = deps.db().scalar(select(WebhookEndpoint).where(WebhookEndpoint.id == eid, WebhookEndpoint.user_id == g.user_id))
    if ep is None:
        raise ApiError(404, "not_found", "no such webhook")
    return ep


def _checked_url(value) -> str:
    if not isinstance(value, str):
        raise ApiError(400, "invalid_url", "url must be a string: the http(s) URL to send events to")
    try:
        return check_url(value, allow_private=deps.settings().webhook_allow_private)
    except UrlRefused as e:
        raise ApiError(400, "invalid_url", str(e)) from None


def _private_ok(url: str) -> bool:
    """A URL at a private address, accepted because this API allows them: recorded on the endpoint,
    so that the workers that send (which may not have WARDROBE_WEBHOOK_ALLOW_PRIVATE set) send to it
    as this API said they would, rather than refusing every delivery as "loopback"."""
    return deps.settings().webhook_allow_private and reaches_private(url)


def _events(value) -> list[str]:
    if value is None:
        return list(webhooks.DEFAULT_EVENTS)
    if not isinstance(value, list) or not value or not all(isinstance(e, str) for e in value):
        raise ApiError(400, "invalid_events", f"events must be a non-empty list of: {', '.join(webhooks.EVENTS)}")
    unknown = [e for e in value if e not in webhooks.EVENTS]
    if unknown:
        raise ApiError(400, "invalid_events", f"unknown event {short(unknown[0])}; known: {', '.join(webhooks.EVENTS)}")
    return [e for e in webhooks.EVENTS if e in value]  # the documented order, once each


@bp.post("/v1/webhooks")
@deps.require_user
def create_webhook():
    """{"url": "https://...", "events": [...]} (events optional: the four job.* end events).
    201 with the endpoint and its signing secret, which is never shown again."""
    body = json_object('{"url": "https://...", "events": [...]}', {"url", "events"})
    events = _events(body.get("events"))
    url = _checked_url(body.get("url"))
    settings = deps.settings()
    s = deps.db()
    lock_row(s, User, g.user_id)  # the count and the insert, one request of the user's at a time
    if webhooks.count_endpoints(s, g.user_id) >= settings.webhook_max_endpoints:
        raise ApiError(409, "too_many_webhooks",
                       f"a user has at most {settings.webhook_max_endpoints} webhooks: delete one first")
    ep = webhooks.create_endpoint(s, g.user_id, url, events)
    ep.private_ok = _private_ok(url)
    secret = ep.secret
    s.commit()
    resp = jsonify(endpoint_body(ep, secret))
    resp.status_code = 201
    resp.headers["Location"] = f"/v1/webhooks/{ep.id}"
    return resp


@bp.get("/v1/webhooks")
@deps.require_user
def list_webhooks():
    rows, next_cursor = newest_first(deps.db(), select(WebhookEndpoint).where(WebhookEndpoint.user_id == g.user_id),
                                     WebhookEndpoint, request.args, deps.settings())
    return {"webhooks": [endpoint_body(e) for e in rows], "next_cursor": next_cursor}


@bp.get("/v1/webhooks/<webhook_id>")
@deps.require_user
def get_webhook(webhook_id: str):
    return endpoint_body(_own_endpoint(webhook_id))


@bp.patch("/v1/webhooks/<webhook_id>")
@deps.require_user
def update_webhook(webhook_id: str):
    """{"url": ..., "events": [...], "enabled": true|false}, any of them. Turning an endpoint back on
    (after it answered 410 Gone, or after the user turned it off) clears why it was off; events that
    ended while it was off are not sent. The secret stays."""
    ep = _own_endpoint(webhook_id)
    body = json_object('{"url": "https://...", "events": [...], "enabled": true}', {"url", "events", "enabled"})
    if not body:
        raise ApiError(400, "invalid_body", "send at least one of url, events, enabled")
    if "enabled" in body and not isinstance(body["enabled"], bool):
        raise ApiError(400, "invalid_body", "enabled must be true or false")
    if "events" in body:
        if body["events"] is None:
            raise ApiError(400, "invalid_events", "events must be a non-empty list")
        ep.events = _events(body["events"])
    if "url" in body:
        ep.url = _checked_url(body["url"])
        ep.private_ok = _private_ok(ep.url)
    if "enabled" in body:
        webhooks.set_enabled(ep, body["enabled"])
    s = deps.db()
    s.commit()
    return endpoint_body(ep)


@bp.delete("/v1/webhooks/<webhook_id>")
@deps.require_user
def delete_webhook(webhook_id: str):
    """204; its deliveries go with it (none pending is sent afterwards)."""
    ep = _own_endpoint(webhook_id)
    s = deps.db()
    s.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == ep.id))
    s.commit()
    return "", 204


@bp.get("/v1/webhooks/<webhook_id>/deliveries")
@deps.require_user
def list_deliveries(webhook_id: str):
    """The endpoint's events, newest first, each with every attempt at sending it."""
    ep = _own_endpoint(webhook_id)
    s = deps.db()
    rows, next_cursor = newest_first(s, select(WebhookDelivery).where(WebhookDelivery.endpoint_id == ep.id),
                                     WebhookDelivery, request.args, deps.settings())
    attempts: dict = {d.id: [] for d in rows}
    if rows:
        for a in s.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(attempts)))
                           .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt)):
            attempts[a.delivery_id].append(a)
    return {"deliveries": [delivery_body(d, attempts[d.id]) for d in rows], "next_cursor": next_cursor}
