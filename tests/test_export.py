"""Catalogue exports on the real services (PostgreSQL, Redis, the moto S3 server), fake segmenter:
the zip is valid COCO with every photo and cut-out byte for byte, corrections show, the training
importer reads it back, other users never see it, progress moves, the task is safe to run twice,
failures say so, the reaper re-sends a lost export, and `wardrobe export` downloads one."""
from __future__ import annotations

import base64
import io
import json
import threading
import uuid
import zipfile
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select, update

from core.taxonomy import CLASSES
from db.models import Export, Item, Photo, utcnow
from db.session import session_scope
from tests.conftest import REDIS_URL, auth, example_photos, free_port, zip_bytes
from tests.helpers import run_job
from tests.fakes import FAKE_SEGMENTER
from tests.test_api import assert_error, upload
from worker import export as exporting

N_PHOTOS = 3


def catalogue(client, rt, token) -> tuple[list[dict], dict, dict]:
    """Three photos segmented (two items each); one item's class corrected, another rejected: every item
    as the API shows it now, the corrected one and the rejected one."""
    run_job(rt, upload(client, token, zip_bytes(example_photos(N_PHOTOS))).get_json()["id"])
    h = auth(token)
    items = client.get("/v1/items?limit=200", headers=h).get_json()["items"]
    assert len(items) == 2 * N_PHOTOS
    fixed = client.patch(f"/v1/items/{items[0]['id']}", json={"category": "jumpsuit"}, headers=h).get_json()
    rejected = client.patch(f"/v1/items/{items[1]['id']}", json={"not_garment": True}, headers=h).get_json()
    assert fixed["class_id"] == 19 and rejected["status"] == "not_garment"
    return client.get("/v1/items?limit=200&include_not_garment=true", headers=h).get_json()["items"], fixed, rejected


def start(client, token) -> dict:
    r = client.post("/v1/exports", headers=auth(token))
    assert r.status_code == 202, r.get_data(as_text=True)
    body = r.get_json()
    assert r.headers["Location"] == f"/v1/exports/{body['id']}" and int(r.headers["Retry-After"]) > 0
    return body


class WatchedStorage:
    """The real storage, asking the API for the export's progress each time a photo is read."""

    def __init__(self, inner, on_photo):
        self.inner, self.on_photo = inner, on_photo

    def iter_chunks(self, key, chunk_size=1024 * 1024):
        if "/photos/" in key:
            self.on_photo()
        return self.inner.iter_chunks(key, chunk_size)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def download(client, token, export_id) -> bytes:
    r = client.get(f"/v1/exports/{export_id}/download", headers=auth(token))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Content-Type"] == "application/zip"
    assert r.headers["Content-Disposition"].startswith('attachment; filename="wardrobe-export-')
    assert int(r.headers["Content-Length"]) == len(r.data)
    return r.data


