"""Log lines with fields, as JSON lines for a machine or as text for a person.

Fields come two ways: a call passes `extra=fields(job_id=..., photo_id=...)`, or a scope binds them
for every line logged inside it (`bind(job_id=...)` as a task starts, `bind(request_id=...)` as an API request
does, `adding(user_id=...)` around a block; contextvars, so threads and requests do not mix). A handler writing to a terminal keeps
its text format and gets the fields appended as `key=value`; any other handler (a file, a pipe, a
container's log) writes one JSON object a line: `{"event": ..., "level": ..., "logger": ...,
"timestamp": ..., "job_id": ...}`.

structlog renders the lines (its stdlib `ProcessorFormatter`), so every `logging.getLogger(...)` call
in the code, Celery's and the libraries' included, goes out the same way. The processes call
`configure` at start-up (the API and the CLI) or `style` on Celery's own handlers (the worker).
"""
from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys

import structlog

FIELDS = ("job_id", "photo_id", "user_id", "request_id", "export_id", "task")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def fields(**values) -> dict:
    """The `extra=` of a log call: the fields given, None left out."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown log fields {sorted(unknown)}; known: {FIELDS}")
    return {k: str(v) for k, v in values.items() if v is not None}


def bind(**values) -> None:
    """Fields for every line this thread or task logs from now on (None: left out)."""
    structlog.contextvars.bind_contextvars(**fields(**values))


def unbind(*names: str) -> None:
    structlog.contextvars.unbind_contextvars(*names)


def clear() -> None:
    """No fields bound (a task's or a request's end)."""
    structlog.contextvars.clear_contextvars()


def bound() -> dict:
    """The fields bound now."""
    return structlog.contextvars.get_contextvars()


@contextlib.contextmanager
def adding(**values):
    """These fields bound too inside the block; as they were after it."""
    with structlog.contextvars.bound_contextvars(**fields(**values)):
        yield


def _record_fields(record: logging.LogRecord) -> dict:
    context = bound()
    values = {k: getattr(record, k, None) or context.get(k) for k in FIELDS}  # the record's own win
    return {k: v for k, v in values.items() if v is not None}


class FieldsFilter(logging.Filter):
    """Text handlers: appends a record's fields (its own and the bound ones) to its message, once,
    whichever handlers it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_fields_appended", False):
            parts = [f"{k}={v}" for k, v in _record_fields(record).items()]
            if parts:
                record._plain_message = record.getMessage()  # the JSON handlers' event, without the suffix
                record.msg = f"{record._plain_message} {' '.join(parts)}"
                record.args = None
            record._fields_appended = True
        return True


def _event_and_fields(_logger, _name, event_dict: dict) -> dict:
    """The message as logged (not the text handlers' suffixed one) and the fields."""
    record = event_dict.get("_record")
    if record is not None:
        event_dict["event"] = getattr(record, "_plain_message", event_dict["event"])
        event_dict.update(_record_fields(record))
    return event_dict


def json_formatter() -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _event_and_fields,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=str),
        ],
    )


def _is_terminal(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed, or not a real file
        return False


def style(handler: logging.Handler) -> None:
    """JSON lines unless the handler writes to a terminal; on a terminal, the handler's text format
    with the fields appended."""
    if not _is_terminal(handler):
        handler.setFormatter(json_formatter())
    elif not any(isinstance(f, FieldsFilter) for f in handler.filters):
        handler.addFilter(FieldsFilter())


def _is_json(handler: logging.Handler) -> bool:
    return isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter)


def attach(logger: logging.Logger | None = None) -> None:
    """Give every text handler of `logger` (default: the root logger) the fields filter, once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not _is_json(handler) and not any(isinstance(f, FieldsFilter) for f in handler.filters):
            handler.addFilter(FieldsFilter())


def style_all(logger: logging.Logger | None = None) -> None:
    for handler in (logger or logging.getLogger()).handlers:
        style(handler)


def configure(level: str | int = "INFO", logfile: str | None = None) -> None:
    """The process's logging, where nothing configured it before (a test runner, a host app):
    one handler on stderr, or on `logfile`, styled by `style`."""
    root = logging.getLogger()
    if root.handlers:
        attach(root)  # someone else's handlers (a test runner's): fields appended, their format kept
        return
    handler = logging.handlers.WatchedFileHandler(logfile) if logfile else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    style(handler)
    root.addHandler(handler)
    root.setLevel(level)
