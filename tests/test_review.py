"""Uncertain items are easy to fix: needs_review, the review list and its paging, the per-user
threshold (GET/PATCH /v1/me), the model's alternatives, and the one-click fix or confirmation.
All on real PostgreSQL and the moto S3 server; items come from the fake segmenter, then get
chosen confidences and alternatives written straight into their rows."""
from __future__ import annotations

import uuid

from sqlalchemy import select, update

from db.models import Item
from db.session import session_scope
from tests.conftest import auth, jpeg_bytes, zip_bytes
from tests.helpers import run_job
from tests.test_api import assert_error, upload

ALTS = [{"class_id": 14, "category": "shorts", "confidence": 0.21},
        {"class_id": 8, "category": "skirt", "confidence": 0.12},
        {"class_id": 3, "category": "pants", "confidence": 0.05}]


def catalogue(client, rt, token, photos: int) -> list[str]:
    """Upload `photos` distinct photos (two garments each from the fake segmenter); the item ids, oldest first."""
    data = zip_bytes({f"p{i}.jpg": jpeg_bytes(80, 60, (20 * i, 90, 200 - 15 * i)) for i in range(photos)})
    run_job(rt, upload(client, token, data).get_json()["id"])
    items = client.get("/v1/items?limit=200", headers=auth(token)).get_json()["items"]
    assert len(items) == 2 * photos
    return [i["id"] for i in reversed(items)]


def set_items(ids, **values) -> None:
    with session_scope() as s:
        s.execute(update(Item).where(Item.id.in_([uuid.UUID(i) for i in ids])).values(**values))


def listing(client, token, query: str = "", limit: int = 200) -> list[dict]:
    """Every page of /v1/items?<query>, following next_cursor."""
    out, cursor = [], None
    while True:
        url = f"/v1/items?limit={limit}" + (f"&{query}" if query else "") + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=auth(token)).get_json()
        assert len(page["items"]) <= limit
        out += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def test_item_json_carries_alternatives_and_needs_review(client, make_user, rt):
    _, token = make_user()
    h = auth(token)
    a, b = catalogue(client, rt, token, 1)
    fresh = client.get(f"/v1/items/{a}", headers=h).get_json()
    # nothing filled in yet: an empty list, and the fake's 0.9 / 0.6 are above the default 0.5
    assert fresh["alternatives"] == [] and fresh["needs_review"] is False and fresh["reviewed"] is False
    # the worker's list, with the item's own class and a bad entry in it: both left out, order kept, at most 3
    own = fresh["class_id"]
    stored = [ALTS[0], {"class_id": own, "category": "x", "confidence": 0.3}, {"class_id": 99, "confidence": 0.2},
              ALTS[1], ALTS[2], {"class_id": 21, "category": "cape", "confidence": 0.01}]
    set_items([a], confidence=0.31, alternatives=stored)
    body = client.get(f"/v1/items/{a}", headers=h).get_json()
    assert body["alternatives"] == ALTS
    assert body["needs_review"] is True and body["reviewed"] is False and body["corrected"] is False
    listed = {i["id"]: i for i in client.get("/v1/items", headers=h).get_json()["items"]}
    assert listed[a]["alternatives"] == ALTS and listed[a]["needs_review"] is True
    assert listed[b]["alternatives"] == [] and listed[b]["needs_review"] is False
    # exactly at the threshold is not below it
    set_items([a], confidence=0.5)
    assert client.get(f"/v1/items/{a}", headers=h).get_json()["needs_review"] is False