def test_export_is_coco_with_every_file_and_reimports(client, make_user, rt, tmp_path):
    from training.fashionpedia import import_dataset

    _, token = make_user("exporter")
    h = auth(token)
    items, fixed, rejected = catalogue(client, rt, token)
    r = redis.Redis.from_url(REDIS_URL)
    r.delete("export")
    queued = start(client, token)
    assert queued["status"] == "queued" and queued["progress"]["photos_done"] == 0 and queued["size_bytes"] is None
    # one message on the export queue, carrying the export's id and nothing else
    (msg,) = r.lrange("export", 0, -1)
    assert json.loads(base64.b64decode(json.loads(msg)["body"]))[0] == [queued["id"]]
    assert_error(client.get(f"/v1/exports/{queued['id']}/download", headers=h), 409, "export_not_ready")
    assert client.post("/v1/exports", headers=h).get_json()["id"] == queued["id"]  # one in the making at a time

    seen = []
    watched = type(rt)(settings=rt.settings, storage=WatchedStorage(
        rt.storage, lambda: seen.append(client.get(f"/v1/exports/{queued['id']}", headers=h).get_json())))
    counts = exporting.run(queued["id"], watched, progress_every=1)
    assert counts["photos"] == N_PHOTOS and counts["items"] == 2 * N_PHOTOS and counts["not_garment"] == 1
    # progress moved in the table while the zip was being built, one photo at a time
    assert [e["status"] for e in seen] == ["running"] * N_PHOTOS
    assert [e["progress"]["photos_done"] for e in seen] == list(range(N_PHOTOS))
    assert {e["progress"]["photos_total"] for e in seen} == {N_PHOTOS}
    assert {e["progress"]["items_total"] for e in seen} == {2 * N_PHOTOS}
    done = client.get(f"/v1/exports/{queued['id']}", headers=h).get_json()
    assert done["status"] == "succeeded" and done["error"] is None and done["finished_at"]
    p = done["progress"]
    assert (p["photos_done"], p["items_done"], p["percent"]) == (p["photos_total"], p["items_total"], 100.0)
    assert p["photos_total"] == N_PHOTOS and p["items_total"] == 2 * N_PHOTOS

    data = download(client, token, queued["id"])
    assert done["size_bytes"] == len(data)
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert zf.testzip() is None
    doc = json.loads(zf.read("annotations.json"))
    assert "wardrobe_not_garment" in zf.read("README.txt").decode()
    with session_scope() as s:
        photos = {str(p.id): p for p in s.scalars(select(Photo))}
        rows = {str(i.id): i for i in s.scalars(select(Item))}
    # every photo and cut-out, byte for byte as stored
    names = set(zf.namelist())
    assert names == ({"README.txt", "annotations.json"} | {f"photos/{pid}.jpg" for pid in photos}
                     | {f"cutouts/{iid}.{row.cutout_key.rsplit('.', 1)[1]}" for iid, row in rows.items()})
    for pid, photo in photos.items():
        assert zf.read(f"photos/{pid}.jpg") == rt.storage.get_bytes(photo.storage_key)
    for iid, row in rows.items():
        assert zf.read(f"cutouts/{iid}.{row.cutout_key.rsplit('.', 1)[1]}") == rt.storage.get_bytes(row.cutout_key)

    # valid COCO: ids unique, every annotation on an image of the file, categories the 23, polygons inside the photo
    assert set(doc) >= {"info", "licenses", "images", "annotations", "categories"}
    assert doc["categories"] == [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in CLASSES]
    images = {img["id"]: img for img in doc["images"]}
    assert len(images) == len(doc["images"]) == N_PHOTOS
    for img in doc["images"]:
        photo = photos[img["wardrobe"]["photo_id"]]
        assert img["file_name"] == f"photos/{photo.id}.jpg" and (img["width"], img["height"]) == (photo.width, photo.height)
        assert img["wardrobe"]["entry_name"] == photo.entry_name and img["wardrobe"]["job_id"] == str(photo.job_id)
        assert img["wardrobe"]["uploaded_at"]
    anns = doc["annotations"] + doc["wardrobe_not_garment"]
    assert len({a["id"] for a in anns}) == len(anns) == 2 * N_PHOTOS
    assert [a["wardrobe"]["item_id"] for a in doc["wardrobe_not_garment"]] == [rejected["id"]]
    by_item = {a["wardrobe"]["item_id"]: a for a in anns}
    for a in anns:
        img = images[a["image_id"]]
        assert a["category_id"] in {c.id for c in CLASSES} and a["iscrowd"] == 0
        assert a["segmentation"] and all(len(ring) >= 6 and len(ring) % 2 == 0 for ring in a["segmentation"])
        for ring in a["segmentation"]:
            assert all(0 <= x <= img["width"] for x in ring[0::2]) and all(0 <= y <= img["height"] for y in ring[1::2])
        x, y, w, hh = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= img["width"] and y + hh <= img["height"] and a["area"] > 0
        item = next(i for i in items if i["id"] == a["wardrobe"]["item_id"])
        assert img["wardrobe"]["photo_id"] == item["photo_id"]
        assert a["segmentation"] == [[c for pt in ring for c in pt] for ring in item["mask"]["polygons"]]
        assert a["wardrobe"]["cutout"] in names and a["wardrobe"]["colors"] == item["colors"]
    # the corrections show: the chosen class is the category, the model's is kept beside it
    assert by_item[fixed["id"]]["category_id"] == 19 and by_item[fixed["id"]]["wardrobe"]["corrected"]
    assert by_item[fixed["id"]]["wardrobe"]["original_class_id"] == fixed["original_class_id"] is not None
    assert by_item[fixed["id"]]["wardrobe"]["original_category"] == CLASSES[fixed["original_class_id"]].name
    assert by_item[rejected["id"]]["wardrobe"]["status"] == "not_garment"

    # `wardrobe import-fashionpedia` reads it back: one label line per kept item, its class and its outline
    zf.extractall(tmp_path / "unzipped")
    ann_json = tmp_path / "unzipped" / "annotations.json"
    report = import_dataset(ann_json, ann_json, tmp_path / "unzipped", tmp_path / "yolo")
    assert report["train"]["instances"] == 2 * N_PHOTOS - 1 and not report["train"]["dropped_categories"]
    for pid, photo in photos.items():
        lines = (tmp_path / "yolo" / "labels" / "train" / f"{pid}.txt").read_text().splitlines()
        kept = sorted((i for i in items if i["photo_id"] == pid and i["id"] != rejected["id"]),
                      key=lambda i: rows[i["id"]].instance_index)
        assert [int(line.split()[0]) for line in lines] == [i["class_id"] for i in kept]
        for line, item in zip(lines, kept):
            coords = [float(v) for v in line.split()[1:]]
            (ring,) = item["mask"]["polygons"]
            want = [c / (photo.width if k % 2 == 0 else photo.height) for k, c in enumerate(v for pt in ring for v in pt)]
            assert coords == pytest.approx(want, abs=2e-6)


