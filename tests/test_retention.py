"""What is kept and what is cleaned up, on real PostgreSQL and the moto S3 server: the sweeper (unreferenced
objects, zips past their retention, stale temp files), the zip deleted when its job ends, deleting a photo,
a job's data and a user (never another user's), and the per-user upload limits."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace

import pytest
from sqlalchemy import func, select

from core.storage import LocalStorage, keys
from services.bootup import Runtime, bootup
from db.models import Item, Job, Photo, User
from db.session import session_scope
from services.sweeper import sweep
from tests.conftest import ROOT, auth, example_photos, jpeg_bytes, zip_bytes
from tests.helpers import run_job


def upload(client, token, data: bytes):
    return client.post("/v1/uploads", data={"file": (io.BytesIO(data), "photos.zip")}, headers=auth(token),
                       content_type="multipart/form-data")


def assert_error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    body = resp.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]


def stored(rt, user_id) -> set[str]:
    return {o.key for o in rt.storage.list(f"users/{user_id}/")}


def photos_zip(n: int, seed: int) -> bytes:
    return zip_bytes({f"p{i}.jpg": jpeg_bytes(80, 60, ((seed * 37 + i * 50) % 256, 90, 200 - i * 20)) for i in range(n)})


@pytest.fixture()
def settings_as(rt):
    """Run with other settings for the block (the runtime that the API, the workers' code and the
    after-commit hook read), then the session's again; and a bucket of the test's own, so that a sweep
    sees only what the test stored (the session's bucket holds what earlier tests left)."""
    bucket = f"s3://wardrobe-gc-{uuid.uuid4().hex[:8]}"

    def use(**changes):
        return bootup(replace(rt.settings, storage_url=bucket, **changes), force=True)

    yield use
    bootup(rt.settings, force=True)


def _app(rt):
    from api.app import create_app

    app = create_app(rt.settings)
    app.testing = True
    return app.test_client()


def test_the_zip_is_deleted_when_its_job_ends_unless_kept(clean_db, make_user, settings_as):
    rt = settings_as(upload_retention=0)
    client = _app(rt)
    uid, token = make_user()
    done = upload(client, token, photos_zip(2, 1)).get_json()
    cancelled = upload(client, token, photos_zip(2, 2)).get_json()
    zips = {keys.upload(uid, uuid.UUID(j["id"])) for j in (done, cancelled)}
    assert zips <= stored(rt, uid)  # kept while the jobs are queued
    run_job(rt, done["id"])
    assert client.delete(f"/v1/jobs/{cancelled['id']}", headers=auth(token)).get_json()["status"] == "cancelled"
    # the finished job's zip is gone, the photos and cut-outs kept; the job cancelled before its zip was read
    # keeps it for a retry (WARDROBE_UPLOAD_RETRY_RETENTION, tested below)
    assert keys.upload(uid, uuid.UUID(done["id"])) not in stored(rt, uid)
    assert keys.upload(uid, uuid.UUID(cancelled["id"])) in stored(rt, uid)
    assert client.get(f"/v1/jobs/{done['id']}", headers=auth(token)).get_json()["status"] == "succeeded"
    assert len(client.get("/v1/items", headers=auth(token)).get_json()["items"]) > 0

    rt = settings_as(upload_retention=-1)  # kept for ever: neither the job's end nor the sweeper removes it
    client = _app(rt)
    kept = upload(client, token, photos_zip(1, 3)).get_json()
    run_job(rt, kept["id"])
    key = keys.upload(uid, uuid.UUID(kept["id"]))
    assert key in stored(rt, uid)
    assert sweep(rt, grace=-5)["unreferenced"]["uploads"] == 0 and key in stored(rt, uid)
    rt = settings_as(upload_retention=0)  # a zip left behind (say storage was down at the end) goes with the next sweep
    assert sweep(rt, grace=-5)["unreferenced"]["uploads"] == 1 and key not in stored(rt, uid)


def test_a_job_cancelled_before_its_zip_was_read_keeps_it_for_a_retry_then_the_sweeper_deletes_it(
        clean_db, make_user, settings_as):
    """Issue 36 #7: a job cancelled during ingest said `retryable: true`, and its retry answered 409
    upload_gone: the zip was deleted when the job ended, before it was read."""
    from datetime import timedelta

    from sqlalchemy import update

    rt = settings_as(upload_retention=0, upload_retry_retention=86400)
    client = _app(rt)
    uid, token = make_user()
    job = upload(client, token, photos_zip(3, 7)).get_json()
    key = keys.upload(uid, uuid.UUID(job["id"]))
    body = client.delete(f"/v1/jobs/{job['id']}", headers=auth(token)).get_json()  # before ingest read it
    assert body["status"] == "cancelled" and body["retryable"] is True
    assert key in stored(rt, uid)  # kept for the retry...
    assert sweep(rt, grace=-5)["unreferenced"]["uploads"] == 0 and key in stored(rt, uid)  # ...by the sweeper too
    retried = client.post(f"/v1/jobs/{job['id']}/retry", headers=auth(token))
    assert retried.status_code == 202, retried.get_json()
    run_job(rt, job["id"])
    done = client.get(f"/v1/jobs/{job['id']}", headers=auth(token)).get_json()
    assert done["status"] == "succeeded" and done["progress"]["photos_done"] == 3 and done["retryable"] is False
    assert key not in stored(rt, uid)  # read to its end and ended: the zip goes with the job's end (retention 0)

    # cancelled again before it is read, and the retention passes: the sweeper deletes the zip, and the
    # job no longer says it can be retried (a retry would be 409 upload_gone)
    job = upload(client, token, photos_zip(2, 8)).get_json()
    key = keys.upload(uid, uuid.UUID(job["id"]))
    client.delete(f"/v1/jobs/{job['id']}", headers=auth(token))
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == uuid.UUID(job["id"]))
                  .values(finished_at=Job.finished_at - timedelta(seconds=86400 + 5)))
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth(token)).get_json()["retryable"] is False
    assert sweep(rt, grace=-5)["unreferenced"]["uploads"] == 1 and key not in stored(rt, uid)
    assert_error(client.post(f"/v1/jobs/{job['id']}/retry", headers=auth(token)), 409, "upload_gone")


