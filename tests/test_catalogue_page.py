"""The catalogue page's cost and its answers (db/catalogue.py, api/items.py: list_items): one SQL
statement a page whatever its size and filters, run outside a transaction; keyset paging through
ties; the list's item bodies the same as the item route's; the signed URLs and the JSON bytes.
On real PostgreSQL; items are written straight into their tables."""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import event

from db.models import Item, Job, Photo
from db.session import engine, session_scope
from tests.conftest import auth

ALTS = [{"class_id": 14, "category": "shorts", "confidence": 0.21}, {"class_id": 8, "confidence": 0.12}]


def seed(user_id, n: int, created_at=None, confidence=None) -> list[str]:
    """`n` items of one job and photo; each its own created_at and confidence unless given. Their ids."""
    now = datetime.now(timezone.utc)
    with session_scope() as s:
        job = Job(user_id=user_id, status="succeeded", upload_key="k", upload_sha256="0", photos_total=1, photos_done=1,
                  items_found=n, ingest_finished=True)
        s.add(job)
        s.flush()
        photo = Photo(user_id=user_id, job_id=job.id, entry_index=0, entry_name="p.jpg", status="done")
        s.add(photo)
        s.flush()
        items = [Item(user_id=user_id, photo_id=photo.id, job_id=job.id, instance_index=i, class_id=0, category="shoe",
                      supercategory="legs and feet",
                      confidence=confidence if confidence is not None else 0.2 + (i % 7) / 10,
                      bbox=[10, 20, 60, 90], polygons=[[[10.0, 20.0], [60.0, 20.5], [60, 90], [10, 90]]],
                      area_fraction=0.05, model_version="t", cutout_key=f"k{i}", cutout_content_type="image/webp",
                      colors=[{"hex": "#141416", "name": "black", "fraction": 1.0}], color="black",
                      alternatives=ALTS if i % 2 else None,
                      created_at=created_at or now - timedelta(seconds=i))
                 for i in range(n)]
        s.add_all(items)
        s.flush()
        return [str(i.id) for i in items]


class Statements:
    """The SQL statements the app's engine runs inside the block, and whether each ran in
    autocommit (no BEGIN or ROLLBACK sent around it)."""

    def __enter__(self):
        self.seen: list[tuple[str, bool]] = []
        event.listen(engine(), "before_cursor_execute", self._hook)
        return self

    def _hook(self, conn, _cursor, statement, _params, _context, _many):
        self.seen.append((statement, conn.connection.dbapi_connection.autocommit))

    def __exit__(self, *exc):
        event.remove(engine(), "before_cursor_execute", self._hook)


def test_a_catalogue_page_is_one_statement_whatever_its_size_and_filters(client, make_user, rt):
    uid, token = make_user()
    ids = seed(uid, 60)
    h = auth(token)
    first = client.get("/v1/items?limit=5", headers=h).get_json()  # the token is looked up once, then cached
    review = client.get("/v1/items?limit=5&needs_review=true", headers=h).get_json()
    for query in ("limit=5", "limit=50", "limit=200", "limit=50&needs_review=true", "limit=50&needs_review=false",
                  f"limit=5&cursor={first['next_cursor']}", f"limit=5&needs_review=true&cursor={review['next_cursor']}",
                  "category=shoe&color=black&hide_duplicates=true&min_confidence=0.3&include_not_garment=true",
                  f"job_id={first['items'][0]['job_id']}&photo_id={first['items'][0]['photo_id']}&supercategory=legs+and+feet"):
        with Statements() as st:
            resp = client.get(f"/v1/items?{query}", headers=h)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert resp.get_json()["items"], query
        assert len(st.seen) == 1, (query, [s for s, _ in st.seen])
        assert st.seen[0][1], f"{query}: the page's statement ran inside a transaction"
    assert len(client.get("/v1/items?limit=200", headers=h).get_json()["items"]) == len(ids)


def test_the_page_reads_each_users_threshold_with_its_rows(client, make_user, rt):
    a, ta = make_user()
    b, tb = make_user()
    seed(a, 14)
    seed(b, 14)
    assert client.patch("/v1/me", json={"review_below": 0.45}, headers=auth(ta)).status_code == 200
    for _ in range(2):  # a's threshold must not stick to the statement for b, nor b's default to a
        for token, below in ((ta, 0.45), (tb, rt.settings.review_below)):
            items = client.get("/v1/items?limit=200", headers=auth(token)).get_json()["items"]
            assert [i["needs_review"] for i in items] == [i["confidence"] < below for i in items]
            flagged = client.get("/v1/items?limit=200&needs_review=true", headers=auth(token)).get_json()["items"]
            assert {i["id"] for i in flagged} == {i["id"] for i in items if i["confidence"] < below}
    assert client.patch("/v1/me", json={"review_below": None}, headers=auth(ta)).status_code == 200
    items = client.get("/v1/items?limit=200", headers=auth(ta)).get_json()["items"]
    assert [i["needs_review"] for i in items] == [i["confidence"] < rt.settings.review_below for i in items]


