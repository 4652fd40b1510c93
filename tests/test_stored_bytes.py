"""What a user stores, counted and gone when deleted (issue 36 #2, #5, #13), on real PostgreSQL and the
moto S3 server: the quota counts photos and cut-outs as well as zips, refuses at upload and at ingest
(in-process, and over HTTP with a real API and worker, exports counted); a cancel leaves no cut-outs and
no rows behind; deleting a job's data leaves no file in the bucket."""
from __future__ import annotations

import io
import uuid

import numpy as np
from PIL import Image
from sqlalchemy import func, select

from db.models import Export, Item, Photo, PhotoStatus, User
from db.session import session_scope
from tests.fakes import FakeSegmenter
from tests.conftest import auth, free_port, zip_bytes
from tests.helpers import run_job
from tests.test_retention import _app, assert_error, photos_zip, settings_as, stored, upload  # noqa: F401 - fixture
from worker import ingest, segment


def sizes(rt, user_id, *kinds: str) -> int:
    """Bytes of the user's objects in the bucket, of these kinds (photos, cutouts, uploads, ...)."""
    return sum(o.size for o in rt.storage.list(f"users/{user_id}/") if o.key.split("/")[2] in kinds)


def gradients_zip(n: int, side: int = 384, seed: int = 0) -> bytes:
    """PNG gradients: small in the zip, several times larger once stored as JPEG photos and WebP
    cut-outs (the report's 229 KiB zip of gradients stored 3.2 MB)."""
    out = {}
    x = np.linspace(0, 255, side, dtype=np.float32)
    for i in range(n):
        img = np.stack([np.add.outer(x, x) / 2, np.tile(x, (side, 1)), np.full((side, side), (31 * i + 97 * seed) % 256)], -1)
        buf = io.BytesIO()
        Image.fromarray(img.astype(np.uint8)).save(buf, "PNG")
        out[f"g{i}.png"] = buf.getvalue()
    return zip_bytes(out)


def stored_bytes(user_id) -> int:
    """The user's photos and cut-outs as the quota counts them (users.stored_bytes)."""
    with session_scope() as s:
        return s.scalar(select(User.stored_bytes).where(User.id == user_id))


def test_a_cancel_while_segmenting_leaves_no_cutouts_and_deleting_the_data_leaves_no_file(clean_db, make_user,
                                                                                          settings_as):
    """Issue 36 #5: cancel a job while it is being segmented, and the cut-outs of photos that got no
    rows stayed; DELETE /v1/jobs/<id>/data then left them in the bucket (until a --beat worker's sweep)."""
    rt = settings_as(upload_retention=0)
    client = _app(rt)
    uid, token = make_user()
    job = upload(client, token, photos_zip(6, 3)).get_json()["id"]
    chunks: list[list] = []
    ingest.run(job, rt, send_segment=lambda j, ids: chunks.append(list(ids)))
    before = stored(rt, uid)
    assert sum("/photos/" in k for k in before) == 6

    class CancelledMidway(FakeSegmenter):
        """The user cancels while the model works on the first photo (its cut-outs are stored after)."""

        def segment(self, images):
            if client.get(f"/v1/jobs/{job}", headers=auth(token)).get_json()["status"] == "running":
                assert client.delete(f"/v1/jobs/{job}", headers=auth(token)).status_code == 200
            return super().segment(images)

    for ids in chunks:
        segment.run(job, ids, rt, CancelledMidway())
    assert client.get(f"/v1/jobs/{job}", headers=auth(token)).get_json()["status"] == "cancelled"
    with session_scope() as s:
        named = set(s.scalars(select(Item.cutout_key).join(Photo, Photo.id == Item.photo_id)
                              .where(Photo.job_id == uuid.UUID(job))))
    cutouts = {k for k in stored(rt, uid) if "/cutouts/" in k}
    assert cutouts == named  # every cut-out left is an item's: none of a photo the cancel closed

    assert client.delete(f"/v1/jobs/{job}/data", headers=auth(token)).status_code == 204
    assert stored(rt, uid) == set()  # photos, cut-outs and the zip: every file of the job, at once
    assert stored_bytes(uid) == 0


