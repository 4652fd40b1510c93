"""The worker's Celery app: `celery -A worker.celery_app worker -Q ingest,segment`.

Tasks are registered on import of worker.tasks. Each forked process disposes
the parent's DB connections and, on segment workers, loads the model once.
"""
from __future__ import annotations

import logging

from celery.signals import worker_process_init

from db.bootup import bootup, runtime
from db.config import Settings
from db.queue import make_celery
from db.session import dispose_after_fork

log = logging.getLogger("wardrobe.worker")

settings = Settings.from_env()
app = make_celery(settings)


@worker_process_init.connect
def _init_process(**_kwargs) -> None:
    bootup(settings)
    dispose_after_fork()
    if settings.preload_model:
        from worker.segmenter import get_segmenter

        get_segmenter(runtime().settings)  # load once, before the first task, and log "model ready"


import worker.tasks  # noqa: E402,F401  (registers the tasks on `app`)