def test_sweeper_deletes_only_what_no_row_names_and_nothing_young(clean_db, make_user, settings_as):
    rt = settings_as(upload_retention=-1)
    client = _app(rt)
    uid, token = make_user()
    other_uid, other_token = make_user()
    jobs = [upload(client, t, photos_zip(2, n)).get_json()["id"] for n, t in enumerate((token, other_token))]
    for jid in jobs:
        run_job(rt, jid)
    with session_scope() as s:
        photo_id = s.scalar(select(Photo.id).where(Photo.user_id == uid).limit(1))
    live = stored(rt, uid) | stored(rt, other_uid)
    assert len(live) >= 2 + 4  # two zips, four photos, their cut-outs
    gone_user, gone_job, gone_photo = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    orphans = {keys.upload(uid, gone_job): b"zip of a job whose row was never written",
               keys.photo(uid, gone_photo): b"photo of a crashed ingest",
               keys.original(uid, gone_photo): b"its original",
               keys.cutout(uid, photo_id, uuid.uuid4(), "webp"): b"cut-out of a segmentation that rolled back",
               keys.photo(gone_user, uuid.uuid4()): b"object of a deleted user"}
    for key, data in orphans.items():
        rt.storage.put_bytes(key, data)
    unknown = f"users/{uid}/notes/readme.txt"
    rt.storage.put_bytes(unknown, b"not a key the server makes")

    young = sweep(rt)  # the default grace (an hour): everything is young, nothing is touched
    assert young["young"] == young["objects_seen"] >= len(live) + len(orphans) + 1
    assert young["unreferenced"] == {"uploads": 0, "photos": 0, "originals": 0, "cutouts": 0, "exports": 0} and young["deleted"] == 0

    dry = sweep(rt, dry_run=True, grace=-5)
    assert dry["unreferenced"] == {"uploads": 1, "photos": 2, "originals": 1, "cutouts": 1, "exports": 0}
    assert dry["unknown"] == 1 and dry["deleted"] == 0
    assert dry["unreferenced_bytes"] == sum(len(d) for d in orphans.values())
    assert set(orphans) <= {o.key for o in rt.storage.list("users/")}  # a dry run deletes nothing

    real = sweep(rt, grace=-5)
    assert real["deleted"] == len(orphans)
    left = {o.key for o in rt.storage.list("users/")}
    assert not set(orphans) & left
    assert live | {unknown} == left  # every object a row names, and the unknown key, are still there
    for item in client.get("/v1/items", headers=auth(token)).get_json()["items"]:
        assert client.get(item["cutout_url"], headers=auth(token)).status_code == 200
    assert sweep(rt, grace=-5)["deleted"] == 0  # nothing more to do


