"""The chaos and soak harnesses keep going through the faults they cause themselves."""
from __future__ import annotations

from dataclasses import replace

from bench.chaos import busy_children
from core.queue import make_celery
from tests.procs import RedisServer


def test_busy_children_after_the_broker_restarts_empty(settings, tmp_path):
    """The soak restarts Redis and later asks which pool process is busy: it used to die there on the
    pooled connection to the Redis that was gone (ConnectionError: closed by server)."""
    redis = RedisServer(tmp_path).start()
    try:
        app = make_celery(replace(settings, broker_url=redis.url))
        assert busy_children(app, {1}) == []  # no worker answers: none busy
        redis.kill()
        assert busy_children(app, {1}) == []  # the broker is down: none busy, no exception
        redis.start()
        assert busy_children(app, {1}) == []
    finally:
        redis.kill()
