"""Prometheus metrics, shared by the API and the workers (prometheus-client).

Both run several processes: gunicorn's workers and Celery's prefork pool. `wardrobe serve` and
`wardrobe worker` point PROMETHEUS_MULTIPROC_DIR at a fresh folder before anything imports
prometheus_client (core/metricsdir.py), so every process writes its counters and
histograms there and one scrape adds them all up (prometheus-client's multiprocess mode). The
API answers `/metrics`; a worker answers on WARDROBE_WORKER_METRICS_PORT, from its main process.

Gauges that describe the system rather than a process (queue depth, jobs by status) are read
when scraped, by the API (api/metrics.py): they are the same whichever process answers.

Without prometheus-client installed every metric is a no-op and `/metrics` answers 501.
"""
from __future__ import annotations

import os

try:
    import prometheus_client as prom
except ImportError:  # pragma: no cover - every extra that runs a server installs it
    prom = None

from core.metricsdir import MULTIPROC_ENV  # noqa: E402


class _Noop:
    def labels(self, *_a, **_k):
        return self

    def inc(self, *_a, **_k) -> None:
        pass

    def observe(self, *_a, **_k) -> None:
        pass


def _metric(kind: str, name: str, doc: str, labels=(), **kw):
    if prom is None:
        return _Noop()
    return getattr(prom, kind)(name, doc, list(labels), **kw)


LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)
TASK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800)
INFER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

# API (gunicorn processes)
HTTP_REQUESTS = _metric("Counter", "wardrobe_http_requests", "HTTP requests answered, by route template, method and status",
                        ("route", "method", "status"))
HTTP_LATENCY = _metric("Histogram", "wardrobe_http_request_duration_seconds", "Time to answer a request, by route template and method",
                       ("route", "method"), buckets=LATENCY_BUCKETS)
# Workers (Celery pool processes)
PHOTOS = _metric("Counter", "wardrobe_photos", "Photos finished: outcome done, failed (code: the error code) or duplicate",
                 ("outcome", "code"))
ITEMS = _metric("Counter", "wardrobe_items_found", "Garments written to the catalogue")
TASK_SECONDS = _metric("Histogram", "wardrobe_task_duration_seconds", "Celery task run time, by task and state",
                       ("task", "state"), buckets=TASK_BUCKETS)
TASK_CPU = _metric("Counter", "wardrobe_task_cpu_seconds", "CPU seconds of the pool process while it ran each task (its I/O threads included), by task",
                   ("task",))
INFER_SECONDS = _metric("Histogram", "wardrobe_model_inference_seconds", "The model's time per forward pass (one batch)",
                        buckets=INFER_BUCKETS)
INFER_PHOTOS = _metric("Counter", "wardrobe_model_photos", "Photos through the model")
# a sum, not a histogram: stages are timed per batch, per flush or per garment, so only their totals compare
SEGMENT_STAGE_SECONDS = _metric("Counter", "wardrobe_segment_stage_seconds",
                                "Seconds segment tasks spent by stage: load, infer, post, store (wall clock); "
                                "post_cpu, cutout, features, commit (the post thread's CPU)", ("stage",))
REAPER_RESENDS = _metric("Counter", "wardrobe_reaper_resends", "Jobs whose lost work the stale-job sweep sent again")
# Both
ERRORS = _metric("Counter", "wardrobe_errors",
                 "Storage, database and broker errors met (component api or worker; a worker's count one per task retry)",
                 ("component", "kind"))


def error_kind(exc: BaseException) -> str:
    """storage, database, broker or other: what a failed call was talking to."""
    from core.storage import StorageError

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StorageError):
            return "storage"
        mod = type(exc).__module__.split(".")[0]
        if mod in ("sqlalchemy", "psycopg", "psycopg2", "sqlite3"):
            return "database"
        if mod in ("kombu", "redis", "amqp"):
            return "broker"
        exc = exc.__cause__ or exc.__context__
    return "other"


CONTENT_TYPE = prom.CONTENT_TYPE_LATEST if prom is not None else "text/plain"


def exposition(*collectors) -> bytes:
    """The text format of every process's metrics (multiprocess mode) or this process's, plus
    `collectors` (read now)."""
    from prometheus_client import CollectorRegistry, generate_latest

    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        out = generate_latest(registry)
    else:
        out = generate_latest(prom.REGISTRY)
    if collectors:
        extra = CollectorRegistry()
        for c in collectors:
            extra.register(c)
        out += generate_latest(extra)
    return out
