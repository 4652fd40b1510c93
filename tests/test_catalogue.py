"""Catalogue features: colours, near-duplicates, corrections, signed image URLs, sign-up,
and the corrections -> Fashionpedia export -> training import round trip."""
from __future__ import annotations

import io
import json
import time
from dataclasses import replace

import numpy as np
from PIL import Image

from tests.conftest import auth, example_photos, zip_bytes
from tests.helpers import run_job
from tests.test_api import assert_error, upload
from tests.test_pipeline import new_job
from worker.colors import dhash, dominant_colors, hamming, name_of


def solid_jpeg(rgb, w=120, h=160) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), rgb).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_colours_come_from_the_masked_pixels_only():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = (40, 90, 190)  # blue everywhere...
    rgba[10:30, 10:30, :3] = (200, 30, 35)  # ...but only this red square is inside the mask
    rgba[10:30, 10:30, 3] = 255
    colors = dominant_colors(rgba)
    assert [c["name"] for c in colors] == ["red"]
    assert colors[0]["fraction"] == 1.0 and colors[0]["hex"] == "#c81e23"
    two = rgba.copy()
    two[10:30, 10:15, :3] = (245, 245, 242)
    names = [c["name"] for c in dominant_colors(two, k=2)]
    assert names == ["red", "white"]


def test_colour_names():
    assert name_of((25, 35, 75)) == "navy"
    assert name_of((215, 195, 160)) == "beige"
    assert name_of((0, 0, 0)) == "black"


def test_perceptual_hash_is_stable_under_reencoding():
    rng = np.random.default_rng(3)
    base = np.zeros((64, 48, 4), np.uint8)
    base[..., :3] = rng.integers(0, 255, (64, 48, 3))
    base[..., 3] = 255
    noisy = base.copy()
    noisy[..., :3] = np.clip(base[..., :3].astype(int) + rng.integers(-6, 7, base[..., :3].shape), 0, 255)
    other = base.copy()
    other[..., :3] = rng.integers(0, 255, (64, 48, 3))
    assert hamming(dhash(base), dhash(noisy)) <= 6
    assert hamming(dhash(base), dhash(other)) > 12


def test_items_carry_colours_and_filter_by_colour(client, make_user, rt):
    _, token = make_user()
    job = upload(client, token, zip_bytes({"navy.jpg": solid_jpeg((25, 35, 75)), "red.jpg": solid_jpeg((200, 30, 35))}))
    run_job(rt, job.get_json()["id"])
    h = auth(token)
    navy = client.get("/v1/items?color=navy", headers=h).get_json()["items"]
    assert len(navy) == 2 and all(i["colors"][0]["name"] == "navy" and i["color"] == "navy" for i in navy)
    assert len(client.get("/v1/items?color=red", headers=h).get_json()["items"]) == 2
    assert_error(client.get("/v1/items?color=chartreuse", headers=h), 400, "invalid_parameter")


def test_near_duplicates_are_flagged_and_can_be_hidden(client, make_user, rt):
    _, token = make_user()
    h = auth(token)
    (name, data), = example_photos(1).items()
    run_job(rt, upload(client, token, zip_bytes({name: data})).get_json()["id"])
    # the same photo, re-encoded: different bytes (not a content-hash duplicate), same garments
    im = Image.open(io.BytesIO(data))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    run_job(rt, upload(client, token, zip_bytes({"again.jpg": buf.getvalue()})).get_json()["id"])
    items = client.get("/v1/items", headers=h).get_json()["items"]
    assert len(items) == 4
    dups = [i for i in items if i["duplicate_of"]]
    assert len(dups) == 2
    originals = {i["id"] for i in items if not i["duplicate_of"]}
    assert {d["duplicate_of"] for d in dups} == originals
    assert {i["id"] for i in client.get("/v1/items?hide_duplicates=true", headers=h).get_json()["items"]} == originals


