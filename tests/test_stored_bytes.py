"""What a user stores, counted and gone when deleted (issue 36 #2, #5, #13), on real PostgreSQL and the
moto S3 server: the quota counts photos and cut-outs as well as zips, refuses at upload and at ingest;
a cancel leaves no cut-outs and no rows behind; deleting a job's data leaves no file in the bucket."""
from __future__ import annotations

import io
import uuid

import numpy as np
from PIL import Image
from sqlalchemy import func, select

from db.models import Item, Photo, PhotoStatus, User
from db.session import session_scope
from tests.fakes import FakeSegmenter
from tests.conftest import auth, zip_bytes
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
