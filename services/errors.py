"""What a service refuses, as the client hears it: the HTTP status, the error body's code and message,
and headers (Retry-After, WWW-Authenticate). The API answers one as it is (api.errors.ApiError is this
class), so a refusal decided below the routes (a quota, a zip, an idempotency key) reads the same."""
from __future__ import annotations


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def not_found(what: str) -> Refused:
    return Refused(404, "not_found", f"no such {what}")


def unavailable(code: str, message: str, retry_after: int | None = 5) -> Refused:
    """A 503: the store or the queue is down; `retry_after` seconds (None: no header)."""
    return Refused(503, code, message, {"Retry-After": str(retry_after)} if retry_after is not None else None)
