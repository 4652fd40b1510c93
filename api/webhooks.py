"""Webhooks: a user's endpoints for job events, and what was sent to each (db.webhooks)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from api import deps, formats
from api.errors import ApiError, json_object, short
from api.paging import newest_first
from core.urlguard import UrlRefused, check_url
from db import webhook_endpoints, webhooks
from db.jobview import iso
from db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from services import webhooks as endpoints

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


def _checked_url(value) -> str:
    if not isinstance(value, str):
        raise ApiError(400, "invalid_url", "url must be a string: the http(s) URL to send events to")
    if len(value) > formats.WEBHOOK_URL_MAX or not formats.matches(formats.WEBHOOK_URL, value):
        # the document's pattern (api/formats.py): what the address check below may then still refuse is
        # what no pattern can say (where the name resolves to)
        raise ApiError(400, "invalid_url", f"url must be an http(s) URL of at most {formats.WEBHOOK_URL_MAX} ASCII "
                                           "characters, with a host and no user name or password")
    try:
        return check_url(value, allow_private=deps.settings().webhook_allow_private)
    except UrlRefused as e:
        raise ApiError(400, "invalid_url", str(e)) from None


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
    ep, secret = endpoints.create(deps.ctx(), url, events)
    resp = jsonify(endpoint_body(ep, secret))
    resp.status_code = 201
    resp.headers["Location"] = f"/v1/webhooks/{ep.id}"
    return resp


@bp.get("/v1/webhooks")
@deps.require_user
def list_webhooks():
    rows, next_cursor = newest_first(deps.db(), WebhookEndpoint, request.args, deps.settings(), user_id=g.user_id)
    return {"webhooks": [endpoint_body(e) for e in rows], "next_cursor": next_cursor}


@bp.get("/v1/webhooks/<webhook_id>")
@deps.require_user
def get_webhook(webhook_id: str):
    return endpoint_body(deps.own(WebhookEndpoint, webhook_id, "webhook"))


@bp.patch("/v1/webhooks/<webhook_id>")
@deps.require_user
def update_webhook(webhook_id: str):
    """{"url": ..., "events": [...], "enabled": true|false}, any of them. Turning an endpoint back on
    (after it answered 410 Gone, or after the user turned it off) clears why it was off; events that
    ended while it was off are not sent. The secret stays."""
    ep = deps.own(WebhookEndpoint, webhook_id, "webhook")
    body = json_object('{"url": "https://...", "events": [...], "enabled": true}', {"url", "events", "enabled"})
    if not body:
        raise ApiError(400, "invalid_body", "send at least one of url, events, enabled")
    if "enabled" in body and not isinstance(body["enabled"], bool):
        raise ApiError(400, "invalid_body", "enabled must be true or false")
    if "events" in body and body["events"] is None:
        raise ApiError(400, "invalid_events", "events must be a non-empty list")
    events = _events(body["events"]) if "events" in body else None
    url = _checked_url(body["url"]) if "url" in body else None
    endpoints.update(deps.ctx(), ep, url, events, body.get("enabled"))
    return endpoint_body(ep)


@bp.delete("/v1/webhooks/<webhook_id>")
@deps.require_user
def delete_webhook(webhook_id: str):
    """204; its deliveries go with it (none pending is sent afterwards)."""
    endpoints.delete(deps.ctx(), deps.own(WebhookEndpoint, webhook_id, "webhook"))
    return "", 204


@bp.get("/v1/webhooks/<webhook_id>/deliveries")
@deps.require_user
def list_deliveries(webhook_id: str):
    """The endpoint's events, newest first, each with every attempt at sending it."""
    ep = deps.own(WebhookEndpoint, webhook_id, "webhook")
    s = deps.db()
    rows, next_cursor = newest_first(s, WebhookDelivery, request.args, deps.settings(), endpoint_id=ep.id)
    attempts = webhook_endpoints.attempts(s, [d.id for d in rows])
    return {"deliveries": [delivery_body(d, attempts[d.id]) for d in rows], "next_cursor": next_cursor}
