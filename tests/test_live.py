"""Live progress (GET /v1/jobs/<id>/events, Server-Sent Events read by a real HTTP client), Retry-After on
202s, and POST /v1/jobs/<id>/retry: only the photos that failed for a transient reason go again."""
from __future__ import annotations

import json
import threading
import uuid

import pytest
import requests

from tests.conftest import auth, example_photos, jpeg_bytes, zip_bytes
from tests.helpers import run_job
from tests.test_api import assert_error, upload


class Broken:
    """A segmenter that fails every batch, as a worker whose model fell over would."""

    version = "broken-1"

    def segment(self, photos):
        raise RuntimeError("the accelerator fell over")


def run_job_failing(rt, job_id) -> None:
    """Ingest, then every segmentation task gives up as the Celery task does after its last retry."""
    from db import photos
    from worker import ingest, segment

    chunks: list[list] = []
    ingest.run(job_id, rt, send_segment=lambda j, ids: chunks.append(list(ids)))
    for ids in chunks:
        with pytest.raises(RuntimeError):
            segment.run(job_id, ids, rt, Broken())
        photos.mark_photos_failed(job_id, ids, "segment_failed", "RuntimeError: the accelerator fell over")


def photo_states(job_id) -> dict[str, tuple[str, str | None]]:
    from sqlalchemy import select

    from db.models import Photo
    from db.session import session_scope

    with session_scope() as s:
        return {name: (status, code) for name, status, code in s.execute(
            select(Photo.entry_name, Photo.status, Photo.error_code).where(Photo.job_id == uuid.UUID(job_id)))}


def test_202s_carry_retry_after(client, make_user):
    _, token = make_user()
    resp = upload(client, token, zip_bytes(example_photos(1)))
    assert resp.status_code == 202
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.headers["Location"] == f"/v1/jobs/{resp.get_json()['id']}"


def test_retry_runs_only_the_photos_that_failed_for_a_transient_reason(client, make_user, rt):
    _, token = make_user()
    h = auth(token)
    photos = example_photos(3)
    job_id = upload(client, token, zip_bytes(photos | {"notes.jpg": b"not a picture at all"})).get_json()["id"]
    run_job_failing(rt, job_id)
    job = client.get(f"/v1/jobs/{job_id}", headers=h).get_json()
    assert job["status"] == "failed" and job["progress"]["photos_failed"] == 4 and job["retryable"]
    assert {c for _, c in photo_states(job_id).values()} == {"segment_failed", "not_an_image"}

    resp = client.post(f"/v1/jobs/{job_id}/retry", headers=h)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["id"] == job_id and body["status"] == "queued" and body["retried_photos"] == 3 and not body["retryable"]
    assert body["progress"]["photos_failed"] == 1  # the entry that is no image stays failed
    assert resp.headers["Location"] == f"/v1/jobs/{job_id}" and int(resp.headers["Retry-After"]) >= 1
    states = photo_states(job_id)
    assert states["notes.jpg"] == ("failed", "not_an_image")
    assert all(states[n] == ("pending", None) for n in photos)
    assert_error(client.post(f"/v1/jobs/{job_id}/retry", headers=h), 409, "job_active")

    run_job(rt, job_id)  # the ingest task the retry queued, then segmentation, as the workers would
    job = client.get(f"/v1/jobs/{job_id}", headers=h).get_json()
    assert job["status"] == "partially_succeeded", job
    p = job["progress"]
    assert (p["photos_done"], p["photos_failed"], p["photos_duplicate"], p["photos_total"]) == (3, 1, 0, 4)
    assert p["items_found"] == 6 and p["percent"] == 100.0
    assert [e["code"] for e in job["errors"]] == ["not_an_image"] and not job["retryable"]
    items = client.get(f"/v1/items?job_id={job_id}", headers=h).get_json()["items"]
    assert len(items) == 6
    # nothing a retry can mend is left
    assert_error(client.post(f"/v1/jobs/{job_id}/retry", headers=h), 409, "nothing_to_retry")