def test_other_users_never_see_an_export_and_the_short_route(client, make_user, rt):
    _, alice = make_user("alice")
    _, bob = make_user("bob")
    run_job(rt, upload(client, alice, zip_bytes(example_photos(1))).get_json()["id"])
    assert_error(client.get("/v1/export", headers=auth(alice)), 404, "no_export")
    e = start(client, alice)
    err = client.get("/v1/export", headers=auth(alice))
    assert_error(err, 404, "no_export")
    assert e["id"] in err.get_json()["error"]["message"]  # says where the one in the making is
    exporting.run(e["id"], rt)
    r = client.get("/v1/export", headers=auth(alice))
    assert r.status_code == 303 and r.headers["Location"] == f"/v1/exports/{e['id']}/download"
    assert client.get(r.headers["Location"], headers=auth(alice)).status_code == 200
    for path in (f"/v1/exports/{e['id']}", f"/v1/exports/{e['id']}/download"):
        assert_error(client.get(path, headers=auth(bob)), 404, "not_found")
    assert_error(client.delete(f"/v1/exports/{e['id']}", headers=auth(bob)), 404, "not_found")
    assert client.get("/v1/exports", headers=auth(bob)).get_json() == {"exports": [], "next_cursor": None}
    assert_error(client.get("/v1/export", headers=auth(bob)), 404, "no_export")
    assert_error(client.get(f"/v1/exports/{e['id']}"), 401, "unauthorized")
    assert_error(client.get("/v1/exports/not-a-uuid", headers=auth(alice)), 404, "not_found")
    assert client.get(f"/v1/exports/{e['id']}", headers=auth(alice)).get_json()["status"] == "succeeded"