def test_sweeper_removes_stale_temp_files_and_partial_writes(clean_db, settings_as, tmp_path):
    old = time.time() - 7200
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    stale, held, fresh, foreign = (tmpdir / n for n in ("wardrobe-upload-a.zip", "wardrobe-ingest-b.zip",
                                                         "wardrobe-upload-c.zip", "someone-else.zip"))
    for p in (stale, held, fresh, foreign):
        p.write_bytes(b"x" * 10)
    for p in (stale, held, foreign):
        os.utime(p, (old, old))
    objects = tmp_path / "objects"
    store = LocalStorage(objects)
    store.put_bytes("users/u/x.bin", b"ok")
    partial = objects / "users" / "u" / ".tmp-abc"
    partial.write_bytes(b"half an object")
    os.utime(partial, (old, old))
    local = Runtime(settings=clean_db.settings, storage=store)
    with open(held, "rb"):  # a live process still reads it (a long ingest): not touched
        dry = sweep(local, dry_run=True, tmpdir=str(tmpdir))
        assert (dry["stale_temp_files"], dry["stale_partials"]) == (1, 1) and stale.exists() and partial.exists()
        result = sweep(local, tmpdir=str(tmpdir))
    assert (result["stale_temp_files"], result["stale_partials"]) == (1, 1)
    assert not stale.exists() and not partial.exists()
    assert held.exists() and fresh.exists() and foreign.exists() and store.get_bytes("users/u/x.bin") == b"ok"

    # S3: a multipart upload a crashed process never finished is aborted
    rt = settings_as()
    s3 = rt.storage
    started = s3.client.create_multipart_upload(Bucket=s3.bucket, Key="users/u/big.zip")["UploadId"]
    assert f"users/u/big.zip?uploadId={started}" in s3.stale_partials(time.time() + 5)
    assert sweep(rt, grace=-5, tmpdir=str(tmpdir))["stale_partials"] == 1
    assert not s3.stale_partials(time.time() + 5)


