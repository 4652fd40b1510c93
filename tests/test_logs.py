"""Logs a machine can read: JSON lines with job_id, photo_id, user_id and request_id fields (text on a
terminal), and a request id on every API response."""
from __future__ import annotations

import io
import json
import logging
import uuid

import redis

from tests.conftest import REDIS_URL, auth, example_photos, zip_bytes
from tests.fakes import FAKE_SEGMENTER


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _logged(stream, *calls) -> list[str]:
    from core import logs

    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(logs.TEXT_FORMAT))
    logs.style(handler)
    logger = logging.getLogger("wardrobe.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for call in calls:
            call(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().splitlines()


def test_json_lines_off_a_terminal_text_on_one():
    from core import logs

    def lines(logger):
        logger.info("photo %s stored", "p-1", extra=logs.fields(photo_id="p-1"))
        with logs.adding(job_id="j-1", user_id="u-1"):
            logger.warning("slow")
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed")
        logger.info("after")

    first, slow, failed, after = [json.loads(line) for line in _logged(io.StringIO(), lines)]
    assert first["event"] == "photo p-1 stored" and first["photo_id"] == "p-1" and first["level"] == "info"
    assert first["logger"] == "wardrobe.test-logs" and first["timestamp"].endswith("Z")
    assert (slow["event"], slow["job_id"], slow["user_id"], slow["level"]) == ("slow", "j-1", "u-1", "warning")
    assert failed["job_id"] == "j-1" and "ValueError: boom" in failed["exception"]
    assert "job_id" not in after and "user_id" not in after  # the block's fields end with it

    text = _logged(Tty(), lines)
    assert text[0].endswith("wardrobe.test-logs: photo p-1 stored photo_id=p-1")
    assert text[1].endswith("wardrobe.test-logs: slow job_id=j-1 user_id=u-1")
    assert "Traceback" in "\n".join(text) and text[-1].endswith("wardrobe.test-logs: after")


def test_a_text_handler_beside_a_json_one_leaves_the_json_event_plain():
    from core import logs

    text, machine = logging.StreamHandler(Tty()), logging.StreamHandler(io.StringIO())
    for h in (text, machine):
        h.setFormatter(logging.Formatter("%(message)s"))
        logs.style(h)
    logger = logging.getLogger("wardrobe.test-logs-both")
    for h in (text, machine):
        logger.addHandler(h)
    try:
        logger.warning("gone", extra=logs.fields(job_id="j-2"))
    finally:
        for h in (text, machine):
            logger.removeHandler(h)
    assert text.stream.getvalue() == "gone job_id=j-2\n"
    line = json.loads(machine.stream.getvalue())
    assert (line["event"], line["job_id"]) == ("gone", "j-2")


def test_responses_carry_a_request_id_and_the_requests_lines_name_it(app, make_user):
    from api.deps import require_user

    @require_user
    def noisy():
        logging.getLogger("wardrobe.api").warning("something to say")
        return {"ok": True}

    app.add_url_rule("/test-noisy", "noisy", noisy)
    uid, token = make_user()
    stream = io.StringIO()
    from core import logs

    handler = logging.StreamHandler(stream)
    logs.style(handler)
    logging.getLogger("wardrobe.api").addHandler(handler)
    client = app.test_client()
    try:
        given = client.get("/test-noisy", headers=auth(token) | {"X-Request-ID": "req-42.a:b"})
        made = client.get("/test-noisy", headers=auth(token))
    finally:
        logging.getLogger("wardrobe.api").removeHandler(handler)
    assert given.status_code == 200 and given.headers["X-Request-ID"] == "req-42.a:b"
    rid = made.headers["X-Request-ID"]
    assert rid and rid != "req-42.a:b" and uuid.UUID(rid)
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert (first["request_id"], first["user_id"], first["event"]) == ("req-42.a:b", str(uid), "something to say")
    assert second["request_id"] == rid

    # errors carry it too, and a hostile one is replaced, never echoed
    for hostile in ("a b", 'x"y', "<script>", "-leading-dash", "z" * 129, "é"):
        r = client.get("/v1/jobs", headers={"X-Request-ID": hostile})
        assert r.status_code == 401 and r.headers["X-Request-ID"] != hostile
        assert uuid.UUID(r.headers["X-Request-ID"])
    assert client.get("/no-such-page", headers={"X-Request-ID": "abc"}).headers["X-Request-ID"] == "abc"


def test_a_worker_logging_to_a_file_writes_json_lines_naming_the_job(client, make_user, settings, tmp_path):
    from sqlalchemy import select

    from db.models import Job, Photo
    from db.session import session_scope
    from tests.procs import Proc, service_env, wait_for

    uid, token = make_user()
    r = redis.Redis.from_url(REDIS_URL)
    r.delete("ingest", "segment")
    resp = client.post("/v1/uploads", data={"file": (io.BytesIO(zip_bytes(example_photos(2))), "photos.zip")},
                       headers=auth(token) | {"X-Request-ID": "req-worker-1"}, content_type="multipart/form-data")
    assert resp.status_code == 202, resp.get_data(as_text=True)
    job_id = resp.get_json()["id"]
    logfile = tmp_path / "worker.jsonl"
    env = service_env(settings, REDIS_URL, WARDROBE_SEGMENTER=FAKE_SEGMENTER, WARDROBE_PRELOAD_MODEL="false")
    worker = Proc(["worker", "--queues", "ingest,segment", "--concurrency", "1", "--pool", "solo",
                   "--logfile", str(logfile)], env, tmp_path / "worker.out").start()

    def status():
        with session_scope() as s:
            return s.get(Job, uuid.UUID(job_id)).status

    try:
        wait_for(lambda: status() == "succeeded", 120, "the job done", on_fail=lambda: worker.tail() + (
            logfile.read_text() if logfile.exists() else ""))
    finally:
        worker.stop()
    lines = [json.loads(line) for line in logfile.read_text().splitlines() if line.strip()]  # every line is JSON
    assert lines and all({"event", "level", "logger", "timestamp"} <= set(line) for line in lines)
    ours = [line for line in lines if line.get("job_id") == job_id]
    assert {line.get("task") for line in ours} >= {"ingest", "segment"}, ours
    # the upload's request id, carried by the ingest message and on by the segment messages ingest sent
    assert all(line.get("request_id") == "req-worker-1" for line in ours if line.get("task")), ours
    assert all(line.get("user_id") == str(uid) for line in ours if line.get("task")), ours
    with session_scope() as s:
        photo_ids = {str(p) for p in s.scalars(select(Photo.id).where(Photo.job_id == uuid.UUID(job_id)))}
    assert len(photo_ids) == 2
    assert {line.get("photo_id") for line in ours if line.get("task") == "segment"} >= photo_ids, ours


def test_a_task_sent_from_an_api_request_carries_its_request_id(client, make_user):
    """In the message's headers (the worker binds it: the test above); a request that brought none gets the id
    it is answered with."""
    _, token = make_user()
    r = redis.Redis.from_url(REDIS_URL)
    r.delete("ingest")
    sent = []
    for given in ({"X-Request-ID": "req-upload-7"}, {}):
        resp = client.post("/v1/uploads", data={"file": (io.BytesIO(zip_bytes(example_photos(1))), "p.zip")},
                           headers=auth(token) | given, content_type="multipart/form-data")
        assert resp.status_code == 202, resp.get_data(as_text=True)
        sent.append(resp.headers["X-Request-ID"])
    messages = [json.loads(m) for m in reversed(r.lrange("ingest", 0, -1))]  # kombu pushes on the left
    assert [m["headers"]["task"] for m in messages] == ["wardrobe.ingest"] * 2
    assert [m["headers"].get("request_id") for m in messages] == sent and sent[0] == "req-upload-7"