def test_retry_of_a_cancelled_job_resumes_it_and_refusals(client, make_user, rt):
    _, token = make_user()
    _, other = make_user()
    h = auth(token)
    job_id = upload(client, token, zip_bytes(example_photos(2))).get_json()["id"]
    run_job(rt, job_id)
    assert_error(client.post(f"/v1/jobs/{job_id}/retry", headers=h), 409, "nothing_to_retry")  # succeeded
    assert_error(client.post(f"/v1/jobs/{job_id}/retry", headers=auth(other)), 404, "not_found")
    assert_error(client.post(f"/v1/jobs/{uuid.uuid4()}/retry", headers=h), 404, "not_found")
    assert_error(client.post("/v1/jobs/nope/retry", headers=h), 404)

    second = upload(client, token, zip_bytes({"a.jpg": jpeg_bytes(color=(10, 200, 10)),
                                              "b.jpg": jpeg_bytes(color=(10, 10, 200))})).get_json()["id"]
    from worker import ingest

    ingest.run(second, rt, send_segment=lambda j, ids: None)  # stored, then the user cancels before segmentation
    assert client.delete(f"/v1/jobs/{second}", headers=h).get_json()["status"] == "cancelled"
    resp = client.post(f"/v1/jobs/{second}/retry", headers=h)
    assert resp.status_code == 202 and resp.get_json()["retried_photos"] == 2
    run_job(rt, second)
    job = client.get(f"/v1/jobs/{second}", headers=h).get_json()
    assert job["status"] == "succeeded" and job["progress"]["photos_done"] == 2, job


def test_retry_makes_a_photo_uploaded_again_meanwhile_a_duplicate(client, make_user, rt):
    _, token = make_user()
    h = auth(token)
    pic = {"coat.jpg": jpeg_bytes(color=(120, 60, 30))}
    first = upload(client, token, zip_bytes(pic)).get_json()["id"]
    run_job_failing(rt, first)
    second = upload(client, token, zip_bytes(pic)).get_json()["id"]
    run_job(rt, second)  # the same bytes, segmented this time
    resp = client.post(f"/v1/jobs/{first}/retry", headers=h)
    assert resp.status_code == 202 and resp.get_json()["retried_photos"] == 0
    run_job(rt, first)
    job = client.get(f"/v1/jobs/{first}", headers=h).get_json()
    assert job["status"] == "succeeded", job
    assert (job["progress"]["photos_duplicate"], job["progress"]["photos_failed"]) == (1, 0)
    assert photo_states(first)["coat.jpg"] == ("duplicate", None)


def test_retry_of_a_job_whose_zip_is_gone_before_it_was_read(client, make_user, rt):
    from db import photos

    _, token = make_user()
    h = auth(token)
    job_id = upload(client, token, zip_bytes(example_photos(1))).get_json()["id"]
    photos.fail_job(uuid.UUID(job_id), "ingest_failed", "the worker lost its storage")
    assert client.get(f"/v1/jobs/{job_id}", headers=h).get_json()["retryable"] is True  # its zip is kept for a retry
    from core.storage import keys

    rt.storage.delete(keys.upload(client.get("/v1/me", headers=h).get_json()["id"], job_id))  # gone all the same
    assert client.get(f"/v1/jobs/{job_id}", headers=h).get_json()["retryable"] is False
    assert_error(client.post(f"/v1/jobs/{job_id}/retry", headers=h), 409, "upload_gone")
    assert client.get(f"/v1/jobs/{job_id}", headers=h).get_json()["status"] == "failed"


# --- Server-Sent Events over real HTTP ------------------------------------------------------------------------

@pytest.fixture()
def live_server(app):
    from werkzeug.serving import make_server

    from bench.scratch import free_port

    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()


def read_events(source, until=None, limit: int = 10_000, each=None) -> list[dict]:
    """An SSE parser for the test's client: one dict per event (event, data, id); `each` sees every one.
    `source`: a streamed response, or its lines (an iterator the caller keeps, to read on later)."""
    events: list[dict] = []
    cur: dict = {}
    for raw in source.iter_lines(decode_unicode=True) if hasattr(source, "iter_lines") else source:
        if raw == "":
            if "data" in cur:
                cur["data"] = json.loads(cur["data"])
                events.append(cur)
                if each:
                    each(cur)
                if (until and until(cur)) or len(events) >= limit:
                    break
            cur = {}
            continue
        if raw.startswith(":"):
            continue
        field, _, value = raw.partition(":")
        cur[field] = value[1:] if value.startswith(" ") else value
    return events


