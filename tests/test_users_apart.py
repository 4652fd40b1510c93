"""Users apart: hashed tokens compared in constant time, 404 across users, Idempotency-Key."""
from __future__ import annotations

import hashlib
import io
import threading
import uuid
from datetime import timedelta

from sqlalchemy import func, select, update

from db.models import ApiToken, IdempotencyKey, Job, utcnow
from db.session import session_scope
from tests.conftest import auth, example_photos, jpeg_bytes, zip_bytes
from tests.test_api import assert_error


def post(client, token, data: bytes, key: str | None):
    headers = auth(token) | ({"Idempotency-Key": key} if key else {})
    return client.post("/v1/uploads", data={"file": (io.BytesIO(data), "p.zip")}, headers=headers,
                       content_type="multipart/form-data")


def jobs_of(user_id) -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Job).where(Job.user_id == user_id))


def test_tokens_are_stored_hashed_only(make_user):
    uid, token = make_user()
    with session_scope() as s:
        rows = list(s.scalars(select(ApiToken).where(ApiToken.user_id == uid)))
    assert len(rows) == 1
    assert rows[0].token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {rows[0].token_hash, rows[0].prefix}


def test_token_check_is_constant_time(client, make_user, monkeypatch):
    import db.users

    _, token = make_user()
    calls = []
    real = db.users.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(db.users.hmac, "compare_digest", spy)
    assert client.get("/v1/jobs", headers=auth(token)).status_code == 200
    assert calls, "the token digest was not compared with hmac.compare_digest"


def test_revoked_token_is_401(client, make_user):
    uid, token = make_user()
    with session_scope() as s:
        s.execute(update(ApiToken).where(ApiToken.user_id == uid).values(revoked_at=utcnow()))
    assert_error(client.get("/v1/jobs", headers=auth(token)), 401, "unauthorized")


def test_same_key_same_payload_is_the_same_job(client, make_user):
    uid, token = make_user()
    data = zip_bytes(example_photos(1))
    first = post(client, token, data, "k-1")
    second = post(client, token, data, "k-1")
    assert first.status_code == second.status_code == 202
    assert first.get_json()["id"] == second.get_json()["id"]
    assert second.headers["Location"] == first.headers["Location"]
    assert jobs_of(uid) == 1
    # the same key from another user is that user's own key
    other, other_token = make_user()
    assert post(client, other_token, data, "k-1").get_json()["id"] != first.get_json()["id"]


def test_same_key_other_payload_is_422(client, make_user):
    uid, token = make_user()
    assert post(client, token, zip_bytes(example_photos(1)), "k-2").status_code == 202
    assert_error(post(client, token, zip_bytes({"x.jpg": jpeg_bytes()}), "k-2"), 422, "idempotency_key_reused")
    assert jobs_of(uid) == 1


def test_key_still_being_accepted_is_409(client, make_user):
    uid, token = make_user()
    data = zip_bytes(example_photos(1))
    with session_scope() as s:
        s.add(IdempotencyKey(user_id=uid, key="k-3", request_sha256=hashlib.sha256(data).hexdigest()))
    assert_error(post(client, token, data, "k-3"), 409, "idempotency_in_progress")
    # a claim abandoned long ago (the accepting process died) is taken over
    with session_scope() as s:
        s.execute(update(IdempotencyKey).where(IdempotencyKey.key == "k-3").values(created_at=utcnow() - timedelta(hours=1)))
    assert post(client, token, data, "k-3").status_code == 202


def test_refused_upload_does_not_burn_the_key(client, make_user):
    _, token = make_user()
    assert_error(post(client, token, b"not a zip", "k-4"), 422, "invalid_zip")
    assert post(client, token, zip_bytes(example_photos(1)), "k-4").status_code == 202


def test_concurrent_requests_with_one_key_make_one_job(app, make_user):
    uid, token = make_user()
    data = zip_bytes(example_photos(2))
    results = []

    def go():
        with app.test_client() as c:
            r = post(c, token, data, "k-5")
            results.append((r.status_code, (r.get_json() or {}).get("id")))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert jobs_of(uid) == 1
    assert {code for code, _ in results} <= {202, 409}
    assert len({jid for code, jid in results if code == 202}) == 1


def test_bad_idempotency_key_is_400(client, make_user):
    _, token = make_user()
    assert_error(post(client, token, zip_bytes(example_photos(1)), "x" * 201), 400, "invalid_idempotency_key")


def test_ids_cannot_be_probed(client, make_user):
    _, token = make_user()
    for path in (f"/v1/jobs/{uuid.uuid4()}", f"/v1/items/{uuid.uuid4()}", f"/v1/items/{uuid.uuid4()}/cutout",
                 f"/v1/photos/{uuid.uuid4()}"):
        assert_error(client.get(path, headers=auth(token)), 404, "not_found")


def test_a_revoked_token_lapses_within_the_token_cache_time(clean_db, make_user):
    import time
    from dataclasses import replace

    from api.app import create_app

    ttl = 0.5
    client = create_app(replace(clean_db.settings, token_cache_seconds=ttl)).test_client()
    uid, token = make_user()
    assert client.get("/v1/jobs", headers=auth(token)).status_code == 200  # checked, then trusted for ttl
    with session_scope() as s:
        s.execute(update(ApiToken).where(ApiToken.user_id == uid).values(revoked_at=utcnow()))
    revoked_at = time.monotonic()
    while True:
        # the request's start is what counts: it was trusted from a check made before the revocation,
        # for ttl at most; however long a request takes on a busy machine does not matter
        started = time.monotonic()
        if client.get("/v1/jobs", headers=auth(token)).status_code != 200:
            break
        assert started - revoked_at < ttl, "a revoked token outlived the token cache"
        time.sleep(0.05)
    assert_error(client.get("/v1/jobs", headers=auth(token)), 401, "unauthorized")
    # with the cache off, revocation is immediate
    off = create_app(replace(clean_db.settings, token_cache_seconds=0)).test_client()
    uid2, token2 = make_user()
    assert off.get("/v1/jobs", headers=auth(token2)).status_code == 200
    with session_scope() as s:
        s.execute(update(ApiToken).where(ApiToken.user_id == uid2).values(revoked_at=utcnow()))
    assert_error(off.get("/v1/jobs", headers=auth(token2)), 401, "unauthorized")


def test_a_503_for_a_broker_that_is_down_does_not_burn_the_idempotency_key(client, make_user, settings):
    """The 503 says try again; the same request with the same key then makes a job that runs. Before,
    the key still named the job the 503 had failed, so the retry got that failed job back (202)."""
    from dataclasses import replace

    from api.app import create_app

    _, token = make_user()
    data = zip_bytes(example_photos(1))
    broken = create_app(replace(settings, broker_url="redis://127.0.0.1:1/0")).test_client()
    assert_error(post(broken, token, data, "same-key"), 503, "queue_unavailable")
    again = post(client, token, data, "same-key")
    assert again.status_code == 202, again.get_data(as_text=True)
    assert again.get_json()["status"] == "queued"
    replay = post(client, token, data, "same-key")  # and the key now names that job
    assert replay.status_code == 202 and replay.get_json()["id"] == again.get_json()["id"]
    statuses = sorted(j["status"] for j in client.get("/v1/jobs", headers=auth(token)).get_json()["jobs"])
    assert statuses == ["failed", "queued"]