def test_newest_first_twice_safe_and_deleted(client, make_user, rt):
    _, token = make_user()
    h = auth(token)
    run_job(rt, upload(client, token, zip_bytes(example_photos(1))).get_json()["id"])
    first = start(client, token)
    exporting.run(first["id"], rt)
    zip1 = download(client, token, first["id"])
    assert exporting.run(first["id"], rt) is None  # delivered again: it already succeeded, nothing changes
    assert download(client, token, first["id"]) == zip1
    second = start(client, token)
    assert second["id"] != first["id"]
    listed = client.get("/v1/exports?limit=1", headers=h).get_json()
    assert [e["id"] for e in listed["exports"]] == [second["id"]] and listed["next_cursor"]
    more = client.get(f"/v1/exports?limit=1&cursor={listed['next_cursor']}", headers=h).get_json()
    assert [e["id"] for e in more["exports"]] == [first["id"]] and more["next_cursor"] is None
    # a run cut short (the worker died): the re-sent run starts over and finishes it
    with session_scope() as s:
        s.execute(update(Export).where(Export.id == uuid.UUID(second["id"])).values(status="running", photos_done=1))
    assert exporting.run(second["id"], rt)["photos"] == 1
    with session_scope() as s:
        stored = s.get(Export, uuid.UUID(second["id"])).storage_key
    assert rt.storage.size(stored) == client.get(f"/v1/exports/{second['id']}", headers=h).get_json()["size_bytes"]
    # deleting an export removes its zip; deleting one still queued stops its run before it starts
    assert client.delete(f"/v1/exports/{second['id']}", headers=h).status_code == 204
    assert not rt.storage.exists(stored)
    assert_error(client.get(f"/v1/exports/{second['id']}", headers=h), 404, "not_found")
    third = start(client, token)
    assert client.delete(f"/v1/exports/{third['id']}", headers=h).status_code == 204
    assert exporting.run(third["id"], rt) is None
    assert [e["id"] for e in client.get("/v1/exports", headers=h).get_json()["exports"]] == [first["id"]]


def test_an_export_deleted_while_it_runs_stops_and_leaves_no_zip(client, make_user, rt):
    _, token = make_user()
    h = auth(token)
    run_job(rt, upload(client, token, zip_bytes(example_photos(2))).get_json()["id"])
    e = start(client, token)
    deleted = []

    def delete_once():
        if not deleted:
            deleted.append(client.delete(f"/v1/exports/{e['id']}", headers=h).status_code)

    watched = type(rt)(settings=rt.settings, storage=WatchedStorage(rt.storage, delete_once))
    assert exporting.run(e["id"], watched, progress_every=1) is None
    assert deleted == [204]
    uid = client.get("/v1/me", headers=h).get_json()["id"]
    assert not [o for o in rt.storage.list(f"users/{uid}/exports/")]


def test_an_export_past_the_size_cap_fails_with_a_clear_error_and_stores_nothing(client, make_user, rt):
    """WARDROBE_EXPORT_MAX_BYTES: the zip is built on the worker's temp disk, so a catalogue too big
    for it fails with its own code and a message that says what to do, and no zip is stored."""
    import dataclasses

    _, token = make_user()
    h = auth(token)
    run_job(rt, upload(client, token, zip_bytes(example_photos(3))).get_json()["id"])
    capped = type(rt)(settings=dataclasses.replace(rt.settings, export_max_bytes=2000), storage=rt.storage)  # README.txt fits, one photo passes it
    e = start(client, token)
    assert exporting.run(e["id"], capped) is None
    body = client.get(f"/v1/exports/{e['id']}", headers=h).get_json()
    assert body["status"] == "failed" and body["error"]["code"] == "export_too_large", body
    assert "WARDROBE_EXPORT_MAX_BYTES" in body["error"]["message"] and "after 1 of 3 photos" in body["error"]["message"]
    assert_error(client.get(f"/v1/exports/{e['id']}/download", headers=h), 409, "export_not_ready")
    uid = client.get("/v1/me", headers=h).get_json()["id"]
    assert not list(rt.storage.list(f"users/{uid}/exports/"))
    # under the cap (the default, 10 GiB) the same catalogue exports; 0 turns the cap off
    for limit in (rt.settings.export_max_bytes, 0):
        ok = type(rt)(settings=dataclasses.replace(rt.settings, export_max_bytes=limit), storage=rt.storage)
        assert exporting.run(start(client, token)["id"], ok)["photos"] == 3