def test_events_stream_progress_items_errors_and_the_end(live_server, make_user, rt):
    _, token = make_user()
    h = auth(token)
    data = zip_bytes(example_photos(3) | {"notes.jpg": b"not a picture"})
    job_id = requests.post(f"{live_server}/v1/uploads", headers=h | {"Content-Type": "application/zip"},
                           data=data, timeout=30).json()["id"]
    got: list[dict] = []
    listening = threading.Event()

    def listen():
        with requests.get(f"{live_server}/v1/jobs/{job_id}/events", headers=h, stream=True, timeout=60) as r:
            assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            got.extend(read_events(r, until=lambda e: e["event"] == "end", each=lambda e: listening.set()))

    t = threading.Thread(target=listen)
    t.start()
    assert listening.wait(30)  # the job runs while the client watches
    run_job(rt, job_id)
    t.join(60)
    assert not t.is_alive()
    kinds = [e["event"] for e in got]
    assert kinds[0] == "progress" and got[0]["data"]["status"] == "queued"
    assert kinds[-1] == "end" and got[-1]["data"]["status"] == "partially_succeeded"
    assert got[-1]["data"]["progress"]["items_found"] == 6
    items = [e for e in got if e["event"] == "item"]
    assert len({e["data"]["id"] for e in items}) == 6
    assert all(e["data"]["cutout_signed_url"] and e.get("id") for e in items)
    failed = [e["data"] for e in got if e["event"] == "photo_failed"]
    assert [(f["entry"], f["code"]) for f in failed] == [("notes.jpg", "not_an_image")]
    # an ended job's stream says so at once and closes
    with requests.get(f"{live_server}/v1/jobs/{job_id}/events", headers=h, stream=True, timeout=30) as r:
        again = read_events(r)
    assert [e["event"] for e in again][-1] == "end"


