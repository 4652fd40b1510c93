"""The worker's Celery entry point: `celery -A worker.celery_app worker -Q ingest,segment,export,webhooks`.

The app itself is built in worker/app.py; importing this module registers the tasks on it
(worker.tasks), the task metrics' signal handlers and the main process's /metrics port
(worker.metrics), and the handler that gives freed memory back after each task (worker.memory).
Every worker process imports this first.
"""
from __future__ import annotations

from worker.app import app, configure, task_segmenter  # noqa: F401

import worker.tasks  # noqa: E402,F401  (registers the tasks on `app`)
import worker.metrics  # noqa: E402,F401  (task times and retries; the main process's /metrics port)
import worker.memory  # noqa: E402,F401  (freed memory back to the system after each task)
