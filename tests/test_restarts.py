"""Promises kept across real process restarts (issue 36): a live stream resumed with Last-Event-ID
after the API was killed and started again, a resumable upload cut mid-chunk and resumed on a new API
process, and the garbage a `--beat` worker collects on its own. Real `wardrobe serve` and `wardrobe
worker` processes, real PostgreSQL, a private Redis; folder storage where the chunked uploads need it."""
from __future__ import annotations

import hashlib
import json
import socket
import time
import uuid

import pytest
import requests
from sqlalchemy import select

from db.models import Item
from db.session import session_scope
from tests.conftest import free_port
from tests.procs import Proc, RedisServer, have, service_env, wait_for
from tests.fakes import FAKE_SEGMENTER
from tests.test_failures import photos_zip

pytestmark = pytest.mark.skipif(not have("redis-server"), reason="redis-server is not installed")


def _healthy(port: int, proc: Proc, timeout: float = 90) -> str:
    """The API's base URL once /healthz answers (a port that accepts is not yet an app that answers)."""
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(f"{base}/healthz", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, timeout, "the API to answer", on_fail=proc.tail)
    return base


def _events(resp, until) -> list[dict]:
    out, cur = [], {}
    for raw in resp.iter_lines(decode_unicode=True):
        if raw == "":
            if "data" in cur:
                cur["data"] = json.loads(cur["data"])
                out.append(cur)
                if until(cur):
                    break
            cur = {}
        elif not raw.startswith(":"):
            field, _, value = raw.partition(":")
            cur[field] = value[1:] if value.startswith(" ") else value
    return out


def test_a_stream_resumes_with_last_event_id_after_the_api_restarts(settings, make_user, tmp_path):
    """A client reads the first garment of a running job, the API process group is killed (-9) and
    started again, the client reconnects with the last id it got: it gets every other garment and the
    end, and together the two streams hold each of the job's items."""
    _, token = make_user()
    h = {"Authorization": f"Bearer {token}"}
    redis = RedisServer(tmp_path).start()
    env = service_env(settings, redis.url, WARDROBE_SEGMENTER=FAKE_SEGMENTER, WARDROBE_FAKE_DELAY_MS=300,
                      WARDROBE_SEGMENT_CHUNK=2, WARDROBE_EVENTS_POLL=0.3)
    port = free_port()
    api = Proc(["serve", "--port", str(port), "--workers", "1"], env, tmp_path / "api.log").start()
    worker = Proc(["worker", "--concurrency", "1"], env, tmp_path / "worker.log").start()
    try:
        base = _healthy(port, api)
        r = requests.post(f"{base}/v1/uploads", headers=h, files={"file": ("p.zip", photos_zip(10, seed=5))}, timeout=60)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        with requests.get(f"{base}/v1/jobs/{job_id}/events", headers=h, stream=True, timeout=120) as resp:
            first = _events(resp, until=lambda e: e["event"] == "item")
        assert first[-1]["event"] == "item", first
        last_id = first[-1]["id"]
        api.kill()  # SIGKILL to the API's whole group, mid-job
        api.start()
        _healthy(port, api)
        with requests.get(f"{base}/v1/jobs/{job_id}/events", headers=h | {"Last-Event-ID": last_id}, stream=True,
                          timeout=180) as resp:
            rest = _events(resp, until=lambda e: e["event"] == "end")
        assert rest[-1]["event"] == "end" and rest[-1]["data"]["status"] == "succeeded", (rest[-1:], worker.tail())
    finally:
        api.kill()
        worker.kill()
        redis.kill()
    with session_scope() as s:
        stored = {str(i) for i in s.scalars(select(Item.id).where(Item.job_id == uuid.UUID(job_id)))}
    got_first = {e["data"]["id"] for e in first if e["event"] == "item"}
    got_rest = {e["data"]["id"] for e in rest if e["event"] == "item"}
    assert len(stored) == 20 and got_first | got_rest == stored
    assert got_first < stored and got_rest  # the restart came mid-job: the second stream had garments to send


