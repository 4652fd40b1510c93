"""Resumable uploads (/v1/upload-sessions) on real PostgreSQL, Redis and the moto S3 server: S3 multipart
parts PUT to presigned URLs and folder-storage chunks PATCHed to the API, each cut off half way by a real
closed connection, then resumed; the job made at complete runs to the end. The CLI resumes a cut upload
and sends only what is missing. Bad input, other users' sessions and the sweeper's expiry too."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
import socket
import threading
import time
import uuid
import zipfile
from dataclasses import replace
from datetime import timedelta

import pytest
import requests

from tests.conftest import auth, example_photos, free_port, wait_port, zip_bytes
from tests.helpers import run_job
from tests.procs import TcpProxy, close_both

MiB = 1024 * 1024
PART = 5 * MiB  # S3's least part size (moto holds to it too)


def noise_jpeg(seed: int, w: int = 2000, h: int = 1500) -> bytes:
    """A photo that does not compress: a few make a zip of several parts."""
    from PIL import Image

    buf = io.BytesIO()
    Image.frombytes("RGB", (w, h), random.Random(seed).randbytes(w * h * 3)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def big_zip() -> bytes:
    """About 11 MB: three 5 MiB parts, the last short. Stored, not deflated: the noise would not shrink."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(4):
            zf.writestr(f"closet/noise-{i}.jpg", noise_jpeg(i))
        for name, data in example_photos(2).items():
            zf.writestr(f"closet/{name}", data)
    data = buf.getvalue()
    assert 2 * PART < len(data) < 3 * PART
    return data


class CutProxy(TcpProxy):
    """127.0.0.1:port -> target port. `cut_after(n)`: once n more bytes went upstream, the connection
    carrying them is closed mid-request (both ways); with `then_down`, later connections are refused
    until `down` is cleared. `upstream` counts the bytes clients sent through."""

    def __init__(self, target_port: int):
        self.upstream = 0
        self.cut_at: int | None = None
        self.then_down = False
        self.cuts = 0
        self.lock = threading.Lock()
        super().__init__(target_port)
        self.url = f"http://127.0.0.1:{self.port}"

    def cut_after(self, n: int, then_down: bool = False) -> None:
        with self.lock:
            self.cut_at, self.then_down = self.upstream + n, then_down

    def _pipe(self, a: socket.socket, b: socket.socket, upstream: bool) -> None:
        try:
            while data := a.recv(65536):
                if upstream:
                    with self.lock:
                        if self.cut_at is not None and self.upstream + len(data) >= self.cut_at:
                            keep = self.cut_at - self.upstream
                            b.sendall(data[:keep])
                            self.upstream += keep
                            self.cut_at, self.cuts = None, self.cuts + 1
                            self.down = self.then_down
                            return  # the finally closes both sides: a cut connection
                        self.upstream += len(data)
                b.sendall(data)
        except OSError:
            pass
        finally:
            close_both(a, b)


@pytest.fixture()
def moto_proxy(moto_endpoint):
    proxy = CutProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    yield proxy
    proxy.close()


@pytest.fixture()
def serve(rt, clean_db, tmp_path):
    """An app on other settings (S3 in a bucket of the test's own, or a folder), in the test client
    and over real HTTP on a free port; the session's runtime again afterwards."""
    from werkzeug.serving import make_server

    from api.app import create_app
    from services.bootup import bootup

    servers = []

    def start(local: bool = False, **changes):
        storage = f"file://{tmp_path / 'objects'}" if local else f"s3://wardrobe-resume-{uuid.uuid4().hex[:8]}"
        settings = replace(rt.settings, storage_url=storage, upload_part_size=PART, **changes)
        runtime = bootup(settings, force=True)
        app = create_app(settings)
        app.testing = True
        server = make_server("127.0.0.1", free_port(), app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        wait_port(server.server_port)
        return app.test_client(), f"http://127.0.0.1:{server.server_port}", runtime

    yield start
    for server in servers:
        server.shutdown()
    bootup(rt.settings, force=True)


def assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    body = resp.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]


def create(client, token, data: bytes, **extra):
    body = {"filename": "closet.zip", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()} | extra
    return client.post("/v1/upload-sessions", json=body, headers=auth(token))


