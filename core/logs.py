"""Log lines with fields: a call passes `extra=fields(job_id=..., photo_id=..., task=...)`, and every
handler `attach` was given appends them to the line as `key=value` (`... job_id=3f2c... task=ingest`),
so a job's lines can be found whatever the message says. The processes attach it at start-up:
db.bootup for the API and the CLI, Celery's logging signals for the worker (worker/app.py)."""
from __future__ import annotations

import logging

FIELDS = ("job_id", "photo_id", "task")


def fields(**values) -> dict:
    """The `extra=` of a log call: the fields given, None left out."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log fields {sorted(unknown)}; known: {FIELDS}")
    return {k: str(v) for k, v in values.items() if v is not None}


class FieldsFilter(logging.Filter):
    """Appends a record's fields to its message, once, whichever handlers it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_fields_appended", False):
            parts = [f"{k}={getattr(record, k)}" for k in FIELDS if getattr(record, k, None) is not None]
            if parts:
                record.msg = f"{record.getMessage()} {' '.join(parts)}"
                record.args = None
            record._fields_appended = True
        return True


def attach(logger: logging.Logger | None = None) -> None:
    """Give every handler of `logger` (default: the root logger) the fields filter, once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, FieldsFilter) for f in handler.filters):
            handler.addFilter(FieldsFilter())
