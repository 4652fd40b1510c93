"""Liveness and readiness."""
from __future__ import annotations

import time

from flask import Blueprint, jsonify

from api import deps
from db.session import ping

bp = Blueprint("health", __name__)
WORKER_PING_S = 0.5  # how long /readyz waits for workers to answer a ping
WORKER_CACHE_S = 5.0  # one ping per process in this long, however often /readyz is asked
_workers_seen: dict = {}


def _workers() -> dict:
    """How many Celery workers answer a ping, and on which queues they could be: reported by
    /readyz, not part of its verdict (the API takes uploads without workers; they wait queued)."""
    now, celery = time.monotonic(), deps.celery()
    seen = _workers_seen.get(id(celery))
    if seen and now - seen[0] < WORKER_CACHE_S:
        return seen[1]
    try:
        replies = celery.control.ping(timeout=WORKER_PING_S)
        names = sorted(name for r in replies for name in r)
        body = {"answering": len(names), "names": names}
        if not names:
            body["warning"] = "no worker answered: uploads will wait queued until one runs (wardrobe worker)"
    except Exception as e:  # noqa: BLE001
        body = {"answering": None, "warning": f"could not ask the workers: {type(e).__name__}"}
    _workers_seen[id(celery)] = (now, body)
    return body


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    checks = {}
    try:
        ping(deps.db())
        checks["database"] = "ok"
    except Exception as e:  # noqa: BLE001
        checks["database"] = f"error: {type(e).__name__}"
    try:
        with deps.celery().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as e:  # noqa: BLE001
        checks["broker"] = f"error: {type(e).__name__}"
    try:
        deps.storage().ping()
        checks["storage"] = "ok"
    except Exception as e:  # noqa: BLE001
        checks["storage"] = f"error: {type(e).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ok else "unavailable", "checks": checks}
    if checks["broker"] == "ok":
        body["workers"] = _workers()
    return jsonify(body), (200 if ok else 503)
