"""A user's webhook endpoints as they make, change and delete them, each committed. The URL and the
events are checked by the route; whether a URL at a private address may be sent to is decided here."""
from __future__ import annotations

from core.urlguard import reaches_private
from db import webhook_endpoints, webhooks
from db.models import User, WebhookEndpoint
from db.session import lock_row
from services.context import Ctx
from services.errors import Refused


def _private_ok(ctx: Ctx, url: str) -> bool:
    """A URL at a private address, accepted because this API allows them: recorded on the endpoint,
    so that the workers that send (which may not have WARDROBE_WEBHOOK_ALLOW_PRIVATE set) send to it
    as this API said they would, rather than refusing every delivery as "loopback"."""
    return ctx.settings.webhook_allow_private and reaches_private(url)


def create(ctx: Ctx, url: str, events: list[str]) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (shown once); 409 past the user's most."""
    s, most = ctx.s, ctx.settings.webhook_max_endpoints
    lock_row(s, User, ctx.user_id)  # the count and the insert, one request of the user's at a time
    if webhooks.count_endpoints(s, ctx.user_id) >= most:
        raise Refused(409, "too_many_webhooks", f"a user has at most {most} webhooks: delete one first")
    ep = webhooks.create_endpoint(s, ctx.user_id, url, events)
    ep.private_ok = _private_ok(ctx, url)
    secret = ep.secret
    s.commit()
    return ep, secret


def update(ctx: Ctx, ep: WebhookEndpoint, url: str | None = None, events: list[str] | None = None,
           enabled: bool | None = None) -> None:
    """What is given (None: unchanged). Turning an endpoint back on clears why it was off."""
    if events is not None:
        ep.events = events
    if url is not None:
        ep.url = url
        ep.private_ok = _private_ok(ctx, url)
    if enabled is not None:
        webhooks.set_enabled(ep, enabled)
    ctx.s.commit()


def delete(ctx: Ctx, ep: WebhookEndpoint) -> None:
    webhook_endpoints.delete_endpoint(ctx.s, ep.id)
    ctx.s.commit()