def test_events_resume_after_last_event_id_and_refusals(live_server, make_user, rt, client):
    _, token = make_user()
    _, other = make_user()
    h = auth(token)
    job_id = upload(client, token, zip_bytes(example_photos(4))).get_json()["id"]
    run_job(rt, job_id)
    url = f"{live_server}/v1/jobs/{job_id}/events"
    with requests.get(url, headers=h, stream=True, timeout=30) as r:
        first = read_events(r, until=lambda e: e["event"] == "item")  # the client is cut after one garment
    last_id = first[-1]["id"]
    with requests.get(url, headers=h | {"Last-Event-ID": last_id}, stream=True, timeout=30) as r:
        rest = read_events(r)
    seen = {e["data"]["id"] for e in first + rest if e["event"] == "item"}
    assert len(seen) == 8 and rest[-1]["event"] == "end"

    r = requests.get(url, headers=auth(other), timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = requests.get(url, headers=h | {"Last-Event-ID": "garbage"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_last_event_id"
    assert requests.get(url, timeout=10).status_code == 401


def test_streams_per_process_are_capped(app, live_server, make_user, client):
    from dataclasses import replace

    _, token = make_user()
    h = auth(token)
    job_id = upload(client, token, zip_bytes(example_photos(1))).get_json()["id"]  # stays queued: no worker
    rt = app.extensions["wardrobe"]
    rt.settings = replace(rt.settings, events_max_streams=1, events_heartbeat=0.3)  # a write notices a client gone
    url = f"{live_server}/v1/jobs/{job_id}/events"
    with requests.get(url, headers=h, stream=True, timeout=30) as r:
        # the iterator is kept: a dropped one is closed at once, and urllib3 closes the connection under
        # an unfinished chunked body, which gives the slot back before the second stream asks
        lines = r.iter_lines(decode_unicode=True)
        assert read_events(lines, limit=1)[0]["event"] == "progress"
        busy = requests.get(url, headers=h, timeout=10)
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "too_many_streams"
        assert busy.headers["Retry-After"]
    # the slot is given back when the client goes away
    from tests.procs import wait_for

    wait_for(lambda: app.extensions["wardrobe.event_slots"].open == 0, 10, "the stream's slot given back")
    with requests.get(url, headers=h, stream=True, timeout=30) as r:
        assert r.status_code == 200


def _old_id(stamps) -> str:
    """An id in the format streams sent before: base64url of the stamps as JSON."""
    import base64

    return base64.urlsafe_b64encode(json.dumps(stamps).encode()).decode().rstrip("=")


@pytest.mark.parametrize("crafted", [
    _old_id(["0001-01-01T00:00:00", None]), _old_id(["2026-12-07T10:00:00+02:00", None]),  # issue 36 #8's
    "i-1f", "i1f-1", "i123456789012345678f", "if123456789012345678", "i1f2f3", "f1i2", "i1.5f", "i f", "", "I1F2"])
def test_a_crafted_last_event_id_is_a_400_not_a_broken_stream(client, make_user, crafted):
    """Issue 36 #8: base64url of ["0001-01-01T00:00:00", null], or a stamp with an offset, was taken: the
    stream answered 200 and broke after 13 bytes (OverflowError / TypeError in the log). Ids are
    `i<µs>f<µs>` now; anything else, the old format included, is a 400 before the stream starts."""
    _, token = make_user()
    job_id = upload(client, token, zip_bytes(example_photos(1))).get_json()["id"]
    r = client.get(f"/v1/jobs/{job_id}/events", headers=auth(token) | {"Last-Event-ID": crafted})
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert r.get_json()["error"]["code"] == "invalid_last_event_id"


@pytest.mark.parametrize("edge", ["if", "i0f0", "i0f", "f".join(["i" + "9" * 17, "9" * 17])])
def test_every_id_of_the_format_is_a_place_in_the_stream(client, make_user, rt, edge):
    """The id's extremes (nothing sent yet, 1970, the year 5138) read as places in the stream: it runs to
    its end, sending what came after them (all of the job's garments after 1970, none after 5138)."""
    _, token = make_user()
    job_id = upload(client, token, zip_bytes(example_photos(2))).get_json()["id"]
    run_job(rt, job_id)
    r = client.get(f"/v1/jobs/{job_id}/events", headers=auth(token) | {"Last-Event-ID": edge})
    assert r.status_code == 200
    events = read_events(_Lines(r))
    assert "progress" in [e["event"] for e in events] and events[-1]["event"] == "end"
    items = [e for e in events if e["event"] == "item"]
    found = events[-1]["data"]["progress"]["items_found"]
    assert found > 0 and len(items) == (0 if "9" * 17 in edge else found)


class _Lines:
    """A Flask test response read as requests' streamed one (read_events wants iter_lines)."""

    def __init__(self, resp):
        self.resp = resp

    def iter_lines(self, decode_unicode: bool = True):
        yield from self.resp.get_data(as_text=True).split("\n")


def test_one_user_takes_only_their_share_of_the_streams(app, live_server, make_user, client):
    """Issue 36: a user who asked for 40 streams made every other user's stream a 503. Now one user
    holds at most events_max_streams_per_user of a process's slots (429 beyond), the others still get one."""
    from dataclasses import replace

    _, greedy = make_user()
    _, other = make_user()
    greedy_job = upload(client, greedy, zip_bytes(example_photos(1))).get_json()["id"]  # queued: no worker
    other_job = upload(client, other, zip_bytes(example_photos(1))).get_json()["id"]
    rt = app.extensions["wardrobe"]
    rt.settings = replace(rt.settings, events_max_streams=3, events_max_streams_per_user=2)
    url = f"{live_server}/v1/jobs/{{}}/events"
    held = []
    try:
        for _ in range(2):
            r = requests.get(url.format(greedy_job), headers=auth(greedy), stream=True, timeout=30)
            assert r.status_code == 200
            held.append(r)
        more = requests.get(url.format(greedy_job), headers=auth(greedy), timeout=10)
        assert more.status_code == 429 and more.json()["error"]["code"] == "too_many_streams", more.text
        assert more.headers["Retry-After"]
        with requests.get(url.format(other_job), headers=auth(other), stream=True, timeout=30) as r:
            assert r.status_code == 200 and read_events(r, limit=1)[0]["event"] == "progress"
    finally:
        for r in held:
            r.close()