def test_delete_a_photo_and_a_jobs_data_never_another_users(clean_db, make_user, settings_as):
    rt = settings_as(upload_retention=-1)
    client = _app(rt)
    uid, token = make_user()
    other_uid, other_token = make_user()
    h, other = auth(token), auth(other_token)
    job = upload(client, token, photos_zip(3, 5)).get_json()["id"]
    run_job(rt, job)
    theirs = upload(client, other_token, photos_zip(1, 6)).get_json()["id"]
    run_job(rt, theirs)
    their_objects = stored(rt, other_uid)
    photos = client.get(f"/v1/jobs/{job}/photos", headers=h).get_json()["photos"]
    items = client.get("/v1/items", headers=h).get_json()["items"]
    victim = photos[0]["id"]
    victim_items = [i for i in items if i["photo_id"] == victim]
    assert victim_items

    # another user: 404 on every delete, and nothing of the owner's changes
    assert_error(client.delete(f"/v1/photos/{victim}", headers=other), 404, "not_found")
    assert_error(client.delete(f"/v1/jobs/{job}/data", headers=other), 404, "not_found")
    assert_error(client.delete(f"/v1/jobs/{uuid.uuid4()}/data", headers=h), 404, "not_found")
    assert_error(client.delete("/v1/photos/not-a-uuid", headers=h), 404, "not_found")
    assert len(client.get("/v1/items", headers=h).get_json()["items"]) == len(items)

    # one photo: the photo, its items, their cut-outs; the job's other photos stay
    before = stored(rt, uid)
    assert client.delete(f"/v1/photos/{victim}", headers=h).status_code == 204
    assert_error(client.get(f"/v1/photos/{victim}", headers=h), 404, "not_found")
    for it in victim_items:
        assert_error(client.get(f"/v1/items/{it['id']}", headers=h), 404, "not_found")
    left = stored(rt, uid)
    victim_key = keys.photo(uid, uuid.UUID(victim))
    assert victim_key in before and victim_key not in left
    assert not any(f"/cutouts/{victim}/" in k for k in left)
    assert len(before) - len(left) == 1 + len(victim_items)
    assert len(client.get("/v1/items", headers=h).get_json()["items"]) == len(items) - len(victim_items)
    assert_error(client.delete(f"/v1/photos/{victim}", headers=h), 404, "not_found")

    # a job still running: its data cannot be deleted yet (409), nor its photos
    from worker import ingest, segment

    running = upload(client, token, photos_zip(2, 7)).get_json()["id"]
    assert_error(client.delete(f"/v1/jobs/{running}/data", headers=h), 409, "job_active")
    ingest.run(running, rt, send_segment=lambda j, ids: None)  # photos stored, none segmented: running
    pending = client.get(f"/v1/jobs/{running}/photos", headers=h).get_json()["photos"][0]["id"]
    assert_error(client.delete(f"/v1/photos/{pending}", headers=h), 409, "job_active")
    assert client.delete(f"/v1/jobs/{running}", headers=h).get_json()["status"] == "cancelled"
    assert client.delete(f"/v1/jobs/{running}/data", headers=h).status_code == 204

    # the whole job: photos, items, cut-outs, the zip and the job itself
    assert client.delete(f"/v1/jobs/{job}/data", headers=h).status_code == 204
    assert_error(client.get(f"/v1/jobs/{job}", headers=h), 404, "not_found")
    assert client.get("/v1/items", headers=h).get_json()["items"] == []
    assert stored(rt, uid) == set()
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Photo).where(Photo.user_id == uid)) == 0
    # the other user's job is whole
    assert stored(rt, other_uid) == their_objects
    assert len(client.get("/v1/items", headers=other).get_json()["items"]) > 0
    assert client.get(f"/v1/jobs/{theirs}", headers=other).status_code == 200


