"""The gunicorn worker `wardrobe serve` runs by default: gunicorn's gevent worker, so a connection
is a greenlet, not a thread. A client that sends half a request and waits, a slow upload, an open
live-progress stream each hold a few kilobytes of memory, not one of a handful of threads: the short
routes keep answering beside them (docs/notes/rel-b.md has the measurement against the threaded
worker). Gunicorn's own errors are JSON, as with the threaded worker (api/server.py).

gevent patches the standard library when the worker process starts, before the app is imported:
sockets (redis-py, kombu's publishing, boto3's HTTP), `time.sleep` (the streams' polling) and
threading's locks. psycopg 3 is not patched by it; psycopg chooses a wait function that yields to
gevent when it finds `select` patched at its import (psycopg.waiting), which is why nothing before
the fork may import psycopg (`wardrobe serve` exec's gunicorn; the app is not preloaded) and why
`waits_cooperatively()` is checked by the tests.

Imported only by gunicorn (`--worker-class api.server_gevent.JsonGeventWorker`)."""
from __future__ import annotations

from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

import api.server  # gunicorn's own errors in JSON, and freeze_loaded


class JsonGeventWorker(GeventWorker):
    """gevent, with gunicorn's own error answers in JSON and an idle timeout per connection: one that
    sends or takes nothing (half a request, a stalled chunk) for WARDROBE_CLIENT_IDLE_TIMEOUT is closed.
    A stream sends its keep-alive comments more often; a tus client resumes a cut chunk."""

    idle = 0.0

    def load_wsgi(self):  # in the worker process, after gevent patched it
        from core.config import Settings

        self.idle = Settings.from_env().client_idle_timeout
        super().load_wsgi()
        api.server.freeze_loaded()
        if not waits_cooperatively():
            self.log.error("psycopg was imported before gevent patched the process: a database wait blocks "
                           "every connection of this worker")

    def handle_error(self, req, client, addr, exc):
        super().handle_error(req, client, addr, exc)
        # the rest of a refused request (a 9 KB request line) may still be unread: closing now would
        # send a reset that drops the answer at the client. Half-close and drain first, as gthread does.
        util.close_graceful(client)

    def handle(self, listener, client, addr):
        client.setblocking(1)
        if self.idle > 0:
            client.settimeout(self.idle)
        # not GeventWorker.handle: it would make the socket blocking (no timeout) again
        super(GeventWorker, self).handle(listener, client, addr)


def waits_cooperatively() -> bool:
    """Whether psycopg, as imported in this process, waits for the database by yielding to gevent."""
    from psycopg import waiting

    return waiting.wait is not getattr(waiting, "wait_c", None)
