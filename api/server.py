"""The gunicorn worker `wardrobe serve` runs: gunicorn's threaded worker, with the errors gunicorn
answers itself (before Flask sees the request: a request line over 4094 bytes is 414, too many or
too large headers 431, a malformed request 400, a crash outside the app 500) in the API's JSON
format, `{"error": {"code", "message"}}`, instead of gunicorn's HTML page.

Imported only by gunicorn (`--worker-class api.server.JsonErrorWorker`)."""
from __future__ import annotations

import gc
import json

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from api.errors import HTTP_CODES, MAX_MESSAGE

_MESSAGES = {
    414: "the request line (method, path and query) is longer than 4094 bytes",
    431: "the request's headers are too many or too large",
    500: "something went wrong on our side",
}


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    message = _MESSAGES.get(status_int) or mesg or reason
    if len(message) > MAX_MESSAGE:  # gunicorn's message may quote the request line
        message = message[: MAX_MESSAGE - 1] + "…"
    body = json.dumps({"error": {"code": HTTP_CODES.get(status_int, "bad_request"), "message": message}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin1")
    util.write_nonblock(sock, head + body)


util.write_error = write_json_error  # gunicorn.workers.base calls util.write_error for these


def freeze_loaded() -> None:
    """Once a worker process has loaded the app: what it loaded lives as long as the process, so it
    goes out of the cyclic collector's sight (gc.freeze). A full collection under load then walks
    only what requests made, instead of pausing every request in flight for tens of milliseconds
    (the catalogue's p99 at 200 requests/s, docs/api-speed.md)."""
    gc.freeze()


class JsonErrorWorker(ThreadWorker):
    """gthread, with gunicorn's own error answers in JSON (see the module)."""

    def load_wsgi(self):
        super().load_wsgi()
        freeze_loaded()
