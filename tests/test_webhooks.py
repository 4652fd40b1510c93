"""Webhooks on the real services: endpoints over the API, the outbox written with the job's end,
deliveries to a real HTTP receiver on loopback, verified with the standardwebhooks package."""
from __future__ import annotations

import base64
import io
import json
import threading
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import REDIS_URL, auth, example_photos, free_port, zip_bytes
from tests.fakes import FAKE_SEGMENTER
from tests.helpers import run_job


class Receiver:
    """An HTTP server on a free loopback port that records every request and answers the status
    codes queued in `answers` (then 200)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                code = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(code)
                if code in (301, 302):
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/wardrobe"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture()
def wh_settings(rt):
    """The session's settings with private addresses allowed (the receiver is on loopback) and
    retries due at once, so a test needs no waiting."""
    return replace(rt.settings, webhook_allow_private=True, webhook_retry_schedule="0,0", webhook_timeout=3.0)


@pytest.fixture()
def wh_client(app, rt, wh_settings):
    app.extensions["wardrobe"] = type(rt)(settings=wh_settings, storage=rt.storage)
    return app.test_client()


@pytest.fixture()
def queue():
    """The `webhooks` queue in Redis, emptied first: ids of the deliveries sent to it."""
    r = redis.Redis.from_url(REDIS_URL)
    r.delete("webhooks")

    def ids() -> list[str]:
        out = []
        for raw in r.lrange("webhooks", 0, -1):
            msg = json.loads(raw)
            assert msg["headers"]["task"] == "wardrobe.deliver_webhook"
            out.append(json.loads(base64.b64decode(msg["body"]))[0][0])
        return out

    yield ids
    r.delete("webhooks")


def register(client, token, url, **body) -> dict:
    resp = client.post("/v1/webhooks", json={"url": url, **body}, headers=auth(token))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


def upload(client, token, n: int = 2) -> str:
    resp = client.post("/v1/uploads", data={"file": (io.BytesIO(zip_bytes(example_photos(n))), "photos.zip")},
                       headers=auth(token), content_type="multipart/form-data")
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return resp.get_json()["id"]


def deliveries(client, token, endpoint_id) -> list[dict]:
    resp = client.get(f"/v1/webhooks/{endpoint_id}/deliveries", headers=auth(token))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["deliveries"]


def verified(secret: str, request: dict) -> dict:
    return Webhook(secret).verify(request["body"], request["headers"])


def test_a_finished_job_sends_one_signed_event(wh_client, make_user, rt, wh_settings, receiver, queue):
    from worker.webhooks import deliver

    _, token = make_user()
    ep = register(wh_client, token, receiver.url)
    job_id = upload(wh_client, token, 2)
    assert queue() == []  # an upload is no event
    run_job(rt, job_id)

    # the job's end wrote one outbox row and, after the commit, sent its id to the webhooks queue
    (delivery_id,) = queue()
    assert deliver(delivery_id, wh_settings) == "delivered"
    assert deliver(delivery_id, wh_settings) is None  # a second message for it sends nothing

    (req,) = receiver.requests
    assert req["path"] == "/hooks/wardrobe" and req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["webhook-id"] == delivery_id
    event = verified(ep["secret"], req)
    job = wh_client.get(f"/v1/jobs/{job_id}", headers=auth(token)).get_json()
    assert event["type"] == "job.succeeded" and event["timestamp"].endswith("Z")
    data = event["data"]
    assert data["id"] == job_id and data["status"] == job["status"] == "succeeded"
    assert data["progress"] == {k: job["progress"][k] for k in data["progress"]}
    assert data["progress"]["photos_done"] == 2 and data["progress"]["items_found"] == 4
    assert data["finished_at"] == job["finished_at"] and data["links"]["self"] == f"/v1/jobs/{job_id}"
    # a wrong secret or a changed body does not verify
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(req["body"], req["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook(ep["secret"]).verify(req["body"].replace(b"succeeded", b"failed"), req["headers"])

    (d,) = deliveries(wh_client, token, ep["id"])
    assert d["id"] == delivery_id and d["type"] == "job.succeeded" and d["job_id"] == job_id
    assert d["status"] == "delivered" and d["next_attempt_at"] is None and d["payload"] == event
    (attempt,) = d["attempts"]
    assert attempt["attempt"] == 1 and attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["duration_ms"] >= 0 and attempt["at"]


def test_a_job_s_last_photos_write_its_end_event_and_no_progress_it_would_drop(wh_client, make_user, rt, receiver,
                                                                               queue):
    """The commit of a job's last photos is one transition with one webhook write: the end event.
    Before, it wrote a progress event due now, deleted it again for the end event in the same
    transaction, and sent a task message naming the deleted row."""
    from sqlalchemy import select

    from db.models import WebhookDelivery
    from db.session import session_scope

    _, token = make_user()
    register(wh_client, token, receiver.url, events=["job.progress", "job.succeeded"])
    job_id = upload(wh_client, token, 1)
    run_job(rt, job_id)
    with session_scope() as s:
        rows = {str(i): t for i, t in s.execute(select(WebhookDelivery.id, WebhookDelivery.event_type)
                                                .where(WebhookDelivery.job_id == uuid.UUID(job_id)))}
    assert list(rows.values()) == ["job.succeeded"]
    assert queue() == list(rows)  # every message names a row: none for a progress event dropped unsent


def test_a_worker_runs_the_job_and_delivers_its_event(wh_client, make_user, settings, receiver, tmp_path):
    """The deployed shape: a `wardrobe worker` process (fake segmenter) ends the job, queues the event
    after the commit and, on its `webhooks` queue, sends it to the receiver."""
    from core.queue import enqueue_ingest, make_celery
    from tests.procs import Proc, RedisServer, have, service_env, wait_for

    if not have("redis-server"):
        pytest.skip("redis-server is not installed")
    _, token = make_user()
    ep = register(wh_client, token, receiver.url)
    broker = RedisServer(tmp_path).start()  # the worker's own: nothing else's messages in it
    env = service_env(settings, broker.url, WARDROBE_SEGMENTER=FAKE_SEGMENTER, WARDROBE_WEBHOOK_ALLOW_PRIVATE="true")
    worker = Proc(["worker", "--queues", "ingest,segment,webhooks", "--concurrency", "1"], env,
                  tmp_path / "worker.log").start()
    try:
        job_id = upload(wh_client, token, 2)
        enqueue_ingest(make_celery(replace(settings, broker_url=broker.url)), job_id)
        wait_for(lambda: receiver.requests, 90, "the webhook", on_fail=worker.tail)
        wait_for(lambda: deliveries(wh_client, token, ep["id"])[0]["status"] == "delivered", 30, "the attempt recorded",
                 on_fail=worker.tail)
    finally:
        worker.kill()
        broker.kill()
    (req,) = receiver.requests
    event = verified(ep["secret"], req)
    assert event["type"] == "job.succeeded" and event["data"]["id"] == job_id
    assert event["data"]["progress"]["photos_done"] == 2
    assert req["headers"]["webhook-id"] == deliveries(wh_client, token, ep["id"])[0]["id"]


def test_a_real_worker_retries_a_500_until_the_200(wh_client, make_user, settings, receiver, tmp_path):
    """Retries through real processes (issue 36): the endpoint answers 500, then 200. A `wardrobe worker
    --beat` runs the job, sends the event, records the 500, and its beat's sweep sends the retry when due;
    the same webhook-id arrives twice, the delivery ends delivered with both attempts listed."""
    from core.queue import enqueue_ingest, make_celery
    from tests.procs import Proc, RedisServer, have, service_env, wait_for

    if not have("redis-server"):
        pytest.skip("redis-server is not installed")
    _, token = make_user()
    ep = register(wh_client, token, receiver.url)
    receiver.answers = [500]
    broker = RedisServer(tmp_path).start()
    env = service_env(settings, broker.url, WARDROBE_SEGMENTER=FAKE_SEGMENTER, WARDROBE_WEBHOOK_ALLOW_PRIVATE="true",
                      WARDROBE_WEBHOOK_RETRY_SCHEDULE="1", WARDROBE_WEBHOOK_SWEEP_INTERVAL=1)
    worker = Proc(["worker", "--queues", "ingest,segment,webhooks", "--concurrency", "1", "--beat"], env,
                  tmp_path / "worker.log").start()
    try:
        job_id = upload(wh_client, token, 2)
        enqueue_ingest(make_celery(replace(settings, broker_url=broker.url)), job_id)
        wait_for(lambda: len(receiver.requests) >= 2, 120, "the event and its retry", on_fail=worker.tail)
        wait_for(lambda: deliveries(wh_client, token, ep["id"])[0]["status"] == "delivered", 30, "the retry recorded",
                 on_fail=worker.tail)
    finally:
        worker.kill()
        broker.kill()
    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert verified(ep["secret"], second)["type"] == "job.succeeded" and verified(ep["secret"], second)["data"]["id"] == job_id
    (d,) = deliveries(wh_client, token, ep["id"])
    assert [(a["attempt"], a["status_code"]) for a in d["attempts"]] == [(1, 500), (2, 200)]


def test_a_500_is_retried_with_the_same_webhook_id(wh_client, make_user, wh_settings, receiver, queue):
    from worker.webhooks import deliver, sweep

    _, token = make_user()
    ep = register(wh_client, token, receiver.url)
    job_id = upload(wh_client, token, 1)
    assert wh_client.delete(f"/v1/jobs/{job_id}", headers=auth(token)).status_code == 200  # cancelled: an event
    (delivery_id,) = queue()

    receiver.answers = [500]
    assert deliver(delivery_id, wh_settings) == "pending"  # retried, by the sweep: no message is sent now
    sent: list = []
    assert sweep(wh_settings, send=sent.append) == 1 and [str(i) for i in sent] == [delivery_id]
    assert sweep(wh_settings, send=sent.append) == 0  # queued already: not again before WARDROBE_WEBHOOK_REQUEUE_AFTER
    assert deliver(str(sent[0]), wh_settings) == "delivered"

    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == delivery_id
    assert verified(ep["secret"], first) == verified(ep["secret"], second)  # the same event, each attempt signed
    assert verified(ep["secret"], second)["type"] == "job.cancelled"
    (d,) = deliveries(wh_client, token, ep["id"])
    assert d["status"] == "delivered"
    assert [(a["attempt"], a["status_code"], a["error"]) for a in d["attempts"]] == [(1, 500, "HTTP 500"), (2, 200, None)]


@pytest.mark.parametrize("code, status", [(400, "failed"), (404, "failed"), (302, "failed"), (429, "pending"),
                                          (503, "pending")])
def test_which_answers_are_retried(wh_client, make_user, wh_settings, receiver, queue, code, status):
    from worker.webhooks import deliver

    _, token = make_user()
    register(wh_client, token, receiver.url)
    wh_client.delete(f"/v1/jobs/{upload(wh_client, token, 1)}", headers=auth(token))
    receiver.answers = [code]
    assert deliver(queue()[0], wh_settings) == status
    assert len(receiver.requests) == 1  # a redirect is not followed


def test_no_answer_is_retried_until_the_schedule_is_used_up(wh_client, make_user, wh_settings, queue):
    from worker.webhooks import deliver

    _, token = make_user()
    ep = register(wh_client, token, f"http://127.0.0.1:{free_port()}/nothing-listens")
    wh_client.delete(f"/v1/jobs/{upload(wh_client, token, 1)}", headers=auth(token))
    (delivery_id,) = queue()
    # the schedule has two retries: three attempts in all, then it has failed
    assert [deliver(delivery_id, wh_settings) for _ in range(4)] == ["pending", "pending", "failed", None]
    (d,) = deliveries(wh_client, token, ep["id"])
    assert d["status"] == "failed" and [a["attempt"] for a in d["attempts"]] == [1, 2, 3]
    assert all(a["status_code"] is None and "ConnectionError" in a["error"] for a in d["attempts"])


def gone_endpoint(wh_client, make_user, wh_settings, receiver, queue) -> tuple[str, dict]:
    """A user's endpoint that answered its first event with 410 Gone: (the user's token, the endpoint)."""
    from worker.webhooks import deliver

    _, token = make_user()
    ep = register(wh_client, token, receiver.url)
    wh_client.delete(f"/v1/jobs/{upload(wh_client, token, 1)}", headers=auth(token))
    receiver.answers = [410]
    assert deliver(queue()[0], wh_settings) == "failed"
    return token, ep


def test_410_gone_disables_the_endpoint(wh_client, make_user, wh_settings, receiver, queue):
    token, ep = gone_endpoint(wh_client, make_user, wh_settings, receiver, queue)
    got = wh_client.get(f"/v1/webhooks/{ep['id']}", headers=auth(token)).get_json()
    assert got["enabled"] is False and "410" in got["disabled_reason"] and got["disabled_at"]
    # the next job's end writes nothing for it
    wh_client.delete(f"/v1/jobs/{upload(wh_client, token, 1)}", headers=auth(token))
    assert len(deliveries(wh_client, token, ep["id"])) == 1 and len(queue()) == 1


def test_an_endpoint_turned_back_on_gets_the_next_events(wh_client, make_user, wh_settings, receiver, queue):
    from worker.webhooks import deliver

    token, ep = gone_endpoint(wh_client, make_user, wh_settings, receiver, queue)
    path = f"/v1/webhooks/{ep['id']}"
    on = wh_client.patch(path, json={"enabled": True}, headers=auth(token))
    assert on.status_code == 200
    body = on.get_json()
    assert (body["enabled"], body["disabled_reason"], body["disabled_at"]) == (True, None, None)
    assert "secret" not in body and wh_client.get(path, headers=auth(token)).get_json() == body
    receiver.answers = [200]
    before = set(queue())
    wh_client.delete(f"/v1/jobs/{upload(wh_client, token, 1)}", headers=auth(token))
    (new,) = set(queue()) - before
    assert deliver(new, wh_settings) == "delivered"
    assert [d["status"] for d in deliveries(wh_client, token, ep["id"])] == ["delivered", "failed"]
    # the owner turns it off: the next job's end writes nothing for it, and it says why
    off = wh_client.patch(path, json={"enabled": False}, headers=auth(token)).get_json()
    assert off["enabled"] is False and off["disabled_reason"] == "turned off by its owner" and off["disabled_at"]
    wh_client.delete(f"/v1/jobs/{upload(wh_client, token, 1)}", headers=auth(token))
    assert len(deliveries(wh_client, token, ep["id"])) == 2


def test_an_endpoints_url_and_events_can_change(wh_client, make_user, receiver):
    _, alice = make_user()
    _, bob = make_user()
    ep = register(wh_client, alice, receiver.url)
    path = f"/v1/webhooks/{ep['id']}"
    changed = wh_client.patch(path, json={"url": receiver.url + "/v2", "events": ["job.progress", "job.failed"]},
                              headers=auth(alice))
    assert changed.status_code == 200
    assert (changed.get_json()["url"], changed.get_json()["events"]) == (receiver.url + "/v2", ["job.failed", "job.progress"])
    for body, code in (({}, "invalid_body"), ([], "invalid_body"), ({"secret": "mine"}, "invalid_body"),
                       ({"enabled": "yes"}, "invalid_body"), ({"url": "ftp://example.com/"}, "invalid_url"),
                       ({"url": None}, "invalid_url"), ({"events": []}, "invalid_events"),
                       ({"events": None}, "invalid_events"), ({"events": ["job.nope"], "enabled": False}, "invalid_events")):
        resp = wh_client.patch(path, json=body, headers=auth(alice))
        assert (resp.status_code, resp.get_json()["error"]["code"]) == (400, code), body
    after = wh_client.get(path, headers=auth(alice)).get_json()  # a refused change changed nothing
    assert (after["url"], after["events"], after["enabled"]) == (receiver.url + "/v2", ["job.failed", "job.progress"], True)
    resp = wh_client.patch(path, json={"enabled": False}, headers=auth(bob))
    assert resp.status_code == 404 and wh_client.get(path, headers=auth(alice)).get_json()["enabled"] is True


def test_a_rolled_back_end_sends_nothing(wh_client, make_user, queue):
    from db import jobstate
    from db.models import WebhookDelivery
    from db.session import new_session

    _, token = make_user()
    ep = register(wh_client, token, "http://127.0.0.1:9/")
    job_id = uuid.UUID(upload(wh_client, token, 1))
    s = new_session()
    try:
        assert jobstate.cancel(s, job_id)
        assert s.query(WebhookDelivery).count() == 1  # in the transaction ...
        s.rollback()
        assert s.query(WebhookDelivery).count() == 0  # ... and gone with it
    finally:
        s.close()
    assert queue() == [] and deliveries(wh_client, token, ep["id"]) == []


def test_a_lost_message_is_sent_again_by_the_sweep(wh_client, make_user, wh_settings, receiver, queue):
    from datetime import timedelta

    from sqlalchemy import update

    from db.models import WebhookDelivery, utcnow
    from db.session import session_scope
    from worker.webhooks import deliver, sweep

    _, token = make_user()
    register(wh_client, token, receiver.url)
    wh_client.delete(f"/v1/jobs/{upload(wh_client, token, 1)}", headers=auth(token))
    (delivery_id,) = queue()
    sent: list = []
    assert sweep(wh_settings, send=sent.append) == 0  # its message is on its way
    with session_scope() as s:  # ... sent long ago, and lost (a Redis restart)
        s.execute(update(WebhookDelivery).values(queued_at=utcnow() - timedelta(seconds=wh_settings.webhook_requeue_after + 1)))
    assert sweep(wh_settings, send=sent.append) == 1 and str(sent[0]) == delivery_id
    assert deliver(sent[0], wh_settings) == "delivered" and len(receiver.requests) == 1


def test_progress_is_opt_in_coalesced_and_rate_limited(wh_client, make_user, rt, wh_settings, receiver, queue):
    from sqlalchemy import select

    from db import jobstate
    from db.models import WebhookDelivery
    from db.session import session_scope
    from worker.webhooks import deliver, sweep

    _, token = make_user()
    ep = register(wh_client, token, receiver.url, events=["job.progress", "job.failed"])
    plain = register(wh_client, token, receiver.url)  # the default: end events only
    assert ep["events"] == ["job.failed", "job.progress"] and plain["events"] == [
        "job.succeeded", "job.partially_succeeded", "job.failed", "job.cancelled"]
    job_id = uuid.UUID(upload(wh_client, token, 1))
    with session_scope() as s:
        jobstate.add_progress(s, job_id, done=1)  # queued: no event
        assert jobstate.mark_running(s, job_id)
    assert queue() == []

    def progress(**counts):
        with session_scope() as s:
            jobstate.add_progress(s, job_id, **counts)

    progress(done=1, items=2)
    progress(done=1, items=2)  # not sent yet: the same event takes the latest counts
    (first,) = queue()
    assert deliver(first, wh_settings) == "delivered"
    event = verified(ep["secret"], receiver.requests[0])
    assert event["type"] == "job.progress" and event["data"]["status"] == "running"
    assert (event["data"]["progress"]["photos_done"], event["data"]["progress"]["items_found"]) == (3, 4)

    progress(failed=1)  # within WARDROBE_WEBHOOK_PROGRESS_INTERVAL of the last one: held back
    progress(failed=1)
    assert queue() == [first]  # nothing sent now, and the sweep leaves it until it is due
    assert sweep(wh_settings, send=lambda d: pytest.fail("not due yet")) == 0
    with session_scope() as s:
        rows = s.execute(select(WebhookDelivery.endpoint_id, WebhookDelivery.status, WebhookDelivery.scheduled_at,
                                WebhookDelivery.payload).order_by(WebhookDelivery.scheduled_at)).all()
    assert [str(r.endpoint_id) for r in rows] == [ep["id"], ep["id"]]  # none for the endpoint that did not opt in
    gap = (rows[1].scheduled_at - rows[0].scheduled_at).total_seconds()
    assert gap == pytest.approx(rt.settings.webhook_progress_interval, abs=0.01)
    assert rows[1].payload["data"]["progress"]["photos_failed"] == 2

    # the job's end drops the progress not yet sent: the end event has the final counts
    with session_scope() as s:
        assert jobstate.fail(s, job_id, "test_failure", "stopped by the test")
    with session_scope() as s:
        left = s.execute(select(WebhookDelivery.event_type, WebhookDelivery.endpoint_id)
                         .where(WebhookDelivery.status == "pending")).all()
    assert sorted((t, str(e)) for t, e in left) == sorted([("job.failed", ep["id"]), ("job.failed", plain["id"])])


def test_a_progress_event_being_retried_takes_the_latest_counts_and_goes_with_the_job(
        wh_client, make_user, wh_settings, receiver, queue):
    """A progress event the endpoint answered 503 waits for its retry. Before, each later progress of
    the job wrote another row with its own three-day retry chain, and the job's end left the waiting
    ones to arrive, saying "running", after the end event. The waiting one's body is not rewritten
    (a receiver that saw its webhook-id would drop the new counts as a duplicate): a new event with
    the latest counts replaces it."""
    from sqlalchemy import select

    from db import jobstate
    from db.models import WebhookDelivery
    from db.session import session_scope
    from worker.webhooks import deliver

    _, token = make_user()
    ep = register(wh_client, token, receiver.url, events=["job.progress", "job.failed"])
    job_id = uuid.UUID(upload(wh_client, token, 1))
    with session_scope() as s:
        assert jobstate.mark_running(s, job_id)

    def progress(**counts):
        with session_scope() as s:
            jobstate.add_progress(s, job_id, **counts)

    def pending() -> list:
        with session_scope() as s:
            return s.execute(select(WebhookDelivery.event_type, WebhookDelivery.attempts, WebhookDelivery.payload)
                             .where(WebhookDelivery.status == "pending")).all()

    progress(done=1)
    (first,) = queue()
    receiver.answers = [503]
    assert deliver(first, wh_settings) == "pending"
    progress(done=1, items=3)
    rows = pending()
    assert len(rows) == 1 and rows[0].attempts == 0  # one event waiting, not one more each time
    assert rows[0].payload["data"]["progress"]["items_found"] == 3  # with the latest counts
    progress(done=1, items=4)
    assert [r.payload["data"]["progress"]["items_found"] for r in pending()] == [7]  # not sent yet: coalesced
    retried = [d for d in deliveries(wh_client, token, ep["id"]) if d["type"] == "job.progress" and d["attempts"]]
    assert [(d["id"], d["status"], len(d["attempts"])) for d in retried] == [(first, "cancelled", 1)]

    with session_scope() as s:
        assert jobstate.fail(s, job_id, "test_failure", "stopped by the test")
    assert [r.event_type for r in pending()] == ["job.failed"]
    progress_events = [d for d in deliveries(wh_client, token, ep["id"]) if d["type"] == "job.progress"]
    assert [d["status"] for d in progress_events] == ["cancelled"]  # the unsent one went with the job


def test_a_progress_event_waiting_for_its_retry_is_cancelled_when_the_job_ends(
        wh_client, make_user, wh_settings, receiver, queue):
    from db import jobstate
    from db.session import session_scope
    from worker.webhooks import deliver

    _, token = make_user()
    ep = register(wh_client, token, receiver.url, events=["job.progress", "job.failed"])
    job_id = uuid.UUID(upload(wh_client, token, 1))
    with session_scope() as s:
        assert jobstate.mark_running(s, job_id)
        jobstate.add_progress(s, job_id, done=1)
    (first,) = queue()
    receiver.answers = [503]
    assert deliver(first, wh_settings) == "pending"
    with session_scope() as s:
        assert jobstate.fail(s, job_id, "test_failure", "stopped by the test")
    assert deliver(first, wh_settings) is None  # nothing more is sent for it
    by_type = {d["type"]: d for d in deliveries(wh_client, token, ep["id"])}
    assert by_type["job.progress"]["status"] == "cancelled" and len(by_type["job.progress"]["attempts"]) == 1
    assert by_type["job.failed"]["status"] == "pending"


def test_private_addresses_are_refused_without_the_setting(client, make_user, rt, wh_settings, receiver, queue):
    """The app fixture runs with WARDROBE_WEBHOOK_ALLOW_PRIVATE off, the default."""
    from worker.webhooks import deliver

    assert rt.settings.webhook_allow_private is False
    _, token = make_user()
    for url in (receiver.url, "http://localhost:8000/", "http://10.1.2.3/", "http://169.254.169.254/latest/meta-data",
                "https://[::1]/", "http://[::ffff:192.168.0.1]/", "http://0.0.0.0/", "http://100.64.0.1/",
                "http://224.0.0.1/", "ftp://example.com/", "file:///etc/passwd", "http://user:pw@93.184.216.34/",
                "not a url", "http://no-such-host.invalid/"):
        resp = client.post("/v1/webhooks", json={"url": url}, headers=auth(token))
        assert resp.status_code == 400, (url, resp.get_data(as_text=True))
        assert resp.get_json()["error"]["code"] == "invalid_url" and resp.get_json()["error"]["message"]
    # a name's refusal says what kind of address it has, never the address: users cannot map the
    # server's private DNS by registering its names
    said = client.post("/v1/webhooks", json={"url": "http://localhost:8000/"}, headers=auth(token)).get_json()
    assert "loopback" in said["error"]["message"] and "127.0.0.1" not in said["error"]["message"]
    assert "::1" not in said["error"]["message"]
    public = register(client, token, "https://93.184.216.34/hook")
    assert public["url"] == "https://93.184.216.34/hook"
    assert client.delete(f"/v1/webhooks/{public['id']}", headers=auth(token)).status_code == 204

    # registered with a public address; when it is sent, the name resolves to loopback: checked again, refused
    ep = register(client, token, "http://93.184.216.34/")
    from db.models import WebhookEndpoint
    from db.session import session_scope

    with session_scope() as s:
        s.get(WebhookEndpoint, uuid.UUID(ep["id"])).url = receiver.url  # as if its name now resolved to loopback
    client.delete(f"/v1/jobs/{upload(client, token, 1)}", headers=auth(token))
    (delivery_id,) = queue()
    assert deliver(delivery_id, replace(wh_settings, webhook_allow_private=False)) == "failed"
    assert receiver.requests == []
    (d,) = deliveries(client, token, ep["id"])
    assert d["status"] == "failed" and "loopback" in d["attempts"][0]["error"]


def test_endpoints_are_their_owners_only(wh_client, make_user, receiver):
    _, alice = make_user()
    _, bob = make_user()
    ep = register(wh_client, alice, receiver.url)
    for method, path in (("get", f"/v1/webhooks/{ep['id']}"), ("delete", f"/v1/webhooks/{ep['id']}"),
                         ("get", f"/v1/webhooks/{ep['id']}/deliveries")):
        resp = getattr(wh_client, method)(path, headers=auth(bob))
        assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "not_found"
    assert wh_client.get("/v1/webhooks", headers=auth(bob)).get_json() == {"webhooks": [], "next_cursor": None}
    assert wh_client.get(f"/v1/webhooks/{ep['id']}", headers=auth(alice)).status_code == 200  # still there
    assert wh_client.delete(f"/v1/webhooks/{ep['id']}", headers=auth(alice)).status_code == 204
    assert wh_client.get(f"/v1/webhooks/{ep['id']}", headers=auth(alice)).status_code == 404
    assert wh_client.get("/v1/webhooks/not-a-uuid", headers=auth(alice)).status_code == 404
    assert wh_client.get("/v1/webhooks").status_code == 401


def test_the_secret_is_shown_once(wh_client, make_user, receiver):
    _, token = make_user()
    created = wh_client.post("/v1/webhooks", json={"url": receiver.url}, headers=auth(token))
    assert created.status_code == 201 and created.headers["Location"] == f"/v1/webhooks/{created.get_json()['id']}"
    secret = created.get_json()["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    one = wh_client.get(created.headers["Location"], headers=auth(token))
    listed = wh_client.get("/v1/webhooks", headers=auth(token))
    for body in (one.get_data(as_text=True), listed.get_data(as_text=True)):
        assert "secret" not in body and secret not in body
    assert listed.get_json()["webhooks"][0]["id"] == created.get_json()["id"]


def test_bad_requests_and_the_per_user_limit(app, rt, wh_settings, make_user, receiver):
    app.extensions["wardrobe"] = type(rt)(settings=replace(wh_settings, webhook_max_endpoints=2), storage=rt.storage)
    c = app.test_client()
    _, token = make_user()
    for body, code in (([], "invalid_body"), ({"url": receiver.url, "secret": "mine"}, "invalid_body"),
                       ({"events": ["job.succeeded"]}, "invalid_url"), ({"url": 5}, "invalid_url"),
                       ({"url": receiver.url, "events": []}, "invalid_events"),
                       ({"url": receiver.url, "events": ["job.started"]}, "invalid_events")):
        resp = c.post("/v1/webhooks", json=body, headers=auth(token))
        assert (resp.status_code, resp.get_json()["error"]["code"]) == (400, code), body
    register(c, token, receiver.url)
    register(c, token, receiver.url)
    resp = c.post("/v1/webhooks", json={"url": receiver.url}, headers=auth(token))
    assert (resp.status_code, resp.get_json()["error"]["code"]) == (409, "too_many_webhooks")
    page = c.get("/v1/webhooks?limit=1", headers=auth(token)).get_json()
    rest = c.get(f"/v1/webhooks?limit=1&cursor={page['next_cursor']}", headers=auth(token)).get_json()
    assert len(page["webhooks"]) == len(rest["webhooks"]) == 1 and rest["next_cursor"] is None
    assert page["webhooks"][0]["id"] != rest["webhooks"][0]["id"]


def test_an_endpoint_that_trickles_its_answer_is_cut_at_the_attempts_time(wh_settings):
    """requests' timeout bounds each read, so an endpoint sending its status line a byte at a time held
    a webhook worker for as long as it liked (until the task's time limit, with no attempt recorded).
    One attempt now takes WARDROBE_WEBHOOK_TIMEOUT in all."""
    import socket
    import time

    from worker.webhooks import post

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def trickle():
        conn, _ = server.accept()
        conn.recv(65536)
        for byte in b"HTTP/1.1 200 OK" * 10:
            if stop.wait(0.2):
                break
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                break
        conn.close()

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    t0 = time.monotonic()
    try:
        out = post(f"http://127.0.0.1:{port}/hook", "whsec_" + base64.b64encode(b"k" * 24).decode(), "msg_1", b"{}",
                   replace(wh_settings, webhook_timeout=1.0))
    finally:
        stop.set()
        server.close()
    took = time.monotonic() - t0
    assert out.status_code is None and "within 1 s" in out.error, out
    # the trickle lasts 30 s (150 bytes, 0.2 s apart): cut long before, with room for a busy machine
    assert took < 15.0, took


def test_address_rule():
    from core.urlguard import address_refused

    for bad in ("127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
                "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "fe80::1", "fc00::1", "ff02::1", "::",
                "::ffff:127.0.0.1", "2002:7f00:1::", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::808:808",
                "2001:0:4136:e378:8000:63bf:3fff:fdd2"):
        assert address_refused(bad), bad
    assert "Teredo" in address_refused("2001:0:4136:e378:8000:63bf:3fff:fdd2")
    assert "link-local" in address_refused("64:ff9b::a9fe:a9fe")  # NAT64 judged as the IPv4 inside (169.254.169.254)
    for good in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"):
        assert address_refused(good) is None, good


@pytest.mark.parametrize("address", [
    "fec0::1", "fec0:1234::5", "feff:ffff::1",  # site-local (deprecated; Python calls it global)
    "192.0.0.8", "192.0.0.9", "192.0.0.10", "192.0.0.255", "192.0.0.170",  # IETF protocol assignments
    "192.88.99.1",  # deprecated 6to4 relay anycast
    "3fff::1", "3fff:fff::1",  # IPv6 documentation (RFC 9637)
    "::ffff:192.0.0.8", "64:ff9b::c000:8", "2002:c000:8::1",  # the same inside IPv6
    # the rest of the IANA special-purpose registries' not-globally-reachable rows, pinned
    "0.0.0.1", "198.18.0.1", "198.51.100.7", "203.0.113.7", "192.0.2.7", "100::1", "100:0:0:1::1", "2001:2::1",
    "2001:10::1", "2001:db8::1", "5f00::1", "64:ff9b:1::1",
])
def test_special_purpose_addresses_that_is_global_gets_wrong_are_refused(client, make_user, address):
    """Issue 36 #9: webhook URLs on fec0::/10 and 192.0.0.8 were accepted: Python's `is_global` calls
    them global. Reviewed against the IANA IPv4 and IPv6 special-purpose address registries."""
    from core.urlguard import address_refused

    assert address_refused(address), address
    _, token = make_user()
    host = f"[{address}]" if ":" in address else address
    resp = client.post("/v1/webhooks", json={"url": f"http://{host}/hook"}, headers=auth(token))
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_url", resp.get_json()


def test_the_signature_is_standard_webhooks():
    from datetime import datetime, timezone

    from db.webhooks import new_secret
    from worker.webhooks import sign

    secret, body, ts = new_secret(), b'{"type":"job.succeeded"}', 1_700_000_000
    ours = sign(secret, "msg_1", ts, body)
    assert ours == Webhook(secret).sign("msg_1", datetime.fromtimestamp(ts, timezone.utc), body.decode())
    assert new_secret() != secret


def test_wardrobe_webhooks_cli(app, wh_client, make_user, wh_settings, receiver, queue):
    """`wardrobe webhooks` against the API over HTTP: add, list, off, on, deliveries, rm."""
    from werkzeug.serving import make_server

    from tests.test_cli import _wardrobe
    from worker.webhooks import deliver

    _, token = make_user()
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def cli(*args):
        r = _wardrobe("webhooks", *args, "--url", f"http://127.0.0.1:{port}", "--token", token)
        assert r.returncode == 0, r.stderr
        return r

    try:
        added = cli("add", receiver.url, "--events", "job.succeeded,job.cancelled")
        hook_id = added.stdout.split()[0]
        (ep,) = wh_client.get("/v1/webhooks", headers=auth(token)).get_json()["webhooks"]
        assert ep["id"] == hook_id and ep["events"] == ["job.succeeded", "job.cancelled"]
        assert "signing secret" in added.stderr and "whsec_" in added.stderr
        assert cli().stdout.strip() == f"{hook_id}  on    job.succeeded,job.cancelled  {receiver.url}"
        assert "off (turned off by its owner)" in cli("off", hook_id).stdout
        assert wh_client.get(f"/v1/webhooks/{hook_id}", headers=auth(token)).get_json()["enabled"] is False
        assert " on " in cli("on", hook_id).stdout
        wh_client.delete(f"/v1/jobs/{upload(wh_client, token, 1)}", headers=auth(token))
        assert deliver(queue()[0], wh_settings) == "delivered"
        (line,) = cli("deliveries", hook_id).stdout.strip().splitlines()
        assert "job.cancelled" in line and "delivered" in line and "1 attempt  last: 200" in line
        assert json.loads(cli("list", "--json").stdout)[0]["id"] == hook_id
        cli("rm", hook_id)
        assert wh_client.get("/v1/webhooks", headers=auth(token)).get_json()["webhooks"] == []
        assert "no webhooks" in cli().stderr
        r = _wardrobe("webhooks", "off", str(uuid.uuid4()), "--url", f"http://127.0.0.1:{port}", "--token", token)
        assert r.returncode != 0 and "404" in r.stderr and "Traceback" not in r.stderr
    finally:
        server.shutdown()


def test_a_progress_event_waits_its_interval_after_one_that_went_out_late(
        wh_client, make_user, rt, wh_settings, receiver, queue):
    """Issue 36 #11: progress webhooks arrived 1-2 s apart against the documented one per 5 s. The next
    event was due 5 s after the last one was due, but the last one had been sent late."""
    from datetime import timedelta

    from sqlalchemy import select, update

    from db import jobstate
    from db.models import WebhookAttempt, WebhookDelivery, utcnow
    from db.session import session_scope
    from worker.webhooks import deliver

    _, token = make_user()
    register(wh_client, token, receiver.url, events=["job.progress"])
    job_id = uuid.UUID(upload(wh_client, token, 1))
    interval = rt.settings.webhook_progress_interval
    with session_scope() as s:
        assert jobstate.mark_running(s, job_id)
        jobstate.add_progress(s, job_id, done=1)
    (first,) = queue()
    with session_scope() as s:  # it waited in a busy queue: sent 0.8 of the interval after it was due
        s.execute(update(WebhookDelivery).values(scheduled_at=WebhookDelivery.scheduled_at - timedelta(seconds=0.8 * interval)))
    assert deliver(first, wh_settings) == "delivered"
    with session_scope() as s:
        jobstate.add_progress(s, job_id, done=1)  # due 0.2 of the interval from now
    with session_scope() as s:
        second = s.scalar(select(WebhookDelivery.id).where(WebhookDelivery.id != uuid.UUID(first)))
        s.execute(update(WebhookDelivery).where(WebhookDelivery.id == second).values(next_attempt_at=utcnow()))
        sent_at = s.scalar(select(WebhookAttempt.created_at))
    assert deliver(second, wh_settings) is None  # held back: it would arrive within the interval
    assert len(receiver.requests) == 1
    with session_scope() as s:
        due = s.scalar(select(WebhookDelivery.next_attempt_at).where(WebhookDelivery.id == second))
    assert (due - sent_at).total_seconds() == pytest.approx(interval, abs=0.01)
    with session_scope() as s:
        s.execute(update(WebhookAttempt).values(created_at=WebhookAttempt.created_at - timedelta(seconds=interval)))
        s.execute(update(WebhookDelivery).where(WebhookDelivery.id == second).values(next_attempt_at=utcnow()))
    assert deliver(second, wh_settings) == "delivered"  # once the interval has passed since the last one


def test_an_endpoint_deleted_while_it_answers_410_does_not_deadlock(wh_client, make_user, wh_settings, queue):
    """Issue 36 #13: the sender held the delivery and then disabled the endpoint (410 Gone) while the
    owner's DELETE held the endpoint and waited for its deliveries: PostgreSQL killed one of them."""
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from worker.webhooks import deliver

    answering = threading.Event()

    class Gone(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            answering.set()
            time.sleep(1.0)  # the owner deletes the endpoint meanwhile
            self.send_response(410)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Gone)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _, token = make_user()
        ep = register(wh_client, token, f"http://127.0.0.1:{server.server_address[1]}/")
        wh_client.delete(f"/v1/jobs/{upload(wh_client, token, 1)}", headers=auth(token))
        (delivery_id,) = queue()
        outcome: dict = {}

        def send():
            try:
                outcome["status"] = deliver(delivery_id, wh_settings)
            except Exception as e:  # noqa: BLE001 - the deadlock's victim: what the test looks for
                outcome["error"] = e

        sender = threading.Thread(target=send)
        sender.start()
        assert answering.wait(10)
        deleted = wh_client.delete(f"/v1/webhooks/{ep['id']}", headers=auth(token))
        sender.join(30)
        assert deleted.status_code == 204, deleted.get_data(as_text=True)
        assert outcome == {"status": "failed"}, outcome
        assert wh_client.get(f"/v1/webhooks/{ep['id']}", headers=auth(token)).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_an_endpoint_registered_where_the_api_allows_private_addresses_is_sent_by_a_worker_without_it(
        wh_client, make_user, wh_settings, receiver, queue):
    """Issue 36 #12: WARDROBE_WEBHOOK_ALLOW_PRIVATE set on `serve` only: registration succeeded and every
    delivery then failed as "loopback". The endpoint now records that the API accepted it at a private
    address, and the sender honours that; a public name that moves to a private address is still refused."""
    from worker.webhooks import deliver

    _, token = make_user()
    assert wh_settings.webhook_allow_private  # the API's (wh_client's) setting
    register(wh_client, token, receiver.url)  # on loopback
    wh_client.delete(f"/v1/jobs/{upload(wh_client, token, 1)}", headers=auth(token))
    (delivery_id,) = queue()
    assert deliver(delivery_id, replace(wh_settings, webhook_allow_private=False)) == "delivered"
    assert len(receiver.requests) == 1
