"""Acting on what committed transactions did (db.events): the side effects that db/ records and
never performs. Called once the transaction is committed, never inside it: an event acted on is
never undone by a rollback, and a failure here never fails the commit (the sweeps catch up: the
webhook sweep sends a delivery whose message was lost, the sweeper deletes a zip past its
retention)."""
from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from core.config import Settings
from core.runtime import current
from db import events, quota

log = logging.getLogger("wardrobe.dispatch")

_apps: dict[str, object] = {}


def commit(s: Session) -> None:
    """Commit the session's transaction, then act on its events (the API's sessions)."""
    tx = s.get_transaction()
    s.commit()
    dispatch(events.take(s, tx))


def sender(settings: Settings):
    """send(delivery_id): one task message on the `webhooks` queue. This process's own Celery app
    (the shape of core.queue) sends it, so the API, the workers and the CLI all can."""
    from core.queue import enqueue_webhook, make_celery

    app = _apps.get(settings.celery_broker_url)
    if app is None:
        app = _apps[settings.celery_broker_url] = make_celery(settings)
    return lambda delivery_id: enqueue_webhook(app, delivery_id)


def dispatch(done: list[events.Event]) -> None:
    rt = current()
    if not done or rt is None:
        return
    st = rt.settings
    # a zip kept 0 s goes now (a job cut short keeps its own for a retry); later retentions are the sweeper's
    zips = [e.upload_key for e in done if isinstance(e, events.JobEnded) and e.upload_key
            and quota.zip_retention(e.status, e.ingest_finished, st.upload_retention, st.upload_retry_retention) == 0]
    deliveries = [d for e in done if isinstance(e, events.WebhooksDue) for d in e.delivery_ids]
    if zips:
        try:
            rt.storage.delete_many(zips)
        except Exception as e:  # noqa: BLE001 - the sweeper deletes it later
            log.warning("could not delete the zip of %d ended job(s) yet (the sweeper will): %s", len(zips), e)
    if deliveries:
        try:
            send = sender(rt.settings)
            for delivery_id in deliveries:
                send(delivery_id)
        except Exception as e:  # noqa: BLE001 - the sweep sends it later
            log.warning("could not queue %d webhook deliver(ies) yet (the sweep will): %s: %s", len(deliveries),
                        type(e).__name__, e)