def test_users_delete_removes_everything_of_theirs_and_gc_runs_from_the_cli(clean_db, make_user, settings_as):
    from tests.procs import service_env

    rt = settings_as(upload_retention=-1)
    client = _app(rt)
    uid, token = make_user("leaving")
    stay_uid, stay_token = make_user("staying")
    for t, seed in ((token, 8), (stay_token, 9)):
        run_job(rt, upload(client, t, photos_zip(2, seed)).get_json()["id"])
    queued = upload(client, token, photos_zip(1, 10)).get_json()["id"]  # a job still queued goes too
    staying = stored(rt, stay_uid)
    assert stored(rt, uid) and staying
    env = service_env(rt.settings, rt.settings.broker_url, WARDROBE_UPLOAD_RETENTION=-1)
    cli = [sys.executable, "-m", "cli.main"]
    r = subprocess.run(cli + ["users", "delete", "leaving"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "leaving" in r.stderr and "2 jobs" in r.stderr
    assert stored(rt, uid) == set()
    with session_scope() as s:
        for model in (Job, Photo, Item):
            assert s.scalar(select(func.count()).select_from(model).where(model.user_id == uid)) == 0
        assert s.scalar(select(User.id).where(User.name == "leaving")) is None
    assert_error(client.get(f"/v1/jobs/{queued}", headers=auth(stay_token)), 404, "not_found")
    assert stored(rt, stay_uid) == staying
    assert len(client.get("/v1/items", headers=auth(stay_token)).get_json()["items"]) > 0
    r = subprocess.run(cli + ["users", "delete", "nobody-such"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no user" in r.stderr

    rt.storage.put_bytes(keys.photo(uid, uuid.uuid4()), b"written by a worker after the user was deleted")
    r = subprocess.run(cli + ["gc", "--dry-run", "--grace", "0"], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout)
    assert counts["dry_run"] and counts["unreferenced"]["photos"] == 1 and counts["deleted"] == 0
    assert "gc (dry run)" in r.stderr  # the log line with the counts


def test_upload_limits_answer_429_and_413_per_user(clean_db, make_user, settings_as):
    rt = settings_as(max_uploads_in_flight=2, max_uploads_per_hour=0, max_stored_bytes=0)
    client = _app(rt)
    uid, token = make_user()
    _, other_token = make_user()
    first, _second = (upload(client, token, photos_zip(1, 20 + n)).get_json()["id"] for n in range(2))
    err = upload(client, token, photos_zip(1, 22))
    assert_error(err, 429, "too_many_uploads_in_flight")
    assert int(err.headers["Retry-After"]) > 0
    assert upload(client, other_token, photos_zip(1, 23)).status_code == 202  # another user's limit is their own
    run_job(rt, first)
    assert upload(client, token, photos_zip(1, 24)).status_code == 202  # one ended: room for one more

    # concurrent uploads cannot slip past the limit together
    rt = settings_as(max_uploads_in_flight=2, max_uploads_per_hour=0, max_stored_bytes=0)
    from api.app import create_app

    app = create_app(rt.settings)
    app.testing = True
    racer, racer_token = make_user()
    codes = []

    def go(n):
        with app.test_client() as c:
            codes.append(upload(c, racer_token, photos_zip(1, 30 + n)).status_code)

    threads = [threading.Thread(target=go, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [202, 202, 429, 429, 429]
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.user_id == racer)) == 2
    assert len(stored(rt, racer)) == 2  # the refused ones left no zip behind

    rt = settings_as(max_uploads_in_flight=0, max_uploads_per_hour=3, max_stored_bytes=0)
    client = _app(rt)
    hourly, hourly_token = make_user()
    for n in range(3):
        assert upload(client, hourly_token, photos_zip(1, 40 + n)).status_code == 202
    err = upload(client, hourly_token, photos_zip(1, 43))
    body = assert_error(err, 429, "too_many_uploads")
    assert 3500 < int(err.headers["Retry-After"]) <= 3600 and "in the last hour" in body["message"]

    data = photos_zip(2, 50)
    rt = settings_as(max_uploads_in_flight=0, max_uploads_per_hour=0, max_stored_bytes=2 * len(data) + 10)
    client = _app(rt)
    full, full_token = make_user()
    kept = [upload(client, full_token, data).get_json()["id"] for _ in range(2)]
    assert_error(upload(client, full_token, photos_zip(2, 51)), 413, "storage_quota_exceeded")
    raw = client.post("/v1/uploads", data=photos_zip(2, 52), headers=auth(full_token) | {"Content-Type": "application/zip"})
    assert_error(raw, 413, "storage_quota_exceeded")  # refused on the declared length, before the body is read
    for jid in kept[:1]:
        run_job(rt, jid)
        assert client.delete(f"/v1/jobs/{jid}/data", headers=auth(full_token)).status_code == 204
    assert upload(client, full_token, photos_zip(2, 53)).status_code == 202  # deleting a job's data made room


def test_an_upload_by_a_user_deleted_while_their_token_is_cached_is_401_and_leaves_nothing(clean_db, make_user, settings_as):
    """API processes trust a checked token for WARDROBE_TOKEN_CACHE_SECONDS; a user deleted meanwhile
    made the job's INSERT fail on its foreign key: a 500, after the zip was stored."""
    from db import retention

    rt = settings_as(token_cache_seconds=60)
    client = _app(rt)
    uid, token = make_user()
    assert client.get("/v1/jobs", headers=auth(token)).status_code == 200  # the token is now cached
    with session_scope() as s:
        retention.purge_user(s, uid)
    assert_error(upload(client, token, photos_zip(1, 60)), 401, "unauthorized")
    assert stored(rt, uid) == set()
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.user_id == uid)) == 0


def test_a_deleted_photo_leaves_its_job_and_a_retry_still_finishes(clean_db, make_user, settings_as):
    """Deleting a photo of an ended job takes it out of the job's counts; before, a retry of the job
    waited for ever for the deleted photo (done + failed never reached the zip's count again)."""
    from tests.test_live import run_job_failing

    rt = settings_as(upload_retention=-1)
    client = _app(rt)
    _, token = make_user()
    h = auth(token)
    job = upload(client, token, photos_zip(3, 8)).get_json()["id"]
    run_job_failing(rt, job)  # every photo failed for a reason a retry can mend
    victim = client.get(f"/v1/jobs/{job}/photos", headers=h).get_json()["photos"][0]
    assert client.delete(f"/v1/photos/{victim['id']}", headers=h).status_code == 204
    p = client.get(f"/v1/jobs/{job}", headers=h).get_json()["progress"]
    assert (p["photos_total"], p["photos_failed"]) == (2, 2)

    resp = client.post(f"/v1/jobs/{job}/retry", headers=h)
    assert resp.status_code == 202 and resp.get_json()["retried_photos"] == 2
    run_job(rt, job)
    body = client.get(f"/v1/jobs/{job}", headers=h).get_json()
    assert body["status"] == "succeeded", body
    p = body["progress"]
    assert (p["photos_total"], p["photos_done"], p["photos_failed"], p["percent"]) == (2, 2, 0, 100.0)
    names = [x["entry"] for x in client.get(f"/v1/jobs/{job}/photos", headers=h).get_json()["photos"]]
    assert victim["entry"] not in names and len(names) == 2


def test_a_photo_deleted_from_a_job_cut_short_is_not_read_again_by_its_retry(clean_db, make_user, settings_as,
                                                                             monkeypatch):
    """A job cancelled while its zip was being read, with the zip kept: its retry reads the rest of
    the zip, and must not bring back a photo the user deleted in between."""
    from worker import ingest

    rt = settings_as(upload_retention=-1)
    client = _app(rt)
    _, token = make_user()
    h = auth(token)
    n = 27
    job = upload(client, token, photos_zip(n, 9)).get_json()["id"]
    real_add = ingest.photos.add_stored_photo

    def cancel_at_entry_25(photo_id, job_id, user_id, index, *args):
        if index == 25:
            client.delete(f"/v1/jobs/{job}", headers=h)  # the user cancels while entry 25 is read
        return real_add(photo_id, job_id, user_id, index, *args)

    monkeypatch.setattr(ingest.photos, "add_stored_photo", cancel_at_entry_25)
    run_job(rt, job)
    monkeypatch.undo()
    assert client.get(f"/v1/jobs/{job}", headers=h).get_json()["status"] == "cancelled"
    listed = client.get(f"/v1/jobs/{job}/photos?limit=100", headers=h).get_json()["photos"]
    assert len(listed) == 25
    victim = listed[0]
    assert client.delete(f"/v1/photos/{victim['id']}", headers=h).status_code == 204

    assert client.post(f"/v1/jobs/{job}/retry", headers=h).status_code == 202
    run_job(rt, job)
    body = client.get(f"/v1/jobs/{job}", headers=h).get_json()
    assert body["status"] == "succeeded", body
    assert (body["progress"]["photos_total"], body["progress"]["photos_done"]) == (n - 1, n - 1)
    names = [x["entry"] for x in client.get(f"/v1/jobs/{job}/photos?limit=100", headers=h).get_json()["photos"]]
    assert victim["entry"] not in names and len(names) == n - 1