def test_review_list_filter_order_and_paging(client, make_user, rt):
    _, token = make_user()
    h = auth(token)
    ids = catalogue(client, rt, token, 6)  # 12 items
    confidences = [0.42, 0.07, 0.33, 0.91, 0.33, 0.33, 0.64, 0.11, 0.49, 0.2, 0.5, 0.33]
    for i, c in zip(ids, confidences):
        set_items([i], confidence=c)
    corrected_low, rejected_low = ids[1], ids[7]  # 0.07 and 0.11, but a user has looked at them
    client.patch(f"/v1/items/{corrected_low}", json={"category": "hat"}, headers=h)
    client.patch(f"/v1/items/{rejected_low}", json={"not_garment": True}, headers=h)
    expected = sorted(((c, uuid.UUID(i)) for i, c in zip(ids, confidences)
                       if c < 0.5 and i not in (corrected_low, rejected_low)))
    expected_ids = [str(i) for _, i in expected]
    assert len(expected_ids) == 7  # four of them tied at 0.33: the id decides

    review = listing(client, token, "needs_review=true")
    assert [i["id"] for i in review] == expected_ids
    assert all(i["needs_review"] for i in review)
    assert [i["confidence"] for i in review] == sorted(i["confidence"] for i in review)
    for limit in (1, 2, 3, 7):  # pages cut inside the run of ties, and at its edges
        assert [i["id"] for i in listing(client, token, "needs_review=true", limit)] == expected_ids

    others = listing(client, token, "needs_review=false")
    assert not any(i["needs_review"] for i in others)
    assert {i["id"] for i in others} == set(ids) - set(expected_ids) - {rejected_low}
    assert [i["id"] for i in listing(client, token, "needs_review=false", 2)] == [i["id"] for i in others]
    assert [i["created_at"] for i in others] == sorted((i["created_at"] for i in others), reverse=True)
    with_rejected = listing(client, token, "needs_review=false&include_not_garment=true")
    assert rejected_low in {i["id"] for i in with_rejected}
    # the filter combines with the others; the fake's shoes are the low-confidence half here or there
    shoes = listing(client, token, "needs_review=true&category=shoe")
    assert shoes and len(shoes) < len(review)
    assert [i["id"] for i in shoes] == [i for i in expected_ids if i in {x["id"] for x in review if x["category"] == "shoe"}]

    assert_error(client.get("/v1/items?needs_review=maybe", headers=h), 400, "invalid_parameter")
    newest_cursor = client.get("/v1/items?limit=1", headers=h).get_json()["next_cursor"]
    review_cursor = client.get("/v1/items?limit=1&needs_review=true", headers=h).get_json()["next_cursor"]
    assert_error(client.get(f"/v1/items?needs_review=true&cursor={newest_cursor}", headers=h), 400, "invalid_cursor")
    assert_error(client.get(f"/v1/items?cursor={review_cursor}", headers=h), 400, "invalid_cursor")
    assert_error(client.get("/v1/items?needs_review=true&cursor=WyJjb25maWRlbmNlIiwgTmFOLCAieCJd", headers=h),
                 400, "invalid_cursor")  # ["confidence", NaN, "x"]


def test_threshold_is_per_user(client, make_user, rt):
    _, alice = make_user("alice")
    _, bob = make_user("bob")
    a_ids = catalogue(client, rt, alice, 2)  # 0.9 and 0.6 each
    b_ids = catalogue(client, rt, bob, 2)
    me = client.get("/v1/me", headers=auth(alice)).get_json()
    assert me["name"] == "alice" and me["review_below"] == 0.5 and me["review_below_default"] == 0.5
    assert me["review_below_custom"] is False and me["items_needing_review"] == 0

    r = client.patch("/v1/me", json={"review_below": 0.75}, headers=auth(alice))
    assert r.status_code == 200
    assert r.get_json()["review_below"] == 0.75 and r.get_json()["review_below_custom"] is True
    assert r.get_json()["items_needing_review"] == 2
    assert client.get("/v1/me", headers=auth(alice)).get_json()["review_below"] == 0.75
    assert {i["confidence"] for i in listing(client, alice, "needs_review=true")} == {0.6}
    assert len(listing(client, alice, "needs_review=true")) == 2
    # bob's items have the same confidences; alice's threshold is not his
    assert listing(client, bob, "needs_review=true") == []
    assert not any(i["needs_review"] for i in listing(client, bob))
    bob_me = client.get("/v1/me", headers=auth(bob)).get_json()
    assert (bob_me["review_below"], bob_me["review_below_custom"], bob_me["items_needing_review"]) == (0.5, False, 0)
    # and bob's own threshold is not alice's
    assert client.patch("/v1/me", json={"review_below": 1}, headers=auth(bob)).get_json()["items_needing_review"] == 4
    assert {i["id"] for i in listing(client, bob, "needs_review=true")} == set(b_ids)
    assert {i["id"] for i in listing(client, alice, "needs_review=true")} < set(a_ids)
    assert client.patch("/v1/me", json={"review_below": 0}, headers=auth(alice)).get_json()["items_needing_review"] == 0
    assert listing(client, alice, "needs_review=true") == []
    # null: back to the deployment's default
    back = client.patch("/v1/me", json={"review_below": None}, headers=auth(alice)).get_json()
    assert (back["review_below"], back["review_below_custom"]) == (0.5, False)
    assert client.get("/v1/me", headers=auth(bob)).get_json()["review_below"] == 1.0

    for bad in (1.5, -0.01, "0.5", True, [0.3], {"x": 1}):
        assert_error(client.patch("/v1/me", json={"review_below": bad}, headers=auth(alice)), 422, "invalid_review_below")
    assert_error(client.patch("/v1/me", data='{"review_below": NaN}', content_type="application/json",
                              headers=auth(alice)), 422, "invalid_review_below")
    # an integer too large for a float is out of range, not a 500 (math.isfinite overflowed on it)
    assert_error(client.patch("/v1/me", data='{"review_below": 1' + "0" * 400 + '}', content_type="application/json",
                              headers=auth(alice)), 422, "invalid_review_below")
    assert_error(client.patch("/v1/me", json={"review_below": 0.3, "name": "eve"}, headers=auth(alice)), 400, "invalid_body")
    assert_error(client.patch("/v1/me", json={}, headers=auth(alice)), 400, "invalid_body")
    assert_error(client.patch("/v1/me", data="nope", headers=auth(alice)), 400, "invalid_body")
    assert_error(client.get("/v1/me"), 401, "unauthorized")
    assert_error(client.patch("/v1/me", json={"review_below": 0.3}), 401, "unauthorized")
    assert client.get("/v1/me", headers=auth(alice)).get_json()["review_below"] == 0.5  # nothing bad was kept