def test_a_failing_export_is_retried_then_failed_with_a_code(client, make_user, rt, monkeypatch):
    """Storage that answers every read with an error (a bucket that is not there, on the real S3 server)."""
    from core.storage import open_storage
    from worker import tasks

    _, token = make_user()
    h = auth(token)
    run_job(rt, upload(client, token, zip_bytes(example_photos(1))).get_json()["id"])
    e = start(client, token)
    broken = type(rt)(settings=rt.settings, storage=open_storage(f"s3://missing-{uuid.uuid4().hex[:8]}",
                                                                 endpoint_url=rt.settings.s3_endpoint_url, max_attempts=1))
    monkeypatch.setattr(tasks, "runtime", lambda: broken)
    tasks.export.apply(args=[e["id"]])  # eager: each retry runs at once, until the last gives up
    body = client.get(f"/v1/exports/{e['id']}", headers=h).get_json()
    assert body["status"] == "failed" and body["error"]["code"] == "storage_unavailable" and body["finished_at"]
    assert_error(client.get(f"/v1/exports/{e['id']}/download", headers=h), 409, "export_not_ready")
    assert_error(client.get("/v1/export", headers=h), 404, "no_export")
    assert start(client, token)["id"] != e["id"]  # a failed export does not block the next


def test_the_reaper_resends_an_export_whose_message_was_lost(make_user, rt):
    from db import exports
    from worker.reaper import reap_exports

    uid, _ = make_user()
    with session_scope() as s:
        lost, _ = exports.create(s, uid)
        s.execute(update(Export).where(Export.id == lost.id).values(updated_at=utcnow() - timedelta(seconds=300)))
        s.commit()
    sent: list = []
    assert reap_exports(rt, sent.append, stale_after=60, in_broker=lambda: {str(lost.id)}) == 0  # still waiting
    assert reap_exports(rt, sent.append, stale_after=60, in_broker=lambda: set()) == 1 and sent == [lost.id]
    assert reap_exports(rt, sent.append, stale_after=60, in_broker=lambda: set()) == 0  # touched: not again at once
    assert exporting.run(lost.id, rt)["photos"] == 0  # an empty catalogue is a valid, empty export


def test_wardrobe_export_downloads_the_zip(app, make_user, rt, settings, tmp_path):
    """The CLI against the API over HTTP, with a real worker on the export queue."""
    from werkzeug.serving import make_server

    from tests.procs import Proc, service_env
    from tests.test_cli import _wardrobe

    _, token = make_user()
    client = app.test_client()
    run_job(rt, upload(client, token, zip_bytes(example_photos(2))).get_json()["id"])
    redis.Redis.from_url(REDIS_URL).delete("export")
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = service_env(settings, REDIS_URL, WARDROBE_SEGMENTER=FAKE_SEGMENTER, WARDROBE_PRELOAD_MODEL="false")
    worker = Proc(["worker", "--queues", "export", "--concurrency", "1", "--pool", "solo"], env,
                  tmp_path / "worker.log").start()
    try:
        out = tmp_path / "mine.zip"
        r = _wardrobe("export", "--url", f"http://127.0.0.1:{port}", "--token", token, "--out", str(out), timeout=240)
        assert r.returncode == 0, r.stderr + worker.tail()
        assert r.stdout.strip() == str(out) and "2 photos, 4 items" in r.stderr
    finally:
        worker.stop()
        server.shutdown()
    (e,) = client.get("/v1/exports", headers=auth(token)).get_json()["exports"]
    assert out.read_bytes() == client.get(f"/v1/exports/{e['id']}/download", headers=auth(token)).data
    with zipfile.ZipFile(out) as zf:
        assert len(json.loads(zf.read("annotations.json"))["annotations"]) == 4


