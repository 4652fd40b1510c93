"""Every error is JSON: {"error": {"code", "message"}} with the right HTTP status."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from services.errors import Refused

log = logging.getLogger("wardrobe.api")


# One class: what a service refuses (services.errors) the API answers as it is, and the routes'
# own refusals are the same thing.
ApiError = Refused


MAX_MESSAGE = 300  # characters: a message may quote what the client sent, never all of it


def short(value, limit: int = 60) -> str:
    """A client's value for an error message: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_object(example: str, allowed: set[str], nonempty: bool = False) -> dict:
    """The request's JSON body as a dict with no fields beyond `allowed` (and, with `nonempty`, at
    least one); anything else is a 400 `invalid_body` that shows `example` (a list, a string or a
    number is the client's mistake too)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or (nonempty and not body):
        raise ApiError(400, "invalid_body", f"send a JSON object: {example}")
    unknown = set(body) - allowed
    if unknown:
        raise ApiError(400, "invalid_body", f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
    return body


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    resp = jsonify({"error": {"code": code, "message": message}})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    403: "forbidden",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    422: "unprocessable",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(e: ApiError):
        return error_response(e.status, e.code, e.message, e.headers)

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        from flask import request

        code = HTTP_CODES.get(e.code or 500, "http_error")
        message = e.description or e.name
        if e.code == 413:
            limit = request.max_content_length
            message = f"the request body is larger than this route's limit of {limit} bytes"
        # the exception's own headers (405: Allow, 401: WWW-Authenticate ...), not its HTML content type
        headers = {k: v for k, v in e.get_headers() if k.lower() not in ("content-type", "content-length")}
        return error_response(e.code or 500, code, message, headers)

    from core.storage import ObjectNotFound, StorageError

    @app.errorhandler(StorageError)
    def _storage_down(e: StorageError):
        if isinstance(e, ObjectNotFound):
            return error_response(404, "not_found", "the file is gone from storage")
        log.error("storage unavailable: %s", e)
        return error_response(503, "storage_unavailable", "storage is unavailable; try again shortly", {"Retry-After": "5"})

    from sqlalchemy.exc import DBAPIError

    @app.errorhandler(DBAPIError)
    def _db_down(e: DBAPIError):
        if e.connection_invalidated or "connect" in str(e.orig).lower():
            log.error("database unavailable: %s", e.orig)
            return error_response(503, "database_unavailable", "the database is unavailable; try again shortly",
                                  {"Retry-After": "5"})
        log.exception("database error")
        return error_response(500, "internal_error", "something went wrong on our side")

    @app.errorhandler(Exception)
    def _unhandled(e: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "something went wrong on our side")
