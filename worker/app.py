"""The worker's Celery app and its process start-up; worker/celery_app.py is the entry point
(`celery -A worker.celery_app worker -Q ingest,segment,export,webhooks`), which registers the tasks
(worker.tasks) and the metrics' signal handlers (worker.metrics) on it.

Importing this module reads no settings: the app is configured as the worker starts
(`celeryd_init`, in the main process before its pool forks; `configure` again in each pool
process, a no-op after a fork) from the environment's settings, or by whoever calls `configure`
first with settings of their own (`wardrobe worker`, the tests). Every task's base is
worker.taskbase.WardrobeTask.

Each forked process disposes
the parent's DB connections and, with WARDROBE_PRELOAD_MODEL on, starts loading the
model at once on a thread of its own: the process reports up to Celery's pool straight
away (the pool kills a new process that has not within `worker_proc_alive_timeout`,
4 s, and a model can take longer to load, above all on a busy machine: a replacement
for a killed process was killed again and again), and the first segment task waits for
the load to finish (`get_segmenter` holds its lock while loading).
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, celeryd_init, worker_process_init

from segmentation.runtime import ultralytics_offline

ultralytics_offline()  # before anything imports Ultralytics: no installs, no network, in every worker process

from services.bootup import bootup, runtime  # noqa: E402
from core import logs  # noqa: E402
from core.config import Settings  # noqa: E402
from core.queue import configure_celery  # noqa: E402
from db.session import dispose_after_fork  # noqa: E402
from worker.groupterm import take_term_from_the_parent_only  # noqa: E402
from worker.taskbase import WardrobeTask  # noqa: E402

log = logging.getLogger("wardrobe.worker")

app = Celery("wardrobe", task_cls=WardrobeTask)
_configured: list[Settings] = []


def configure(settings: Settings | None = None) -> Settings:
    """Configure the app once per process (the environment's settings unless given); its settings."""
    if not _configured:
        settings = settings or Settings.from_env()
        configure_celery(app, settings)
        WardrobeTask.max_retries = settings.task_max_retries
        _configured.append(settings)
    return _configured[0]


def settings() -> Settings:
    return configure()


@celeryd_init.connect
def _configure_worker(**_kwargs) -> None:
    configure()


_loaded_threads: list[int] = []  # torch's thread count as the load left it


def _load_model() -> None:
    from segmentation.lean import ModelError
    from segmentation.serving import get_segmenter

    try:
        get_segmenter(runtime().settings)  # load once, before the first task if it can, and log "model ready"
    except ModelError as e:
        # the model's files are wrong, which no retry mends: one line, and the whole worker stops
        log.error("cannot serve the model: %s; stopping the worker", e)
        os.kill(os.getppid(), signal.SIGTERM)
        return
    except Exception:  # noqa: BLE001 - the first segment task tries again, and retries, then fails its photos
        log.exception("loading the model failed")
        return
    torch = sys.modules.get("torch")
    if torch is not None:
        _loaded_threads.append(torch.get_num_threads())


def task_segmenter(s: Settings):
    """The process's segmenter for a task: waits for a load under way. The load may have set
    torch's thread count on the loading thread, and under OpenMP that count is per thread: the
    task's thread takes the same one."""
    from segmentation.serving import get_segmenter

    seg = get_segmenter(s)
    torch = sys.modules.get("torch")
    if _loaded_threads and torch is not None and torch.get_num_threads() != _loaded_threads[-1]:
        torch.set_num_threads(_loaded_threads[-1])
    return seg


@worker_process_init.connect
def _init_process(**_kwargs) -> None:
    take_term_from_the_parent_only()  # before any thread starts: they inherit its signal mask
    s = configure()
    bootup(s)
    dispose_after_fork()
    if s.preload_model:
        # not here, on the process's main thread: Celery waits only 4 s for the process to report up
        threading.Thread(target=_load_model, name="wardrobe-model-load", daemon=True).start()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_fields(logger=None, **_kwargs) -> None:
    logs.style_all(logger)  # Celery's own handlers: JSON lines (text on a terminal), with the fields
