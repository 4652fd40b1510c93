"""The one base of the worker's tasks (every task of worker/tasks.py is one: the app's `task_cls`).

- Ids are parsed once, here: a task names its leading arguments that are ids (`ids=("job_id",)`;
  a list of ids is a list of UUIDs), and its body gets UUIDs. Messages carry them as strings.
- Every line the task logs carries its ids and its name as fields (core.logs), and the request id
  the message carries in its headers (core.queue: the API request's, or the task's that sent it).
- Retries are Celery's own: a task with `autoretry_for` is retried with exponential backoff and
  full jitter (2 s, 4 s, 8 s ... at most 60 s, each a random time up to that), up to
  WARDROBE_TASK_MAX_RETRIES times (set by worker.app.configure).
- Deliveries are at least once (acks late; a message whose worker died is delivered again).
- When a task fails for good, `on_failure` calls its `give_up(exc, *ids)`, which closes the rows
  the task was working on (the job, its photos, the export): one place for what three hand-written
  retry loops did each in their own way.
"""
from __future__ import annotations

import logging
import uuid
from typing import Callable

from celery import Task

from core import logs
from core.config import Settings

log = logging.getLogger("wardrobe.tasks")


def as_uuid(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


class WardrobeTask(Task):
    # At-least-once delivery, the bodies make a second run harmless. Set here, not only in the app's
    # configuration: Celery copies those into a task class when the app is finalized, which may come
    # before the worker's configuration (worker.app.configure at celeryd_init).
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True  # progress lives in the tables, not in a result backend
    ids: tuple[str, ...] = ()  # the names of the leading arguments that are ids
    give_up: Callable | None = None  # (exc, *ids) -> None: the rows closed when the task fails for good
    retry_backoff = 2  # seconds before the first retry; doubled for each next one...
    retry_backoff_max = 60  # ...up to this
    retry_jitter = True  # each wait a random time up to that: workers that failed together do not retry together
    max_retries = Settings.task_max_retries  # the default's; worker.app.configure sets the environment's

    def parse(self, args) -> tuple:
        """The message's arguments with its ids as UUIDs (ValueError: not an id)."""
        out = list(args)
        for i, _name in enumerate(self.ids[: len(out)]):
            value = out[i]
            out[i] = [as_uuid(v) for v in value] if isinstance(value, (list, tuple)) else as_uuid(value)
        return tuple(out)

    def log_fields(self, args) -> dict:
        named = {name: value for name, value in zip(self.ids, args) if name in logs.FIELDS}
        request_id = self.request.get("request_id") if self.request is not None else None
        return {"task": self.name.rsplit(".", 1)[-1], "request_id": request_id, **named}

    def __call__(self, *args, **kwargs):
        # not super().__call__: that pushes a request of its own, without the delivery's retries count
        args = self.parse(args)
        logs.clear()
        logs.bind(**self.log_fields(args))
        try:
            return self.run(*args, **kwargs)
        finally:
            logs.clear()

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        if self.give_up is None:
            return
        try:
            ids = self.parse(args)
        except ValueError:
            log.error("%s %s failed with arguments that are not ids: %r", self.name, task_id, args)
            return
        with logs.adding(**self.log_fields(ids)):
            log.error("%s failed for good after %d retries: %s: %s", self.name, self.request.retries,
                      type(exc).__name__, exc)
            try:
                type(self).give_up(exc, *ids)
            except Exception:  # noqa: BLE001 - the database is down too: the stale-job sweep takes the rows up
                log.exception("%s: recording the failure failed", self.name)