def test_a_finished_export_expires_after_its_retention_and_stray_zips_are_swept(client, make_user, rt):
    from dataclasses import replace

    from core.objects import keys
    from services.sweeper import sweep

    uid, token = make_user()
    h = auth(token)
    run_job(rt, upload(client, token, zip_bytes(example_photos(1))).get_json()["id"])
    old, new = start(client, token), None
    exporting.run(old["id"], rt)
    new = start(client, token)
    exporting.run(new["id"], rt)
    shown = client.get(f"/v1/exports/{old['id']}", headers=h).get_json()
    finished = shown["finished_at"]
    assert shown["status"] == "succeeded" and shown["expires_at"] > finished  # the default: kept a week
    with session_scope() as s:
        s.execute(update(Export).where(Export.id == uuid.UUID(old["id"]))
                  .values(finished_at=utcnow() - timedelta(days=2)))
        old_key = s.get(Export, uuid.UUID(old["id"])).storage_key
        new_key = s.get(Export, uuid.UUID(new["id"])).storage_key
    stray = keys.export(uid, uuid.uuid4())  # a zip no export row names (a crash before its row)
    rt.storage.put_bytes(stray, b"zip of an export whose row is gone")
    kept_a_day = type(rt)(settings=replace(rt.settings, export_retention=86400), storage=rt.storage)

    # the bucket is shared by the tests: earlier tests' users (and their exports) are gone, their zips stray too
    dry = sweep(kept_a_day, dry_run=True, grace=-5)
    assert dry["expired_exports"] == 1 and dry["unreferenced"]["exports"] >= 1 and dry["deleted"] == 0
    assert rt.storage.exists(stray) and rt.storage.exists(old_key)
    assert client.get(f"/v1/exports/{old['id']}", headers=h).get_json()["status"] == "succeeded"  # a dry run changes nothing

    real = sweep(kept_a_day, grace=-5)
    assert real["expired_exports"] == 1 and real["deleted"] >= 1
    assert not rt.storage.exists(old_key) and not rt.storage.exists(stray) and rt.storage.exists(new_key)
    gone = client.get(f"/v1/exports/{old['id']}", headers=h).get_json()
    assert (gone["status"], gone["expires_at"]) == ("expired", None)
    assert_error(client.get(f"/v1/exports/{old['id']}/download", headers=h), 410, "export_expired")
    assert download(client, token, new["id"])  # the newer one is within its day
    assert client.get("/v1/export", headers=h).headers["Location"] == f"/v1/exports/{new['id']}/download"
    assert client.delete(f"/v1/exports/{old['id']}", headers=h).status_code == 204  # an expired one can be deleted
    forever = type(rt)(settings=replace(rt.settings, export_retention=-1), storage=rt.storage)
    with session_scope() as s:
        s.execute(update(Export).where(Export.id == uuid.UUID(new["id"]))
                  .values(finished_at=utcnow() - timedelta(days=400)))
    assert sweep(forever, grace=-5)["expired_exports"] == 0 and rt.storage.exists(new_key)


def test_a_ready_export_has_a_signed_download_link_for_plain_links(client, make_user, rt):
    _, token = make_user()
    _, other = make_user()
    run_job(rt, upload(client, token, zip_bytes(example_photos(1))).get_json()["id"])
    e = start(client, token)
    assert "download_signed" not in e["links"]  # not before the zip is ready
    exporting.run(e["id"], rt)
    body = client.get(f"/v1/exports/{e['id']}", headers=auth(token)).get_json()
    signed = body["links"]["download_signed"]
    assert signed.startswith(f"/v1/exports/{e['id']}/download?expires=")
    assert client.get("/v1/exports", headers=auth(token)).get_json()["exports"][0]["links"]["download_signed"]
    r = client.get(signed)  # no Authorization header
    assert r.status_code == 200 and r.data == download(client, token, e["id"])
    assert_error(client.get(signed[:-2] + ("00" if not signed.endswith("00") else "11")), 404, "not_found")
    path, _, query = signed.partition("?")
    params = dict(p.split("=") for p in query.split("&"))
    expired = f"{path}?expires={int(params['expires']) - 10**6}&sig={params['sig']}"
    assert_error(client.get(expired), 404, "not_found")
    # another user's export with a signature made for it: still only by that signature
    e2 = start(client, other)
    assert_error(client.get(signed.replace(e["id"], e2["id"])), 404, "not_found")
    assert_error(client.get(f"/v1/exports/{e['id']}/download"), 401, "unauthorized")