def test_a_cancel_during_ingest_adds_no_rows_behind_it(clean_db, make_user, settings_as, monkeypatch):
    """Issue 36 #13: ingest looked for a cancel only every 25 entries, so a cancel could be followed by
    ~25 more pending photos (with their files) that no worker would ever segment."""
    rt = settings_as(upload_retention=-1)
    client = _app(rt)
    uid, token = make_user()
    job = upload(client, token, photos_zip(30, 4)).get_json()["id"]
    real_add = ingest.photos.add_stored_photo

    def cancel_at_entry_5(photo_id, job_id, user_id, index, *args):
        if index == 5:
            assert client.delete(f"/v1/jobs/{job}", headers=auth(token)).status_code == 200
        return real_add(photo_id, job_id, user_id, index, *args)

    monkeypatch.setattr(ingest.photos, "add_stored_photo", cancel_at_entry_5)
    run_job(rt, job)
    monkeypatch.undo()
    with session_scope() as s:
        rows = s.execute(select(Photo.status, Photo.storage_key).where(Photo.job_id == uuid.UUID(job))).all()
    assert len(rows) == 5 and not [r for r in rows if r.status == PhotoStatus.PENDING.value]
    photo_files = {k for k in stored(rt, uid) if "/photos/" in k}
    assert photo_files == {r.storage_key for r in rows}  # no file without its row
    assert stored_bytes(uid) == sizes(rt, uid, "photos")


def test_the_quota_counts_photos_and_cutouts_and_refuses_at_upload_and_at_ingest(clean_db, make_user, settings_as):
    """Issue 36 #2: the quota counted zip bytes only. A zip of PNG gradients stored several times its
    size in photos and cut-outs; under a limit above the zips, both it and the next upload were accepted."""
    from db import quota

    rt = settings_as(upload_retention=0, max_stored_bytes=0, max_uploads_per_hour=0)
    client = _app(rt)
    uid, token = make_user()
    first_zip = gradients_zip(3, seed=1)
    first = upload(client, token, first_zip).get_json()["id"]
    run_job(rt, first)
    used = sizes(rt, uid, "photos", "cutouts")
    assert stored_bytes(uid) == used > 0  # counted exactly, in the same transactions as the rows
    with session_scope() as s:
        assert quota.used(s, uid, rt.settings) == sizes(rt, uid, "photos", "cutouts", "uploads", "exports")

    # room for the next zip, not for what it stores: accepted, then its photos fail one by one at ingest
    data = gradients_zip(6, seed=2)
    assert len(data) * 3 < sizes(rt, uid, "photos", "cutouts") * 2  # 3 photos stored outweigh 6 in a zip
    rt = settings_as(upload_retention=-1, max_stored_bytes=used + len(data) + 2000, max_uploads_per_hour=0)
    client = _app(rt)
    second = upload(client, token, data)
    assert second.status_code == 202, second.get_json()
    run_job(rt, second.get_json()["id"])
    body = client.get(f"/v1/jobs/{second.get_json()['id']}", headers=auth(token)).get_json()
    codes = [e["code"] for e in body["errors"]]
    assert body["status"] in ("partially_succeeded", "failed") and "storage_quota_exceeded" in codes, body
    assert "WARDROBE_MAX_STORED_BYTES" in body["errors"][-1]["message"]
    with session_scope() as s:
        held = s.scalar(select(func.coalesce(func.sum(Photo.stored_bytes), 0)).where(Photo.user_id == uid))
    assert held <= rt.settings.max_stored_bytes  # photos are refused before they pass it
    assert stored_bytes(uid) == sizes(rt, uid, "photos", "cutouts")  # refused photos left no file and no bytes

    # an upload larger than the room left is refused at once, as JSON, before its job exists
    with session_scope() as s:
        room = rt.settings.max_stored_bytes - quota.used(s, uid, rt.settings)
    noise = np.random.default_rng(5).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG", quality=95)
    big = zip_bytes({"noise.jpg": buf.getvalue()})
    zips = [len(first_zip), len(data), len(big)]
    assert room < len(big) and sum(zips) < rt.settings.max_stored_bytes  # it would have fit beside the zips alone
    err = assert_error(upload(client, token, big), 413, "storage_quota_exceeded")
    assert "WARDROBE_MAX_STORED_BYTES" in err["message"]

    # deleting a job's data gives its bytes back exactly, and makes room
    assert client.delete(f"/v1/jobs/{first}/data", headers=auth(token)).status_code == 204
    assert stored_bytes(uid) == sizes(rt, uid, "photos", "cutouts")
    with session_scope() as s:
        assert quota.recount(s, uid) == stored_bytes(uid)
        assert quota.used(s, uid, rt.settings) == sizes(rt, uid, "photos", "cutouts", "uploads", "exports")
    assert upload(client, token, gradients_zip(2, seed=3)).status_code == 202


