"""Acting on what committed transactions did (db.events): the side effects that db/ records and
never performs. Called once the transaction is committed, never inside it: an event acted on is
never undone by a rollback, and a failure here never fails the commit (the sweeps catch up: the
webhook sweep sends a delivery whose message was lost, the sweeper deletes a zip past its
retention)."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.config import Settings
from core.runtime import Runtime, current
from db import events, quota
from services import objects

log = logging.getLogger("wardrobe.dispatch")

_apps: dict[str, object] = {}


@dataclass
class Acted:
    """What acting on a transaction's events deleted (the deleted rows' objects)."""

    objects: int = 0  # stored objects deleted, or asked to be
    objects_left: int = 0  # of which storage refused, the sweeper's (a user's prefix: -1, uncounted)


def commit(s: Session) -> Acted:
    """Commit the session's transaction, then act on its events (the API's sessions, the CLI's)."""
    tx = s.get_transaction()
    s.commit()
    return dispatch(events.take(s, tx))


def sender(settings: Settings):
    """send(delivery_id): one task message on the `webhooks` queue. This process's own Celery app
    (the shape of core.queue) sends it, so the API, the workers and the CLI all can."""
    from core.queue import enqueue_webhook, make_celery

    app = _apps.get(settings.celery_broker_url)
    if app is None:
        app = _apps[settings.celery_broker_url] = make_celery(settings)
    return lambda delivery_id: enqueue_webhook(app, delivery_id)


def dispatch(done: list[events.Event]) -> Acted:
    rt = current()
    acted = Acted()
    if not done or rt is None:
        return acted
    _delete_zips(rt, done)
    _delete_objects(rt, done, acted)
    _send_webhooks(rt, [d for e in done if isinstance(e, events.WebhooksDue) for d in e.delivery_ids])
    return acted


def _delete_zips(rt: Runtime, done: list[events.Event]) -> None:
    st = rt.settings
    # a zip kept 0 s goes now (a job cut short keeps its own for a retry); later retentions are the sweeper's
    zips = [e.upload_key for e in done if isinstance(e, events.JobEnded) and e.upload_key
            and quota.zip_retention(e.status, e.ingest_finished, st.upload_retention, st.upload_retry_retention) == 0]
    if zips:
        try:
            rt.storage.delete_many(zips)
        except Exception as e:  # noqa: BLE001 - the sweeper deletes it later
            log.warning("could not delete the zip of %d ended job(s) yet (the sweeper will): %s", len(zips), e)


def _delete_objects(rt: Runtime, done: list[events.Event], acted: Acted) -> None:
    """The objects of deleted photos, jobs and users."""
    keys = [k for e in done if isinstance(e, events.ObjectsUnreferenced) for k in e.keys]
    if keys:
        acted.objects += len(keys)
        acted.objects_left += objects.delete_keys(rt.storage, keys)
    for e in done:
        if isinstance(e, events.UserDeleted):
            n = objects.delete_user(rt.storage, e.user_id)
            if n is None:
                acted.objects_left = -1
            else:
                acted.objects += n


def _send_webhooks(rt: Runtime, deliveries: list) -> None:
    if deliveries:
        try:
            send = sender(rt.settings)
            for delivery_id in deliveries:
                send(delivery_id)
        except Exception as e:  # noqa: BLE001 - the sweep sends it later
            log.warning("could not queue %d webhook deliver(ies) yet (the sweep will): %s: %s", len(deliveries),
                        type(e).__name__, e)
