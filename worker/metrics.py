"""The worker's metrics: task run times and retries from Celery's signals (in each pool process),
and the main process's HTTP endpoint on WARDROBE_WORKER_METRICS_PORT (0: none), which adds up
every pool process's values (prometheus-client's multiprocess mode, see core/metrics.py).

The photo, item and model counters are counted where the work is done (worker/ingest.py,
worker/segment.py, db/photos.py, db/items.py).
"""
from __future__ import annotations

import logging
import os
import time

from celery.signals import task_postrun, task_prerun, task_retry, worker_ready

from core import metrics as m
from core.queue import REAP_TASK

log = logging.getLogger("wardrobe.worker")

_started: dict[str, tuple[float, float]] = {}  # task id -> when it started, and the process's CPU time then


@task_prerun.connect
def _prerun(task_id=None, **_kw) -> None:
    if task_id:
        _started[task_id] = (time.perf_counter(), time.process_time())


@task_postrun.connect
def _postrun(task_id=None, task=None, retval=None, state=None, **_kw) -> None:
    start = _started.pop(task_id, None)
    name = getattr(task, "name", "?")
    if start is not None:
        m.TASK_SECONDS.labels(name, state or "?").observe(time.perf_counter() - start[0])
        # a prefork pool process runs one task at a time: its CPU meanwhile is the task's
        m.TASK_CPU.labels(name).inc(max(0.0, time.process_time() - start[1]))
    if name == REAP_TASK and isinstance(retval, int) and retval > 0:
        m.REAPER_RESENDS.inc(retval)


@task_retry.connect
def _retry(reason=None, **_kw) -> None:
    exc = getattr(reason, "exc", None) or reason  # celery.exceptions.Retry carries the cause in .exc
    if isinstance(exc, BaseException):
        m.ERRORS.labels("worker", m.error_kind(exc)).inc()


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Answer GET /metrics on `port` from this (the main) process, on a thread of its own."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = m.exposition()
            self.send_response(200)
            self.send_header("Content-Type", m.CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_a):  # scrapes every few seconds: not worth a log line each
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="wardrobe-metrics", daemon=True).start()
    log.info("metrics on :%d/metrics (%s)", port, os.environ.get(m.MULTIPROC_ENV) or "this process only")


@worker_ready.connect
def _serve_metrics(**_kw) -> None:
    from worker.app import settings as configured

    settings = configured()
    if settings.worker_metrics_port and m.prom is not None:
        try:
            serve(settings.worker_metrics_port)
        except OSError as e:
            log.error("metrics port %d: %s", settings.worker_metrics_port, e)