def test_near_duplicate_rules(make_user, rt):
    """Same class and colour, at most 6 of 64 hash bits apart, a box of similar shape; never an
    item of the same photo; earlier photos of the same batch count; the closest candidate wins."""
    import uuid

    from sqlalchemy import select

    from db.models import Item
    from db.session import session_scope
    from db.items import flag_near_duplicates

    uid, _ = make_user()
    run_job(rt, new_job(rt, uid, zip_bytes(example_photos(1))))
    with session_scope() as s:
        known = {i.class_id: i for i in s.scalars(select(Item).where(Item.user_id == uid))}
        a = known[2]  # the fake segmenter's top
        a_id, a_color, a_hash, a_bbox = a.id, a.color, a.phash, list(a.bbox)

    def like(flip_bits=0, color=None, bbox=None, phash=None) -> Item:
        h = (a_hash if phash is None else phash) ^ ((1 << flip_bits) - 1)
        return Item(id=uuid.uuid4(), class_id=2, color=color or a_color, phash=h, bbox=bbox or a_bbox)

    x1, y1, x2, y2 = a_bbox
    close, far, squat, other_colour = like(6), like(7), like(bbox=[x1, y1, x2 + (x2 - x1), y2]), like(color="chartreuse")
    twin_of_far = like(phash=far.phash)  # same photo as `far`: never its duplicate
    later = like(phash=far.phash)  # a later photo of the batch: `far` counts
    p1, p2 = uuid.uuid4(), uuid.uuid4()
    with session_scope() as s:
        flag_near_duplicates(s, uid, [(p1, [close, far, squat, other_colour, twin_of_far]), (p2, [later])])
    assert close.duplicate_of == a_id
    assert far.duplicate_of is None and squat.duplicate_of is None and other_colour.duplicate_of is None
    assert twin_of_far.duplicate_of is None
    assert later.duplicate_of in {far.id, twin_of_far.id}


def test_correcting_an_item(client, make_user, rt):
    _, token = make_user()
    _, other = make_user()
    h = auth(token)
    run_job(rt, upload(client, token, zip_bytes(example_photos(1))).get_json()["id"])
    item = client.get("/v1/items?category=shoe", headers=h).get_json()["items"][0]
    r = client.patch(f"/v1/items/{item['id']}", json={"category": "bag, wallet"}, headers=h)
    assert r.status_code == 200
    body = r.get_json()
    assert (body["class_id"], body["category"], body["supercategory"]) == (5, "bag, wallet", "others")
    assert body["corrected"] and body["original_class_id"] == 0
    assert client.get(f"/v1/items/{item['id']}", headers=h).get_json()["category"] == "bag, wallet"
    assert client.patch(f"/v1/items/{item['id']}", json={"class_id": 15}, headers=h).get_json()["category"] == "hat"
    assert client.get(f"/v1/items/{item['id']}", headers=h).get_json()["original_class_id"] == 0
    assert_error(client.patch(f"/v1/items/{item['id']}", json={"category": "spacesuit"}, headers=h), 422, "unknown_category")
    assert_error(client.patch(f"/v1/items/{item['id']}", json={"class_id": 23}, headers=h), 422)
    assert_error(client.patch(f"/v1/items/{item['id']}", json={"colour": "red"}, headers=h), 400, "invalid_body")
    assert_error(client.patch(f"/v1/items/{item['id']}", data="nope", headers=h), 400, "invalid_body")
    assert_error(client.patch(f"/v1/items/{item['id']}", json={"category": "hat"}, headers=auth(other)), 404)
    # not a garment: out of the catalogue, still kept
    assert client.patch(f"/v1/items/{item['id']}", json={"not_garment": True}, headers=h).get_json()["status"] == "not_garment"
    ids = {i["id"] for i in client.get("/v1/items", headers=h).get_json()["items"]}
    assert item["id"] not in ids
    ids = {i["id"] for i in client.get("/v1/items?include_not_garment=true", headers=h).get_json()["items"]}
    assert item["id"] in ids
    # naming its class again says it is a garment after all: back in the catalogue
    body = client.patch(f"/v1/items/{item['id']}", json={"category": "shoe"}, headers=h).get_json()
    assert body["status"] == "ok" and body["category"] == "shoe"
    assert item["id"] in {i["id"] for i in client.get("/v1/items", headers=h).get_json()["items"]}
    # both at once: the explicit not_garment wins
    body = client.patch(f"/v1/items/{item['id']}", json={"category": "hat", "not_garment": True}, headers=h).get_json()
    assert body["status"] == "not_garment" and body["category"] == "hat"


def test_signed_image_urls(client, make_user, rt, app):
    _, token = make_user()
    run_job(rt, upload(client, token, zip_bytes(example_photos(1))).get_json()["id"])
    items = client.get("/v1/items", headers=auth(token)).get_json()["items"]
    a, b = items[0], items[1]
    r = client.get(a["cutout_signed_url"])  # no Authorization header
    assert r.status_code == 200 and r.mimetype == a["cutout_content_type"]
    assert client.get(a["photo_signed_url"]).status_code == 200
    assert client.get(a["cutout_url"]).status_code == 401  # unsigned and no token
    tampered = a["cutout_signed_url"][:-4] + ("0000" if not a["cutout_signed_url"].endswith("0000") else "1111")
    assert_error(client.get(tampered), 404)
    path, query = a["cutout_signed_url"].split("?")
    assert_error(client.get(f"/v1/items/{b['id']}/cutout?{query}"), 404)  # a signature is for one image only
    # expired
    from api import signing

    key = app.extensions["wardrobe"].settings.resolved_secret_key()
    import uuid as _uuid

    from db.session import session_scope
    from db.models import Item

    with session_scope() as s:
        owner = s.get(Item, _uuid.UUID(a["id"])).user_id
    old = int(time.time()) - 5
    assert_error(client.get(f"{path}?expires={old}&sig={signing.sign(key, path, owner, old)}"), 404)
    fresh = int(time.time()) + 60
    assert client.get(f"{path}?expires={fresh}&sig={signing.sign(key, path, owner, fresh)}").status_code == 200