def _patch_cut(port: int, path: str, token: str, offset: int, data: bytes, announced: int) -> None:
    """A chunk that announces `announced` bytes, sends `data`, and is cut (the socket closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall((f"PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n"
               f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
               f"Content-Length: {announced}\r\n\r\n").encode() + data)
    time.sleep(0.5)
    s.shutdown(socket.SHUT_RDWR)
    s.close()


def test_a_resumable_upload_cut_survives_an_api_restart(settings, make_user, tmp_path):
    """A chunk is cut half-way, the API is killed and started again, the client asks where it is
    (HEAD), sends the rest from there and completes: the job is made from exactly the zip's bytes
    (the declared SHA-256 is checked at completion)."""
    _, token = make_user()
    h = {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"}
    data = photos_zip(40, seed=9)
    redis = RedisServer(tmp_path).start()  # the job's ingest message goes to a broker of the test's own
    env = service_env(settings, redis.url, WARDROBE_STORAGE_URL=f"file://{tmp_path / 'objects'}")
    port = free_port()
    api = Proc(["serve", "--port", str(port), "--workers", "1"], env, tmp_path / "api.log").start()
    try:
        base = _healthy(port, api)
        r = requests.post(f"{base}/v1/upload-sessions", headers=h, timeout=60,
                          json={"filename": "p.zip", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        assert r.status_code == 201 and r.json()["mode"] == "chunked", r.text
        path = r.headers["Location"]
        half = len(data) // 2
        _patch_cut(port, path, token, 0, data[:half], len(data))
        api.kill()
        api.start()
        _healthy(port, api)
        r = requests.head(base + path, headers=h, timeout=60)
        assert r.status_code == 200, r.status_code
        offset = int(r.headers["Upload-Offset"])
        assert 0 <= offset <= half
        r = requests.patch(base + path, data=data[offset:], timeout=60,
                           headers=h | {"Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)})
        assert r.status_code == 204 and int(r.headers["Upload-Offset"]) == len(data), (r.status_code, r.text)
        r = requests.post(f"{base}{path}/complete", headers=h, timeout=60)
        assert r.status_code == 202, r.text
        job = requests.get(f"{base}/v1/jobs/{r.json()['id']}", headers=h, timeout=60)
        assert job.status_code == 200 and job.json()["status"] == "queued", job.text  # no worker here
    finally:
        api.kill()
        redis.kill()


def test_a_beat_worker_collects_the_garbage_on_its_own(settings, make_user, rt, client, tmp_path):
    """No `wardrobe gc` run: a `wardrobe worker --beat` with WARDROBE_GC_INTERVAL 2 s and no grace
    deletes the objects no row names (a cut-out and a photo of a job that never got rows) and keeps
    those rows name and keys of other shapes."""
    from core.storage import open_storage
    from db.models import Photo
    from tests.conftest import auth, example_photos, zip_bytes
    from tests.helpers import run_job
    from tests.test_api import upload

    uid, token = make_user()
    job_id = upload(client, token, zip_bytes(example_photos(2))).get_json()["id"]
    run_job(rt, job_id)  # rows that name a photo and its cut-outs
    with session_scope() as s:
        named = [k for k in s.scalars(select(Photo.storage_key).where(Photo.job_id == uuid.UUID(job_id))) if k]
        named += list(s.scalars(select(Item.cutout_key).where(Item.job_id == uuid.UUID(job_id))))
    assert named
    store = open_storage(f"file://{tmp_path / 'objects'}")
    for key in named:
        store.put_bytes(key, b"kept")
    orphans = [f"users/{uid}/cutouts/{uuid.uuid4()}/{uuid.uuid4()}.webp", f"users/{uid}/photos/{uuid.uuid4()}.jpg"]
    for key in orphans:
        store.put_bytes(key, b"garbage")
    store.put_bytes("notes/readme.txt", b"not ours to judge")
    redis = RedisServer(tmp_path).start()
    (tmp_path / "tmp").mkdir()
    env = service_env(settings, redis.url, WARDROBE_STORAGE_URL=f"file://{tmp_path / 'objects'}", WARDROBE_GC_INTERVAL=2,
                      WARDROBE_GC_GRACE=0, TMPDIR=str(tmp_path / "tmp"))
    worker = Proc(["worker", "--concurrency", "1", "--beat", "--queues", "ingest"], env, tmp_path / "worker.log").start()
    try:
        wait_for(lambda: not any(store.exists(k) for k in orphans), 120, "the beat's sweep to delete the orphans",
                 on_fail=worker.tail)
    finally:
        worker.kill()
        redis.kill()
    assert all(store.exists(k) for k in named) and store.exists("notes/readme.txt")
    assert "collect_garbage" in worker.tail(1_000_000)