def _walk(client, token, query: str, limit: int) -> list[str]:
    out, cursor = [], None
    while True:
        page = client.get(f"/v1/items?limit={limit}&{query}" + (f"&cursor={cursor}" if cursor else ""),
                          headers=auth(token)).get_json()
        out += [i["id"] for i in page["items"]]
        if not (cursor := page["next_cursor"]):
            return out


def test_keyset_paging_through_ties_visits_every_item_once_in_order(client, make_user, rt):
    uid, token = make_user()
    same_time = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    ids = seed(uid, 23, created_at=same_time, confidence=0.3)  # one sort key for all: only the ids order them
    older = seed(uid, 4, created_at=same_time - timedelta(seconds=1), confidence=0.1)
    newest_first = sorted(ids, key=uuid.UUID, reverse=True) + sorted(older, key=uuid.UUID, reverse=True)
    for limit in (1, 5, 23, 50):
        assert _walk(client, token, "", limit) == newest_first
    least_certain_first = sorted(older, key=uuid.UUID) + sorted(ids, key=uuid.UUID)
    for limit in (1, 4, 7, 50):
        assert _walk(client, token, "needs_review=true", limit) == least_certain_first


def test_the_lists_item_bodies_are_the_item_routes(client, make_user, rt, monkeypatch):
    """The list reads plain rows, the item route an ORM object; both give the same JSON, key for key
    and in the same order (the signing clock held still so the signed URLs agree too)."""
    from api import signing

    uid, token = make_user()
    seed(uid, 6)
    monkeypatch.setattr(signing.time, "time", lambda: 1_900_000_000.25)
    items = client.get("/v1/items?limit=50", headers=auth(token)).get_json()["items"]
    assert any(i["alternatives"] for i in items) and any(not i["alternatives"] for i in items)
    for listed in items:
        one = client.get(f"/v1/items/{listed['id']}", headers=auth(token))
        assert list(listed) == list(one.get_json())
        assert json.dumps(listed) == json.dumps(one.get_json())


def test_signer_urls_verify_and_carry_signs_signature():
    from api.signing import Signer, sign, verify

    key, user, ttl = b"k" * 32, uuid.uuid4(), 600
    t0 = int(time.time())
    sig_for = Signer(key, user, ttl)
    for path in ("/v1/items/abc/cutout", "/v1/photos/def"):
        url = sig_for(path)
        p, query = url.split("?")
        q = {k: v[0] for k, v in parse_qs(query).items()}
        assert p == path and set(q) == {"expires", "sig"}
        assert t0 + ttl <= int(q["expires"]) <= int(time.time()) + ttl
        assert q["sig"] == sign(key, path, user, int(q["expires"]))
        assert verify(key, path, user, q["expires"], q["sig"])
        assert not verify(key, path, uuid.uuid4(), q["expires"], q["sig"])
        assert not verify(key, path + "x", user, q["expires"], q["sig"])
        assert not verify(b"j" * 32, path, user, q["expires"], q["sig"])
    expired = parse_qs(urlsplit(Signer(key, user, -5)("/v1/photos/x")).query)
    assert not verify(key, "/v1/photos/x", user, expired["expires"][0], expired["sig"][0])


@pytest.mark.parametrize("obj", [
    {"items": [{"id": str(uuid.uuid4()), "polygons": [[[10.0, 20.5], [1e-7, 3]]], "name": "Größe ☂", "none": None}],
     "next_cursor": None},
    [1, 2.5, True, "x"],
    {"big": 2 ** 70},  # beyond orjson's integers: the standard encoder's answer
    {"when": datetime(2026, 12, 1, tzinfo=timezone.utc), "id": uuid.UUID(int=7)},
])
def test_json_responses_are_the_encoders_bytes_and_a_newline(app, obj):
    with app.app_context():
        resp = app.json.response(obj)
        # what Flask made before: the provider's text (compact) and a newline, encoded
        assert resp.get_data() == (app.json.dumps(obj, separators=(",", ":")) + "\n").encode()
        assert resp.mimetype == "application/json"


def test_a_page_holds_one_database_connection_at_a_time(client, make_user, rt):
    """A token not yet cached is looked up on the request's session; its connection goes back to the
    pool before the page's statement takes one (it was held, idle in a transaction, beside it: two
    connections a request, which a process's pool of threads can run out of)."""
    uid, token = make_user()  # a new token: not in this process's cache
    seed(uid, 3)
    out = {"now": 0, "most": 0}

    def checkout(*_):
        out["now"] += 1
        out["most"] = max(out["most"], out["now"])

    def checkin(*_):
        out["now"] -= 1

    pool = engine().pool
    event.listen(pool, "checkout", checkout)
    event.listen(pool, "checkin", checkin)
    try:
        resp = client.get("/v1/items?limit=5", headers=auth(token))
    finally:
        event.remove(pool, "checkout", checkout)
        event.remove(pool, "checkin", checkin)
    assert resp.status_code == 200 and len(resp.get_json()["items"]) == 3
    assert out["most"] == 1, out