def test_signup_is_off_unless_allowed(client, app):
    assert_error(client.post("/v1/users", json={"name": "eve"}), 403, "signup_disabled")
    rt = app.extensions["wardrobe"]
    app.extensions["wardrobe"] = type(rt)(settings=replace(rt.settings, allow_signup=True), storage=rt.storage)
    try:
        r = client.post("/v1/users", json={"name": "eve"})
        assert r.status_code == 201
        assert client.get("/v1/jobs", headers=auth(r.get_json()["token"])).status_code == 200
        assert_error(client.post("/v1/users", json={"name": "eve"}), 409, "name_taken")
        assert_error(client.post("/v1/users", json={}), 400)
        # JSON that is not an object is the client's mistake, not the server's: 400, never 500
        for body in ([1], "eve", 5, True):
            assert_error(client.post("/v1/users", json=body), 400, "invalid_body")
    finally:
        app.extensions["wardrobe"] = rt


def test_web_page_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and b'id="gallery"' in r.data
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert client.get("/static/app.js").status_code == 200


def test_corrections_round_trip_into_training(client, make_user, rt, tmp_path):
    from training.export import export_training
    from training.fashionpedia import import_dataset

    _, token = make_user("trainer")
    h = auth(token)
    run_job(rt, upload(client, token, zip_bytes(example_photos(3))).get_json()["id"])
    items = client.get("/v1/items?limit=200", headers=h).get_json()["items"]
    fixed, rejected = items[0], items[1]
    client.patch(f"/v1/items/{fixed['id']}", json={"category": "jumpsuit"}, headers=h)
    client.patch(f"/v1/items/{rejected['id']}", json={"not_garment": True}, headers=h)
    counts = export_training(rt, tmp_path / "export", user_name="trainer", val_fraction=0.34)
    assert counts["photos"] == 3 and counts["annotations"] == 5 and counts["not_garment_dropped"] == 1
    report = import_dataset(tmp_path / "export" / "instances_train.json", tmp_path / "export" / "instances_val.json",
                            tmp_path / "export" / "images", tmp_path / "yolo")
    imported = report["train"]["instances"] + report["val"]["instances"]
    assert imported == 5 and not report["train"]["dropped_categories"] and not report["val"]["dropped_categories"]
    labels = {}
    for split in ("train", "val"):
        for f in (tmp_path / "yolo" / "labels" / split).glob("*.txt"):
            labels[f.stem] = [int(line.split()[0]) for line in f.read_text().splitlines()]
    expected: dict[str, list[int]] = {}
    for it in items:
        if it["id"] == rejected["id"]:
            continue  # not a garment: left out of the training data
        expected.setdefault(it["photo_id"], []).append(19 if it["id"] == fixed["id"] else it["class_id"])
    assert {p: sorted(c) for p, c in labels.items()} == {p: sorted(c) for p, c in expected.items()}
    assert counts["corrected"] == 2


def test_export_training_skips_a_photo_whose_file_is_gone(client, make_user, rt, tmp_path):
    """A photo deleted (or its object lost) while `wardrobe export-training` runs: the rest of the
    dataset is still written, and the report says how many photos were missing. Before, the first
    missing photo ended the command with a traceback and no JSON at all."""
    from sqlalchemy import select

    from db.models import Photo
    from db.session import session_scope
    from training.export import export_training

    uid, token = make_user("lossy")
    run_job(rt, upload(client, token, zip_bytes(example_photos(3))).get_json()["id"])
    with session_scope() as s:
        gone = s.scalars(select(Photo).where(Photo.user_id == uid).order_by(Photo.entry_index)).first()
        gone_id, gone_key = gone.id, gone.storage_key
    rt.storage.delete(gone_key)
    counts = export_training(rt, tmp_path / "export", user_name="lossy", val_fraction=0.0)
    assert counts["photos"] == 2 and counts["photos_missing"] == 1
    data = json.loads((tmp_path / "export" / "instances_train.json").read_text())
    assert len(data["images"]) == 2 and str(gone_id) not in {im["file_name"].split(".")[0] for im in data["images"]}
    assert not (tmp_path / "export" / "images" / f"{gone_id}.jpg").exists()