def put_parts(client, token, sess: dict, data: bytes, numbers: list[int]) -> None:
    urls = client.post(f"/v1/upload-sessions/{sess['id']}/parts", json={"numbers": numbers}, headers=auth(token))
    assert urls.status_code == 200, urls.get_data(as_text=True)
    for part in urls.get_json()["parts"]:
        start = (part["number"] - 1) * sess["part_size"]
        r = requests.put(part["url"], data=data[start:start + part["size"]], timeout=60)
        assert r.status_code == 200 and r.headers["ETag"], r.text


def all_bytes_sent(client, token, data: bytes, local: bool) -> str:
    """A session holding all of `data` (chunks PATCHed to the API, or one S3 part): its path."""
    sess = create(client, token, data).get_json()
    where = f"/v1/upload-sessions/{sess['id']}"
    if local:
        client.patch(where, data=data, headers=auth(token) | {"Content-Type": "application/offset+octet-stream",
                                                             "Upload-Offset": "0"})
    else:
        put_parts(client, token, sess, data, [1])
    return where


def run_to_the_end(client, token, runtime, job_id: str, photos: int) -> None:
    run_job(runtime, job_id)
    job = client.get(f"/v1/jobs/{job_id}", headers=auth(token)).get_json()
    assert job["status"] == "succeeded", job
    listed = client.get(f"/v1/jobs/{job_id}/photos", headers=auth(token)).get_json()["photos"]
    assert len(listed) == photos and {p["status"] for p in listed} == {"done"}
    for p in listed:
        assert client.get(p["photo_url"], headers=auth(token)).status_code == 200


# --- S3: parts straight to the bucket ------------------------------------------------------------------------------

def test_s3_parts_survive_a_cut_connection_and_complete_into_a_job(serve, make_user, moto_proxy, big_zip):
    client, _, runtime = serve(s3_presign_endpoint_url=moto_proxy.url)
    uid, token = make_user()
    h = auth(token)
    resp = create(client, token, big_zip)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    sess = resp.get_json()
    assert resp.headers["Location"] == f"/v1/upload-sessions/{sess['id']}"
    assert (sess["mode"], sess["status"], sess["part_size"], sess["part_count"]) == ("s3_multipart", "open", PART, 3)
    assert sess["missing_parts"] == [1, 2, 3] and sess["offset"] == 0 and sess["job_id"] is None

    urls = client.post(f"/v1/upload-sessions/{sess['id']}/parts", headers=h).get_json()["parts"]  # the missing ones
    assert [u["number"] for u in urls] == [1, 2, 3] and [u["size"] for u in urls] == [PART, PART, len(big_zip) - 2 * PART]
    assert all(u["url"].startswith(moto_proxy.url + "/") for u in urls)  # signed for the endpoint clients reach
    assert requests.put(urls[0]["url"], data=big_zip[:PART], timeout=60).status_code == 200
    moto_proxy.cut_after(2 * MiB)  # part 2 is cut off 2 MiB in: the connection closes under the client
    with pytest.raises(requests.ConnectionError):
        requests.put(urls[1]["url"], data=big_zip[PART:2 * PART], timeout=60)
    assert moto_proxy.cuts == 1

    now = client.get(f"/v1/upload-sessions/{sess['id']}", headers=h).get_json()  # what the bucket holds
    assert [(p["number"], p["size"]) for p in now["parts"]] == [(1, PART)]
    assert now["missing_parts"] == [2, 3] and now["offset"] == PART
    early = client.post(f"/v1/upload-sessions/{sess['id']}/complete", headers=h)
    assert "2 of 3 parts" in assert_error(early, 409, "upload_incomplete")["message"]

    put_parts(client, token, sess, big_zip, now["missing_parts"])  # the resume: only parts 2 and 3
    assert client.get(f"/v1/upload-sessions/{sess['id']}", headers=h).get_json()["missing_parts"] == []
    done = client.post(f"/v1/upload-sessions/{sess['id']}/complete", headers=h)
    assert done.status_code == 202, done.get_data(as_text=True)
    job = done.get_json()
    assert done.headers["Location"] == f"/v1/jobs/{job['id']}" and job["status"] == "queued"
    assert job["upload"] == {"name": "closet.zip", "bytes": len(big_zip)}
    again = client.post(f"/v1/upload-sessions/{sess['id']}/complete", headers=h)  # idempotent
    assert again.status_code == 202 and again.get_json()["id"] == job["id"]
    after = client.get(f"/v1/upload-sessions/{sess['id']}", headers=h).get_json()
    assert (after["status"], after["job_id"], after["links"]["job"]) == ("completed", job["id"], f"/v1/jobs/{job['id']}")

    from core.storage import keys

    key = keys.upload(uid, uuid.UUID(job["id"]))
    assert runtime.storage.get_bytes(key) == big_zip  # one object at the job's key, the parts in order
    assert not [u for u in runtime.storage.client.list_multipart_uploads(Bucket=runtime.storage.bucket).get("Uploads", [])
                if u["Key"] == key]
    run_to_the_end(client, token, runtime, job["id"], photos=6)


