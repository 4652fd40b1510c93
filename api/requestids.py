"""A request id per request: the client's `X-Request-ID` when it is a plain token (a proxy's or
a client's own, so its logs and ours can be joined), else one made here. It is returned as
`X-Request-ID` on every response, error responses included, and is the `request_id` field of
every line the request logs (core.logs). A header with anything else in it (spaces, quotes,
control characters, over 128 characters) is not echoed: it could forge log lines or headers."""
from __future__ import annotations

import re
import uuid

from flask import Flask, g, request

from core import logs

HEADER = "X-Request-ID"
VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=/-]{0,127}")


def request_id() -> str:
    return g.get("request_id") or ""


def _take() -> None:
    given = request.headers.get(HEADER, "")
    g.request_id = given if VALID.fullmatch(given) else uuid.uuid4().hex
    logs.clear()  # a thread's previous request's fields
    logs.bind(request_id=g.request_id)


def _return(response):
    response.headers[HEADER] = request_id() or uuid.uuid4().hex
    return response


def _forget(_exc=None) -> None:
    logs.clear()


def install(app: Flask) -> None:
    """First of the app's hooks: a request refused by a later one still carries its id."""
    app.before_request_funcs.setdefault(None, []).insert(0, _take)
    app.after_request(_return)
    app.teardown_request(_forget)
