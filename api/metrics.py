"""`GET /metrics`: Prometheus's text format. Request counts and latency per route (every gunicorn
process's, added up: see core/metrics.py), the workers' counters when they share the folder (one
machine), and, read at each scrape, the depth of each Celery queue and the jobs by status.

No token: keep the route inside the cluster (Prometheus scrapes the pods, not the ingress).
"""
from __future__ import annotations

import logging
import time

from flask import Blueprint, Flask, Response, current_app, g, request

from core import metrics as m
from core.queue import QUEUES

log = logging.getLogger("wardrobe.api")

bp = Blueprint("metrics", __name__)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_ERROR_CODES = {"storage_unavailable": "storage", "database_unavailable": "database", "queue_unavailable": "broker"}


def _start() -> None:
    g._metrics_t0 = time.perf_counter()


def _finish(resp):
    t0 = g.pop("_metrics_t0", None)
    if t0 is None:
        return resp
    route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    if route == "/metrics":
        return resp  # the scrapes themselves would be most of the count
    # a client may send any method it makes up: each one a label value would grow the series without end
    method = request.method if request.method in _METHODS else "other"
    m.HTTP_REQUESTS.labels(route, method, str(resp.status_code)).inc()
    m.HTTP_LATENCY.labels(route, method).observe(time.perf_counter() - t0)
    if resp.status_code == 503 and resp.is_json:
        code = ((resp.get_json(silent=True) or {}).get("error") or {}).get("code")
        if code in _ERROR_CODES:
            m.ERRORS.labels("api", _ERROR_CODES[code]).inc()
    return resp


def install(app: Flask) -> None:
    # first of the before-request functions: a request they refuse (413 from the body cap) is counted too
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_finish)
    app.register_blueprint(bp)


class SystemCollector:
    """Read when scraped: waiting messages per Celery queue (Redis list length: what KEDA scales
    on), messages held unacknowledged by workers, and jobs by status."""

    def __init__(self, celery, session_factory):
        self.celery, self.session_factory = celery, session_factory

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from db.jobcounts import by_status

        depth = GaugeMetricFamily("wardrobe_queue_depth", "Messages waiting in each Celery queue (Redis list length)",
                                  labels=["queue"])
        held = GaugeMetricFamily("wardrobe_queue_unacked", "Messages delivered to workers and not yet acknowledged (all queues)")
        up = GaugeMetricFamily("wardrobe_broker_up", "1 when the broker answered this scrape")
        broker = str(self.celery.conf.broker_url or "")
        if broker.startswith(("redis://", "rediss://")):
            try:
                with self.celery.connection_for_read() as conn:
                    channel = conn.default_channel
                    client = channel.client
                    for q in QUEUES:
                        names = {channel._q_for_pri(q, pri) for pri in channel.priority_steps}
                        depth.add_metric([q], sum(client.llen(n) for n in names))
                    held.add_metric([], client.hlen(channel.unacked_key))
                up.add_metric([], 1)
            except Exception as e:  # noqa: BLE001 - a scrape must answer: the broker's state is a metric
                log.warning("metrics: broker unreadable: %s", type(e).__name__)
                m.ERRORS.labels("api", "broker").inc()
                up.add_metric([], 0)
            yield depth
            yield held
            yield up
        jobs = GaugeMetricFamily("wardrobe_jobs", "Jobs by status", labels=["status"])
        try:
            s = self.session_factory()
            try:
                for status, n in by_status(s):
                    jobs.add_metric([status], n)
            finally:
                s.close()
        except Exception as e:  # noqa: BLE001
            log.warning("metrics: database unreadable: %s", type(e).__name__)
            m.ERRORS.labels("api", "database").inc()
        yield jobs


@bp.get("/metrics")
def metrics():
    if m.prom is None:
        return Response("prometheus-client is not installed\n", status=501, mimetype="text/plain")
    from db.session import new_session

    body = m.exposition(SystemCollector(current_app.extensions["celery"], new_session))
    return Response(body, headers={"Content-Type": m.CONTENT_TYPE})
