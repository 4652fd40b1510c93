"""Every error is JSON: {"error": {"code", "message"}} with the right HTTP status."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("wardrobe.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    resp = jsonify({"error": {"code": code, "message": message}})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
}


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(e: ApiError):
        return error_response(e.status, e.code, e.message, e.headers)

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        code = _HTTP_CODES.get(e.code or 500, "http_error")
        message = e.description or e.name
        if e.code == 413:
            message = f"the upload is larger than the limit of {app.config.get('MAX_CONTENT_LENGTH')} bytes"
        return error_response(e.code or 500, code, message)

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