def test_the_zip_check_reads_only_the_end_of_an_s3_object(serve, big_zip):
    _, _, runtime = serve()
    runtime.storage.put_bytes("users/x/big.zip", big_zip)
    with runtime.storage.open_reader("users/x/big.zip") as f:
        names = [i.filename for i in zipfile.ZipFile(f).infolist()]
        assert len(names) == 6
        assert f.raw.fetched < 600 * 1024 < len(big_zip) // 10 and f.raw.requests <= 4
    from services.uploads import check_zip

    with runtime.storage.open_reader("users/x/big.zip") as f:
        assert check_zip(f, runtime.settings) == 6


# --- folder storage: chunks through the API (tus) -----------------------------------------------------------------

def _raw_patch_cut(port: int, path: str, token: str, offset: int, body: bytes, sent: int) -> None:
    """A PATCH announcing len(body) bytes that sends only `sent` of them, then closes: a cut connection."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        sock.sendall(head.encode() + body[:sent])
        time.sleep(0.3)


def test_chunks_survive_a_cut_mid_chunk_and_complete_into_a_job(serve, make_user):
    client, url, runtime = serve(local=True)
    data = _photos_zip()
    uid, token = make_user()
    h = auth(token)
    resp = create(client, token, data)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    sess = resp.get_json()
    where = f"/v1/upload-sessions/{sess['id']}"
    assert (sess["mode"], sess["offset"]) == ("chunked", 0) and "part_size" not in sess
    head = client.head(where, headers=h)
    assert (head.status_code, head.headers["Upload-Offset"], head.headers["Upload-Length"]) == (200, "0", str(len(data)))
    assert head.headers["Tus-Resumable"] == "1.0.0"

    half = len(data) // 2
    patch = {"Content-Type": "application/offset+octet-stream", "Tus-Resumable": "1.0.0"}
    r = client.patch(where, data=data[:half], headers=h | patch | {"Upload-Offset": "0"})
    assert (r.status_code, r.headers["Upload-Offset"]) == (204, str(half))

    port = int(url.rsplit(":", 1)[1])
    _raw_patch_cut(port, where, token, half, data[half:], sent=20_000)  # 20,000 bytes of the rest, then cut
    deadline = time.monotonic() + 10
    while int(client.head(where, headers=h).headers["Upload-Offset"]) != half + 20_000:
        assert time.monotonic() < deadline, client.head(where, headers=h).headers
        time.sleep(0.05)
    # the server kept exactly what arrived, at its place: the bytes so far are the zip's first bytes
    from core.storage import keys

    assert runtime.storage.get_bytes(keys.incoming(uid, uuid.UUID(sess["id"]))) == data[:half + 20_000]

    stale = client.patch(where, data=data[half:], headers=h | patch | {"Upload-Offset": str(half)})  # resent from the old offset
    err = assert_error(stale, 409, "offset_mismatch")
    assert stale.headers["Upload-Offset"] == str(half + 20_000) and str(half + 20_000) in err["message"]
    early = client.post(f"{where}/complete", headers=h)
    assert_error(early, 409, "upload_incomplete")

    offset = int(stale.headers["Upload-Offset"])
    r = client.patch(where, data=data[offset:], headers=h | patch | {"Upload-Offset": str(offset)})
    assert (r.status_code, r.headers["Upload-Offset"]) == (204, str(len(data)))
    done = client.post(f"{where}/complete", headers=h)
    assert done.status_code == 202, done.get_data(as_text=True)
    job = done.get_json()
    assert client.post(f"{where}/complete", headers=h).get_json()["id"] == job["id"]
    after = client.get(where, headers=h)
    assert (after.get_json()["status"], after.get_json()["job_id"], after.headers["Upload-Offset"]) == \
        ("completed", job["id"], str(len(data)))
    assert runtime.storage.get_bytes(keys.upload(uid, uuid.UUID(job["id"]))) == data
    assert not runtime.storage.exists(keys.incoming(uid, uuid.UUID(sess["id"])))
    from db.models import Job
    from db.session import session_scope

    with session_scope() as s:
        assert s.get(Job, uuid.UUID(job["id"])).upload_sha256 == hashlib.sha256(data).hexdigest()
    run_to_the_end(client, token, runtime, job["id"], photos=3)


def _photos_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in example_photos(3).items():
            zf.writestr(name, data)
    return buf.getvalue()


# --- bad input ---------------------------------------------------------------------------------------------------

def test_a_completed_non_zip_is_422_and_its_bytes_are_gone(serve, make_user, tmp_path):
    client, _, runtime = serve()
    uid, token = make_user()
    junk = random.Random(7).randbytes(300_000)
    sess = create(client, token, junk).get_json()
    put_parts(client, token, sess, junk, [1])
    assert_error(client.post(f"/v1/upload-sessions/{sess['id']}/complete", headers=auth(token)), 422, "invalid_zip")
    assert not [o for o in runtime.storage.list(f"users/{uid}/")]  # the object is removed
    assert client.get(f"/v1/upload-sessions/{sess['id']}", headers=auth(token)).status_code == 404

    client, _, runtime = serve(local=True)  # and in chunks
    sess = create(client, token, junk).get_json()
    client.patch(f"/v1/upload-sessions/{sess['id']}", data=junk, headers=auth(token) | {
        "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert_error(client.post(f"/v1/upload-sessions/{sess['id']}/complete", headers=auth(token)), 422, "invalid_zip")
    assert not [o for o in runtime.storage.list(f"users/{uid}/")]


def test_sizes_over_the_limit_are_413_at_create_and_at_complete(serve, make_user):
    client, _, runtime = serve(max_upload_bytes=7 * MiB)
    _, token = make_user()
    h = auth(token)
    assert_error(client.post("/v1/upload-sessions", json={"size": 7 * MiB + 1}, headers=h), 413, "payload_too_large")
    sess = client.post("/v1/upload-sessions", json={"filename": "a.zip", "size": 6 * MiB}, headers=h).get_json()
    assert sess["part_count"] == 2
    urls = client.post(f"/v1/upload-sessions/{sess['id']}/parts", headers=h).get_json()["parts"]
    for part, size in zip(urls, (PART, 3 * MiB)):  # the second part larger than its URL says (moto lets it)
        assert requests.put(part["url"], data=b"\0" * size, timeout=60).status_code == 200
    err = assert_error(client.post(f"/v1/upload-sessions/{sess['id']}/complete", headers=h), 413, "payload_too_large")
    assert str(8 * MiB) in err["message"]
    uploads = runtime.storage.client.list_multipart_uploads(Bucket=runtime.storage.bucket).get("Uploads", [])
    assert not uploads  # aborted: its parts are gone
    assert client.get(f"/v1/upload-sessions/{sess['id']}", headers=h).status_code == 404


def test_another_users_session_is_404_and_left_alone(serve, make_user):
    client, _, _ = serve(local=True)
    _, token = make_user()
    _, other = make_user()
    data = _photos_zip()
    sess = create(client, token, data).get_json()
    where = f"/v1/upload-sessions/{sess['id']}"
    chunk = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    for resp in (client.get(where, headers=auth(other)), client.head(where, headers=auth(other)),
                 client.patch(where, data=data, headers=auth(other) | chunk),
                 client.post(f"{where}/complete", headers=auth(other)), client.delete(where, headers=auth(other)),
                 client.post(f"{where}/parts", headers=auth(other))):
        assert resp.status_code == 404
    assert client.get(where, headers=auth(token)).get_json()["offset"] == 0  # untouched
    assert client.get("/v1/upload-sessions/not-a-uuid", headers=auth(token)).status_code == 404


def test_chunk_refusals_and_abort(serve, make_user):
    client, _, runtime = serve(local=True)
    uid, token = make_user()
    h = auth(token)
    data = _photos_zip()
    chunk = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    assert_error(client.post("/v1/upload-sessions", json={"size": 0}, headers=h), 400, "invalid_body")
    assert_error(client.post("/v1/upload-sessions", json={"size": 10, "sha256": "xyz"}, headers=h), 400, "invalid_body")
    assert_error(client.post("/v1/upload-sessions", json={"size": 10, "colour": 1}, headers=h), 400, "invalid_body")
    sess = create(client, token, data, sha256="0" * 64).get_json()  # a checksum the bytes will not match
    where = f"/v1/upload-sessions/{sess['id']}"
    assert_error(client.patch(where, data=data + b"x", headers=h | chunk), 413, "beyond_upload_length")
    assert_error(client.patch(where, data=data, headers=h | chunk | {"Content-Type": "text/plain"}),
                 415, "unsupported_media_type")
    assert_error(client.patch(where, data=data, headers=h | chunk | {"Upload-Offset": "-1"}), 400, "invalid_upload_offset")
    resp = client.patch(where, data=data, headers=h | chunk | {"Tus-Resumable": "0.2.2"})
    assert_error(resp, 412, "unsupported_tus_version")
    assert resp.headers["Tus-Version"] == "1.0.0"
    assert_error(client.post(f"{where}/parts", headers=h), 409, "mode_mismatch")
    assert client.patch(where, data=data, headers=h | chunk).status_code == 204
    assert_error(client.post(f"{where}/complete", headers=h), 422, "checksum_mismatch")
    assert client.get(where, headers=h).status_code == 404 and not list(runtime.storage.list(f"users/{uid}/"))

    sess = create(client, token, data).get_json()  # DELETE aborts: the chunks go
    where = f"/v1/upload-sessions/{sess['id']}"
    assert client.patch(where, data=data[:100], headers=h | chunk).status_code == 204
    assert len(list(runtime.storage.list(f"users/{uid}/incoming/"))) == 1
    assert client.delete(where, headers=h).status_code == 204
    assert client.get(where, headers=h).status_code == 404 and not list(runtime.storage.list(f"users/{uid}/"))


def test_a_quota_refused_at_complete_keeps_the_bytes_for_a_later_complete(serve, make_user, tmp_path):
    """429 at complete (the user's uploads in flight at their limit): nothing is lost, complete again later."""
    from core.storage import keys
    from db.models import Job
    from db.session import session_scope
    from services.sweeper import sweep

    data = _photos_zip()
    for local in (False, True):
        client, _, runtime = serve(local=local, max_uploads_in_flight=1)
        uid, token = make_user()
        h = auth(token)
        where = all_bytes_sent(client, token, data, local)
        busy = client.post("/v1/uploads", data=data, headers=h | {"Content-Type": "application/zip"}).get_json()["id"]
        resp = client.post(f"{where}/complete", headers=h)
        assert_error(resp, 429, "too_many_uploads_in_flight")
        assert resp.headers["Retry-After"]
        kept = client.get(where, headers=h).get_json()
        assert (kept["status"], kept["offset"]) == ("open" if local else "assembled", len(data))
        sweep(runtime, grace=-5, tmpdir=str(tmp_path))  # the bytes a live session holds are not swept
        with session_scope() as s:
            s.get(Job, uuid.UUID(busy)).status = "succeeded"
        done = client.post(f"{where}/complete", headers=h)
        assert done.status_code == 202, done.get_data(as_text=True)
        assert runtime.storage.get_bytes(keys.upload(uid, uuid.UUID(done.get_json()["id"]))) == data


def test_a_broker_down_at_complete_keeps_the_bytes_for_a_later_complete(serve, make_user):
    """503 at complete (the job could not be queued): nothing is made and nothing is lost; the complete
    the 503 asks for makes the job, which runs. Before, the job was failed, its zip deleted with it, and
    the second complete answered that failed job: the whole upload had to be sent again."""
    from api.app import create_app

    data = _photos_zip()
    for local in (False, True):
        client, _, runtime = serve(local=local)
        broken = create_app(replace(runtime.settings, broker_url="redis://127.0.0.1:1/0")).test_client()
        uid, token = make_user()
        h = auth(token)
        where = all_bytes_sent(client, token, data, local)
        assert_error(broken.post(f"{where}/complete", headers=h), 503, "queue_unavailable")
        kept = client.get(where, headers=h).get_json()
        assert (kept["status"], kept["offset"]) == ("open" if local else "assembled", len(data))
        assert client.get("/v1/jobs", headers=h).get_json()["jobs"] == []  # no job was made
        done = client.post(f"{where}/complete", headers=h)
        assert done.status_code == 202, done.get_data(as_text=True)
        assert done.get_json()["status"] == "queued"
        run_to_the_end(client, token, runtime, done.get_json()["id"], 3)


def test_a_completed_sessions_zip_follows_its_jobs_retention(serve, make_user):
    """Once its job exists, a session no longer keeps the zip from the sweeper; before, a completed
    session (alive until its expiry, a day) kept it past WARDROBE_UPLOAD_RETENTION."""
    from core.storage import keys
    from services.bootup import bootup
    from services.sweeper import sweep

    data = _photos_zip()
    client, _, runtime = serve(upload_retention=-1)  # kept for ever while the job runs and ends
    uid, token = make_user()
    h = auth(token)
    sess = create(client, token, data).get_json()
    put_parts(client, token, sess, data, [1])
    job_id = client.post(f"/v1/upload-sessions/{sess['id']}/complete", headers=h).get_json()["id"]
    run_to_the_end(client, token, runtime, job_id, 3)
    key = keys.upload(uid, uuid.UUID(job_id))
    assert runtime.storage.exists(key)
    now_zero = bootup(replace(runtime.settings, upload_retention=0), force=True)
    assert sweep(now_zero, grace=-5)["unreferenced"]["uploads"] == 1
    assert not runtime.storage.exists(key)


def test_creating_a_session_again_for_the_same_bytes_answers_the_open_one(serve, make_user):
    """A create whose answer was lost is retried (the CLI does): it gets the session it made, not a
    second one holding quota and the open-session limit until it expires."""
    client, _, _ = serve(local=True, max_upload_sessions=2)
    _, token = make_user()
    _, other = make_user()
    data = _photos_zip()
    first = create(client, token, data)
    assert first.status_code == 201
    for _ in range(3):
        again = create(client, token, data)
        assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
        assert again.headers["Location"] == f"/v1/upload-sessions/{first.get_json()['id']}"
    assert create(client, other, data).status_code == 201  # another user's session is never handed out
    assert create(client, token, data + b"more").status_code == 201  # other bytes: a session of their own
    assert_error(create(client, token, data + b"else"), 429, "too_many_upload_sessions")


def test_open_sessions_are_capped_per_user(serve, make_user):
    client, _, _ = serve(local=True, max_upload_sessions=2)
    _, token = make_user()
    for _ in range(2):
        assert client.post("/v1/upload-sessions", json={"size": 100}, headers=auth(token)).status_code == 201
    resp = client.post("/v1/upload-sessions", json={"size": 100}, headers=auth(token))
    assert_error(resp, 429, "too_many_upload_sessions")
    assert resp.headers["Retry-After"]


# --- expiry: the sweeper -------------------------------------------------------------------------------------------

def _expire(session_id: str) -> None:
    from db.models import UploadSession, utcnow
    from db.session import session_scope

    with session_scope() as s:
        s.get(UploadSession, uuid.UUID(session_id)).expires_at = utcnow() - timedelta(seconds=1)


def test_the_sweeper_leaves_a_session_that_a_complete_holds(serve, make_user):
    """A complete that began just before the session's expiry holds its row; the sweeper's expiry pass
    skips it rather than deleting the bytes under the complete (the partial file it is hashing, or the
    job's assembled zip)."""
    from sqlalchemy import select

    from db.models import UploadSession, utcnow
    from db.session import session_scope
    from services.sweeper import expire_sessions

    client, _, runtime = serve(local=True)
    _, token = make_user()
    data = _photos_zip()
    where = all_bytes_sent(client, token, data, local=True)
    sess = {"id": where.rsplit("/", 1)[1]}
    with session_scope() as held:  # what complete does first: lock the session's row
        row = held.scalar(select(UploadSession).where(UploadSession.id == uuid.UUID(sess["id"])).with_for_update())
        done = {}

        def expire_pass():
            done.update(expire_sessions(runtime, now=utcnow() + timedelta(days=2)))

        sweeper = threading.Thread(target=expire_pass)
        sweeper.start()
        sweeper.join(timeout=10)
        assert not sweeper.is_alive(), "the expiry pass waited for the complete"
        assert runtime.storage.exists(row.object_key)  # the bytes are still there under the complete
        assert done["expired"] == 0
    assert client.get(f"/v1/upload-sessions/{sess['id']}", headers=auth(token)).status_code == 200


def test_the_sweeper_keeps_live_sessions_and_drops_expired_ones(serve, make_user, tmp_path, big_zip):
    from core.storage import keys
    from services.sweeper import sweep

    client, _, runtime = serve()
    uid, token = make_user()
    sess = create(client, token, big_zip).get_json()
    put_parts(client, token, sess, big_zip, [1])
    swept = sweep(runtime, grace=-5, tmpdir=str(tmp_path))  # an hour's grace or none: a live session's parts stay
    assert swept["stale_partials"] == 0
    assert [p["number"] for p in client.get(f"/v1/upload-sessions/{sess['id']}", headers=auth(token)).get_json()["parts"]] == [1]
    _expire(sess["id"])
    assert client.get(f"/v1/upload-sessions/{sess['id']}", headers=auth(token)).status_code == 404  # expired
    swept = sweep(runtime, tmpdir=str(tmp_path))
    assert swept["upload_sessions"]["expired"] == 1 and swept["upload_sessions"]["dropped"] == 1
    assert not runtime.storage.client.list_multipart_uploads(Bucket=runtime.storage.bucket).get("Uploads")

    client, _, runtime = serve(local=True)  # folder storage: the partial file
    data = _photos_zip()
    sess = create(client, token, data).get_json()
    chunk = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    assert client.patch(f"/v1/upload-sessions/{sess['id']}", data=data[:1000], headers=auth(token) | chunk).status_code == 204
    orphan = keys.incoming(uid, uuid.uuid4())  # a session's chunks whose row is gone (its user deleted, say)
    runtime.storage.put_bytes(orphan, b"chunks")
    swept = sweep(runtime, grace=-5, tmpdir=str(tmp_path))
    assert swept["upload_sessions"]["orphan_chunks"] == 1
    assert {o.key for o in runtime.storage.list(f"users/{uid}/")} == {keys.incoming(uid, uuid.UUID(sess["id"]))}
    _expire(sess["id"])
    assert sweep(runtime, tmpdir=str(tmp_path))["upload_sessions"]["expired"] == 1
    assert not list(runtime.storage.list(f"users/{uid}/"))


# --- the CLI ----------------------------------------------------------------------------------------------------------

def _cli_upload(url: str, token: str, path, capsys) -> tuple[int | str, str]:
    from cli.main import build_parser

    args = build_parser().parse_args(["upload", str(path), "--url", url, "--token", token, "--resumable", "always"])
    message = ""
    try:
        code = args.fn(args)
    except SystemExit as e:  # as Python ends the command: a message goes to stderr, with status 1
        code, message = (1, e.code) if isinstance(e.code, str) else (e.code, "")
    out = capsys.readouterr()
    return code, out.out + out.err + message


@pytest.mark.parametrize("mode", ["s3_multipart", "chunked"])
def test_the_cli_resumes_a_cut_upload_and_sends_only_what_is_missing(serve, make_user, moto_proxy, big_zip, tmp_path,
                                                                     monkeypatch, capsys, mode):
    from cli import resume

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(resume, "RETRY_WAITS", (0.05, 0.05))
    monkeypatch.setattr(resume, "CHUNK", 4 * MiB)
    if mode == "s3_multipart":
        client, url, runtime = serve(s3_presign_endpoint_url=moto_proxy.url)
        proxy = moto_proxy  # the parts go to the bucket through it
    else:
        client, url, runtime = serve(local=True)
        proxy = CutProxy(int(url.rsplit(":", 1)[1]))  # the chunks go to the API through it
        url = proxy.url
    _, token = make_user()
    path = tmp_path / "closet.zip"
    path.write_bytes(big_zip)

    proxy.cut_after(PART + 2 * MiB, then_down=True)  # 7 MiB in, and nothing gets through after: the train's tunnel
    code, said = _cli_upload(url, token, path, capsys)
    assert code != 0 and "run the same command again to resume" in said, said
    saved = json.loads(resume.state_path().read_text())
    assert len(saved) == 1 and list(saved.values())[0]["mode"] == mode
    session_id = list(saved.values())[0]["session"]
    kept = client.get(f"/v1/upload-sessions/{session_id}", headers=auth(token)).get_json()["offset"]
    assert kept >= PART

    proxy.down = False
    before = proxy.upstream
    code, said = _cli_upload(url, token, path, capsys)
    assert code == 0, said
    assert f"resuming upload session {session_id}: {kept} of {len(big_zip)} bytes" in said
    sent = proxy.upstream - before
    assert len(big_zip) - kept <= sent < len(big_zip) - kept + 256 * 1024  # the missing bytes, and requests' headers
    job = json.loads(said[said.index("{"):said.rindex("}") + 1])
    assert job["status"] == "queued" and job["upload"]["bytes"] == len(big_zip)
    assert json.loads(resume.state_path().read_text()) == {}  # done: the session is forgotten
    run_to_the_end(client, token, runtime, job["id"], photos=6)


def test_the_cli_client_uploads_a_zip_named_in_any_script(serve, make_user, tmp_path):
    """HTTP headers carry Latin-1 only: the name in X-Filename is percent-encoded UTF-8 (requests
    refused to send `衣服.zip` at all, with a traceback)."""
    from cli.client import ApiClient

    _, url, _ = serve()
    _, token = make_user()
    for name in ("衣服 夏.zip", "café 100%.zip"):
        path = tmp_path / name
        path.write_bytes(zip_bytes(example_photos(1)))
        job = ApiClient(url, token).upload(path, progress=False)
        assert job["upload"]["name"] == name


def test_the_cli_client_pages_through_lists_on_a_server_with_smaller_pages(serve, make_user, rt):
    """`WARDROBE_PAGE_MAX` below the client's page size of 200 made every list command fail with
    400; and `wardrobe jobs` showed only the first page (50) of a user's jobs."""
    import argparse

    from cli.catalogue import cmd_jobs
    from cli.client import ApiClient
    from db.models import Job
    from db.session import session_scope

    _, url, _ = serve(page_max=20, page_default=10)
    uid, token = make_user()
    with session_scope() as s:
        s.add_all([Job(user_id=uid, upload_key=f"k{i}", upload_sha256="0" * 64) for i in range(23)])
    assert len(ApiClient(url, token).all_pages("/v1/jobs", "jobs")) == 23
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cmd_jobs(argparse.Namespace(url=url, token=token, job_id=None, wait=False)) == 0
    assert len(out.getvalue().splitlines()) == 23


def test_the_cli_says_why_when_a_chunk_is_refused_without_an_offset(serve, make_user, tmp_path):
    """A 409 other than an offset mismatch (the session completed by another run of the command)
    carries no Upload-Offset: the client crashed on it with a KeyError instead of saying what it was."""
    from cli import resume
    from cli.client import ApiClient, ApiRefused

    client, url, _ = serve(local=True)
    _, token = make_user()
    data = _photos_zip()
    where = all_bytes_sent(client, token, data, local=True)
    assert client.post(f"{where}/complete", headers=auth(token)).status_code == 202
    path = tmp_path / "closet.zip"
    path.write_bytes(data)
    stale = {"id": where.rsplit("/", 1)[1], "size": len(data), "offset": 0}  # what the other run knew
    with pytest.raises(ApiRefused) as refused:
        resume._send_chunks(ApiClient(url, token), path, stale, progress=False)
    assert refused.value.error == "upload_completed" and refused.value.code.startswith("HTTP 409 upload_completed")