def test_one_click_fix_and_confirm_clear_the_flag(client, make_user, rt, tmp_path):
    from training.export import export_training

    _, token = make_user("fixer")
    h = auth(token)
    ids = catalogue(client, rt, token, 3)
    fix, confirm, reject, revert = ids[0], ids[2], ids[4], ids[1]
    set_items([fix, confirm, reject, revert], confidence=0.2, alternatives=ALTS)
    assert [i["id"] for i in listing(client, token, "needs_review=true")] == sorted(
        [fix, confirm, reject, revert], key=uuid.UUID)
    model_class = {i: client.get(f"/v1/items/{i}", headers=h).get_json()["class_id"] for i in ids}

    # an alternative, in one click: its class_id
    body = client.patch(f"/v1/items/{fix}", json={"class_id": ALTS[0]["class_id"]}, headers=h).get_json()
    assert (body["class_id"], body["category"]) == (14, "shorts")
    assert body["corrected"] and body["reviewed"] and not body["needs_review"]
    assert body["original_class_id"] == model_class[fix]
    assert [a["class_id"] for a in body["alternatives"]] == [8, 3]  # the chosen class is the item's own now

    # the model's own class, in one click: a confirmation
    body = client.patch(f"/v1/items/{confirm}", json={"class_id": model_class[confirm]}, headers=h).get_json()
    assert body["class_id"] == model_class[confirm] and body["original_class_id"] is None
    assert body["reviewed"] and not body["corrected"] and not body["needs_review"]
    assert body["alternatives"] == ALTS

    # not a garment: out of the review list and the catalogue
    body = client.patch(f"/v1/items/{reject}", json={"not_garment": True}, headers=h).get_json()
    assert body["status"] == "not_garment" and not body["needs_review"]

    # an alternative, then back to the model's class: a confirmation, not a correction
    client.patch(f"/v1/items/{revert}", json={"class_id": 8}, headers=h)
    body = client.patch(f"/v1/items/{revert}", json={"class_id": model_class[revert]}, headers=h).get_json()
    assert body["class_id"] == model_class[revert] and body["original_class_id"] is None and not body["corrected"]
    assert body["reviewed"] and not body["needs_review"]

    assert listing(client, token, "needs_review=true") == []
    assert client.get("/v1/me", headers=h).get_json()["items_needing_review"] == 0
    # a low threshold no longer matters to reviewed items, nor does a high one
    client.patch("/v1/me", json={"review_below": 1.0}, headers=h)
    assert {i["id"] for i in listing(client, token, "needs_review=true")} == set(ids) - {fix, confirm, reject, revert}

    # the fixes feed export-training: the chosen class is the label, confirmed items count as reviewed
    counts = export_training(rt, tmp_path / "export", user_name="fixer", corrected_only=True, val_fraction=0.0)
    assert counts["corrected"] == 4 and counts["not_garment_dropped"] == 1
    with session_scope() as s:
        row = s.scalar(select(Item).where(Item.id == uuid.UUID(fix)))
        assert (row.class_id, row.original_class_id) == (14, model_class[fix]) and row.corrected_at is not None