def _calibrate(rt, zips: list[bytes]) -> tuple[list[list[tuple[int, int]]], int]:
    """What each zip's photos store, in-process for a user of its own: per entry (photo bytes, cut-out
    bytes), in entry order; and the bytes of an export of the first zip's catalogue. The real worker
    stores the same bytes (the same code on the same photos), so a quota can be set between two photos."""
    from db import exports
    from tests.test_pipeline import new_job
    from worker import export as exporting

    with session_scope() as s:
        from db.users import create_user

        uid = create_user(s, f"calibration-{uuid.uuid4().hex[:6]}")[0].id
    per_zip, export_bytes = [], 0
    for n, data in enumerate(zips):
        job = new_job(rt, uid, data)
        run_job(rt, job)
        with session_scope() as s:
            photo_rows = s.execute(select(Photo.id, Photo.stored_bytes).where(Photo.job_id == job)
                                   .order_by(Photo.entry_index)).all()
            cut = dict(s.execute(select(Item.photo_id, func.sum(Item.cutout_bytes)).where(Item.job_id == job)
                                 .group_by(Item.photo_id)).all())
        per_zip.append([(r.stored_bytes, int(cut[r.id])) for r in photo_rows])
        if n == 0:
            with session_scope() as s:
                eid = exports.create(s, uid)[0].id
            assert exporting.run(eid, rt) is not None
            with session_scope() as s:
                export_bytes = s.get(Export, eid).size_bytes
    return per_zip, export_bytes


