"""A worker outlives a Redis restart: closing a channel whose connection is gone must not raise.

Found by `make chaos`: at a Redis restart both workers logged `Unrecoverable error:
AttributeError("'NoneType' object has no attribute 'hostname'")` and exited. Celery closes the lost
connection; the channel's close hands its unacknowledged messages back to Redis through a new client
built from the transport's `client`, which the close had already cleared. Here that close is made
on a real Redis, with a message delivered and not acknowledged, exactly so."""
from __future__ import annotations

import subprocess

import pytest
from kombu import Connection, Consumer, Producer, Queue

from tests.conftest import free_port, wait_port
from tests.procs import have

pytestmark = pytest.mark.skipif(not have("redis-server"), reason="redis-server is not installed")


def test_closing_a_channel_after_the_connection_is_torn_down_keeps_the_worker(tmp_path):
    from core.config import Settings
    from core.queue import make_celery

    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                              "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        wait_port(port)
        make_celery(Settings(broker_url=f"redis://127.0.0.1:{port}/0"))  # as every worker and the API do
        conn = Connection(f"redis://127.0.0.1:{port}/0", transport_options={"visibility_timeout": 3600})
        queue = Queue("t-broker-loss")
        Producer(conn.default_channel).publish({"job": 1}, routing_key=queue.name, declare=[queue], serializer="json")
        got = []
        channel = conn.channel()
        Consumer(channel, [queue], callbacks=[lambda body, m: got.append(m)], accept=["json"]).consume()
        conn.drain_events(timeout=5)
        assert len(got) == 1 and len(channel.qos._delivered) == 1  # held: delivered, not acknowledged
        unacked_key = channel.unacked_key
        conn.transport.client = None  # the state Celery's close of a lost connection leaves the transport in
        channel.close()  # was: AttributeError 'NoneType' object has no attribute 'hostname' -> the worker exited
        assert channel.closed and not channel.qos._delivered
        import redis as redis_py

        # the message was not lost: it waits in Redis' unacked hash for the visibility timeout (or the reaper)
        assert redis_py.Redis(port=port).hlen(unacked_key) == 1
    finally:
        redis.kill()
        redis.wait(10)