def test_an_export_past_the_task_time_limit_fails_at_once_and_says_so(client, make_user, rt, monkeypatch):
    """Each run of an export starts the zip over, so one that ran out of time would run out again:
    retrying it only spent the worker's time (six times the limit) before failing with no reason."""
    from celery.exceptions import SoftTimeLimitExceeded

    from worker import tasks

    _, token = make_user()
    h = auth(token)
    run_job(rt, upload(client, token, zip_bytes(example_photos(1))).get_json()["id"])
    e = start(client, token)
    runs = []

    def out_of_time(self, out):
        runs.append(1)
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(exporting.Builder, "build", out_of_time)
    tasks.export.apply(args=[e["id"]])
    body = client.get(f"/v1/exports/{e['id']}", headers=h).get_json()
    assert len(runs) == 1
    assert body["status"] == "failed" and body["error"]["code"] == "export_timed_out"
    assert "WARDROBE_TASK_TIME_LIMIT" in body["error"]["message"]


def test_a_user_keeps_at_most_max_exports_the_newest_replacing_the_oldest_and_they_count_in_the_quota(
        client, make_user, rt):
    """Issue 36 #3: every export was a full copy of the catalogue, kept a week, outside the quota, with
    no limit on how many."""
    from dataclasses import replace

    from services.bootup import bootup

    uid, token = make_user()
    h = auth(token)
    run_job(rt, upload(client, token, zip_bytes(example_photos(1))).get_json()["id"])
    two = bootup(replace(rt.settings, max_exports=2, max_stored_bytes=0), force=True)
    try:
        made = []
        for _ in range(3):
            made.append(start(client, token)["id"])
            exporting.run(made[-1], two)
        shown = {e["id"]: e for e in client.get("/v1/exports", headers=h).get_json()["exports"]}
        assert [shown[i]["status"] for i in made] == ["expired", "succeeded", "succeeded"]  # the oldest replaced
        gone = client.get(f"/v1/exports/{made[0]}/download", headers=h)
        assert_error(gone, 410, "export_expired")
        assert "WARDROBE_MAX_EXPORTS" in gone.get_json()["error"]["message"]
        zips = [o for o in rt.storage.list(f"users/{uid}/exports/")]
        assert sorted(o.key.rsplit("/", 1)[1][:36] for o in zips) == sorted(made[1:])  # its zip deleted at once

        # exports count in the quota: one that would pass it fails with a clear error and keeps nothing,
        # and the exports it would have replaced stay
        from db import quota

        with session_scope() as s:
            used = quota.used(s, uid, two.settings)
            one_zip = zips[0].size
        assert used >= sum(o.size for o in zips) > 0
        # (the same catalogue: the new zip is about as large as the one it would replace)
        tight = bootup(replace(two.settings, max_stored_bytes=used - one_zip // 2), force=True)
        late = start(client, token)["id"]
        exporting.run(late, tight)
        body = client.get(f"/v1/exports/{late}", headers=h).get_json()
        assert body["status"] == "failed" and body["error"]["code"] == "storage_quota_exceeded", body
        assert "WARDROBE_MAX_STORED_BYTES" in body["error"]["message"]
        assert len(list(rt.storage.list(f"users/{uid}/exports/"))) == 2
        assert [client.get(f"/v1/exports/{i}", headers=h).get_json()["status"] for i in made[1:]] == ["succeeded"] * 2
        # with room for it once the oldest is replaced, it succeeds
        again = start(client, token)["id"]
        exporting.run(again, bootup(replace(two.settings, max_stored_bytes=used + 1000), force=True))
        assert client.get(f"/v1/exports/{again}", headers=h).get_json()["status"] == "succeeded"
        assert client.get(f"/v1/exports/{made[1]}", headers=h).get_json()["status"] == "expired"
        # a user already at the limit is refused at once: the export could not fit
        from api.app import create_app

        with session_scope() as s:
            full = create_app(replace(two.settings, max_stored_bytes=quota.used(s, uid, two.settings))).test_client()
        assert_error(full.post("/v1/exports", headers=h), 413, "storage_quota_exceeded")
    finally:
        bootup(rt.settings, force=True)