def test_quotas_over_http_with_a_real_api_and_worker(settings, rt, make_user, tmp_path):
    """Issue 36 #2, #3 through real processes (`wardrobe serve`, `wardrobe worker`, PostgreSQL, a private
    Redis, the moto S3 server), under a WARDROBE_MAX_STORED_BYTES set between two photos of a zip:
    a first job fits; two exports of it, the second replacing the first (WARDROBE_MAX_EXPORTS 1); a
    second zip, small enough to be accepted, stores photos until the next would pass the limit, and
    that photo and the rest fail with storage_quota_exceeded; a third upload, which would fit were the
    export not counted, is refused at upload with a 413 JSON error whose figures are the bytes stored."""
    import re

    import requests

    from tests.fakes import FAKE_SEGMENTER
    from tests.procs import Proc, RedisServer, service_env, wait_for
    from tests.test_restarts import _healthy

    zip1, zip2 = gradients_zip(2, seed=11), gradients_zip(5, seed=12)
    (photos1, photos2), export_guess = _calibrate(rt, [zip1, zip2])
    s1 = sum(p + c for p, c in photos1)
    # room for the second zip and two and a half of its photos, beside the first job and its export
    limit = s1 + export_guess + len(zip2) + photos2[0][0] + photos2[1][0] + photos2[2][0] // 2
    uid, token = make_user()
    h = {"Authorization": f"Bearer {token}"}
    redis = RedisServer(tmp_path).start()
    env = service_env(settings, redis.url, WARDROBE_SEGMENTER=FAKE_SEGMENTER, WARDROBE_MAX_STORED_BYTES=limit,
                      WARDROBE_MAX_EXPORTS=1, WARDROBE_UPLOAD_RETENTION=0, WARDROBE_MAX_UPLOADS_PER_HOUR=0)
    port = free_port()
    api = Proc(["serve", "--port", str(port), "--workers", "1"], env, tmp_path / "api.log").start()
    worker = Proc(["worker", "--concurrency", "1"], env, tmp_path / "worker.log").start()
    logs = lambda: api.tail() + worker.tail()  # noqa: E731

    def ended(path: str, active=("queued", "running")) -> dict:
        def done():
            body = requests.get(base + path, headers=h, timeout=60).json()
            return body if body["status"] not in active else None
        return wait_for(done, 120, path, interval=0.5, on_fail=logs)

    def post_zip(data: bytes):
        return requests.post(f"{base}/v1/uploads", data=data, timeout=60,
                             headers=h | {"Content-Type": "application/zip", "X-Filename": "photos.zip"})

    try:
        base = _healthy(port, api)
        r = post_zip(zip1)
        assert r.status_code == 202, r.text
        assert ended(f"/v1/jobs/{r.json()['id']}")["status"] == "succeeded"
        assert stored_bytes(uid) == s1 == sizes(rt, uid, "photos", "cutouts")  # the calibrated bytes, exactly

        first = requests.post(f"{base}/v1/exports", headers=h, timeout=60).json()
        first = ended(f"/v1/exports/{first['id']}")
        second = requests.post(f"{base}/v1/exports", headers=h, timeout=60).json()
        second = ended(f"/v1/exports/{second['id']}")
        assert first["status"] == second["status"] == "succeeded", (first, second)
        first = requests.get(f"{base}/v1/exports/{first['id']}", headers=h, timeout=60).json()
        assert first["status"] == "expired" and first["error"]["code"] == "export_replaced", first
        exported = second["size_bytes"]
        assert sizes(rt, uid, "exports") == exported  # the replaced zip is gone; the kept one is its size

        # the second zip fits beside what is stored; its photos do not
        room = limit - s1 - exported - len(zip2)
        assert room > 0
        fits = max(i for i in range(len(photos2) + 1) if sum(p for p, _ in photos2[:i]) <= room)
        assert fits == 2  # as set: two photos, and the third would pass the limit
        r = post_zip(zip2)
        assert r.status_code == 202, r.text
        job = ended(f"/v1/jobs/{r.json()['id']}")
        assert job["status"] == "partially_succeeded" and job["upload"]["bytes"] == len(zip2), job
        progress = job["progress"]
        assert (progress["photos_total"], progress["photos_done"], progress["photos_failed"], progress["items_found"]) \
            == (5, 2, 3, 4), progress
        assert [(e["entry"], e["code"]) for e in job["errors"]] == [
            (f"g{i}.png", "storage_quota_exceeded") for i in (2, 3, 4)], job["errors"]
        assert all(f"limit of {limit} bytes (WARDROBE_MAX_STORED_BYTES)" in e["message"] for e in job["errors"])
        held = s1 + sum(p + c for p, c in photos2[:2])
        assert stored_bytes(uid) == held == sizes(rt, uid, "photos", "cutouts")  # refused photos left nothing
        assert sizes(rt, uid, "uploads") == 0  # the ended jobs' zips are deleted (retention 0)

        # an upload that fits beside the photos and cut-outs, not beside the export as well: refused at once
        left = limit - held - exported
        pad = np.random.default_rng(7).integers(0, 256, left + exported // 2, dtype=np.uint8).tobytes()
        zip3 = zip_bytes({"pad.bin": pad})
        assert left < len(zip3) <= limit - held
        r = post_zip(zip3)
        assert r.status_code == 413 and r.headers["Content-Type"].startswith("application/json"), (r.status_code, r.text)
        err = r.json()["error"]
        assert err["code"] == "storage_quota_exceeded"
        figures = re.search(r"add up to (\d+) bytes, with this upload (\d+); the limit is (\d+)", err["message"])
        assert figures and tuple(map(int, figures.groups())) == (held + exported, held + exported + len(zip3), limit), err
        jobs = requests.get(f"{base}/v1/jobs", headers=h, timeout=60).json()
        assert len(jobs["jobs"]) == 2  # the refused upload made no job
    finally:
        api.kill()
        worker.kill()
        redis.kill()
