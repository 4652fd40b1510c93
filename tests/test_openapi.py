"""The OpenAPI document says what the server takes and answers (issue 38): its patterns are api/formats.py's,
every value a pattern allows is one the route's parser takes, and schemathesis, run as `st run` with every check
and the stateful phase against a real `wardrobe serve` (PostgreSQL, Redis, moto's S3), finds nothing: no request
the document describes refused, none it forbids taken, no answer outside it."""
from __future__ import annotations

import math
import re
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import formats
from api.openapi import SPEC
from tests.conftest import ROOT, free_port, wait_port
from tests.procs import Proc, service_env, wait_for

ST = Path(__import__("sys").executable).with_name("st")
DRAWS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def _operation(operation_id: str) -> dict:
    return next(op for item in SPEC["paths"].values() for op in item.values() if op.get("operationId") == operation_id)


def _parameter(operation_id: str, name: str) -> dict:
    for p in _operation(operation_id).get("parameters", []):
        if "$ref" in p:
            p = SPEC["components"]["parameters"][p["$ref"].rsplit("/", 1)[-1]]
        if p["name"] == name:
            return p["schema"]
    raise KeyError(name)


def test_the_document_states_the_patterns_the_routes_check():
    schemas = SPEC["components"]["schemas"]
    for operation_id in ("listJobs", "listExports", "listWebhooks", "listDeliveries"):
        assert _parameter(operation_id, "cursor")["pattern"] == formats.NEWEST_CURSOR, operation_id
    assert _parameter("listItems", "cursor")["pattern"] == formats.ITEMS_CURSOR
    assert _parameter("listJobPhotos", "cursor")["pattern"] == formats.ZIP_POSITION
    assert _parameter("streamJobEvents", "Last-Event-ID")["pattern"] == formats.EVENT_ID
    assert _parameter("streamJobEvents", "last_event_id")["pattern"] == formats.EVENT_ID
    assert schemas["JobEvent"]["properties"]["id"]["pattern"] == formats.EVENT_ID
    assert _parameter("createUpload", "Idempotency-Key")["pattern"] == formats.IDEMPOTENCY_KEY
    assert schemas["WebhookUrl"]["pattern"] == formats.WEBHOOK_URL
    assert schemas["WebhookUrl"]["maxLength"] == formats.WEBHOOK_URL_MAX


def test_the_served_document_carries_the_deployments_limits(client, settings):
    served = client.get("/v1/openapi.json").get_json()
    assert served["components"]["schemas"]["UploadSessionCreate"]["properties"]["size"]["maximum"] == \
        settings.max_upload_bytes
    assert served["components"]["parameters"]["limit"]["schema"]["maximum"] == settings.page_max
    # every operation has an id, and every link names one
    ids = {op["operationId"] for item in served["paths"].values() for op in item.values()}
    assert len(ids) == sum(len(item) for item in served["paths"].values())
    links = [link for item in served["paths"].values() for op in item.values()
             for answer in op["responses"].values() for link in (answer.get("links") or {}).values()]
    assert len(links) > 40 and {link["operationId"] for link in links} <= ids


@DRAWS
@given(st.from_regex(formats.NEWEST_CURSOR, fullmatch=True))
def test_every_newest_first_cursor_of_the_pattern_is_a_place_in_the_list(cursor):
    from api.paging import decode_cursor

    ts, row_id = decode_cursor(cursor)
    assert ts.tzinfo is not None and isinstance(row_id, uuid.UUID)
    assert re.fullmatch(formats.ITEMS_CURSOR, cursor) and not re.fullmatch(formats.REVIEW_CURSOR, cursor)


@DRAWS
@given(st.from_regex(formats.REVIEW_CURSOR, fullmatch=True))
def test_every_review_cursor_of_the_pattern_is_a_place_in_the_list(cursor):
    from api.paging import decode_confidence_cursor

    confidence, _ = decode_confidence_cursor(cursor)
    assert math.isfinite(confidence)
    assert re.fullmatch(formats.ITEMS_CURSOR, cursor) and not re.fullmatch(formats.NEWEST_CURSOR, cursor)


@DRAWS
@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(5000, 1, 1), timezones=st.just(timezone.utc)),
       st.floats(0, 1), st.uuids())
def test_the_cursors_the_api_gives_are_of_the_document_s_form_and_come_back_exactly(ts, confidence, row_id):
    from api.paging import decode_confidence_cursor, decode_cursor, encode_confidence_cursor, encode_cursor

    newest, review = encode_cursor(ts, row_id), encode_confidence_cursor(confidence, row_id)
    assert formats.matches(formats.NEWEST_CURSOR, newest) and decode_cursor(newest) == (ts, row_id)
    assert formats.matches(formats.REVIEW_CURSOR, review) and decode_confidence_cursor(review) == (confidence, row_id)
    assert decode_cursor(encode_cursor(ts.replace(tzinfo=None), row_id)) == (ts, row_id)  # SQLite's naive UTC


@DRAWS
@given(st.from_regex(formats.EVENT_ID, fullmatch=True), st.booleans())
def test_every_event_id_of_the_pattern_is_a_place_in_the_stream(event_id, aware):
    from api.events import _Cursor

    cursor = _Cursor.decode(event_id, aware)
    again = _Cursor.decode(cursor.encode(), aware)  # an id the stream sends is of the form too, the same place
    assert (again.items.newest, again.failed.newest) == (cursor.items.newest, cursor.failed.newest)


@DRAWS
@given(st.from_regex(formats.WEBHOOK_URL, fullmatch=True))
def test_every_webhook_url_of_the_pattern_passes_the_syntax_check(url):
    """What is left to refuse a URL of the pattern is where its host resolves (core.urlguard.check_url)."""
    from core.urlguard import split_url

    scheme, host, port = split_url(url[:formats.WEBHOOK_URL_MAX])
    assert scheme in ("http", "https") and host and 0 <= port <= 65535


@DRAWS
@given(st.from_regex(formats.IDEMPOTENCY_KEY, fullmatch=True))
def test_every_idempotency_key_of_the_pattern_travels_unchanged_in_a_header(key):
    assert 1 <= len(key) <= 200 and key == key.strip() and key.isascii() and key.isprintable()


def test_what_schemathesis_found_before_is_answered_as_the_document_says(client, make_user):
    """Issue 38's findings, one request each: JSON integers written with a fraction of zero are integers,
    part numbers past the upload's own are 409, and what the patterns forbid is a 400."""
    from tests.conftest import auth

    _, token = make_user()
    h = auth(token)
    made = client.post("/v1/upload-sessions", json={"size": 1744.0, "sha256": None, "filename": None}, headers=h)
    assert made.status_code == 201 and made.get_json()["size"] == 1744, made.get_json()
    parts = f"/v1/upload-sessions/{made.get_json()['id']}/parts"
    assert client.post(parts, json={"numbers": [1.0]}, headers=h).status_code == 200
    assert client.post(parts, json={"numbers": [2]}, headers=h).get_json()["error"]["code"] == "no_such_part"
    assert client.post(parts, json={"numbers": [1.5]}, headers=h).status_code == 400
    assert client.post("/v1/upload-sessions", json={"size": 1, "filename": "x" * 513}, headers=h).status_code == 400
    for bad in ("", "WyJ4Il0", "1_xyz"):
        assert client.get(f"/v1/jobs?cursor={bad}", headers=h).get_json()["error"]["code"] == "invalid_cursor"
    assert client.get("/v1/jobs?limit=+5", headers=h).status_code == 400
    key = client.post("/v1/uploads", data=b"PK", headers=h | {"Idempotency-Key": "caf\u00e9",
                                                               "Content-Type": "application/zip"})
    assert key.get_json()["error"]["code"] == "invalid_idempotency_key"


# --- schemathesis against a live server ---------------------------------------------------------------------------

def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_schemathesis_finds_nothing_against_a_live_server(settings, make_user, tmp_path):
    """`st run` as the docs give it (docs/api/index.md), with every check and the stateful phase, bounded for the
    suite: 20 examples an operation (about 800 cases, 10 s on an idle 2-core machine), the stateful phase a
    score of scenarios; no coverage phase (minutes on a busy machine: the full run is in the docs). Any failure
    fails the test."""
    _, token = make_user("schemathesis")
    port = free_port()
    # no worker: jobs stay queued. Webhook URLs are taken without looking their hosts up (this machine may
    # have no DNS), so that the endpoints' own routes are reached too
    env = service_env(settings, settings.broker_url, WARDROBE_WEBHOOK_ALLOW_PRIVATE="1")
    api = Proc(["serve", "--port", str(port), "--workers", "2"], env, tmp_path / "api.log").start()
    try:
        wait_port(port, 60)
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/v1/openapi.json"), 90, "the API to load", 0.5, api.tail)
        run = subprocess.run(
            [str(ST), "run", f"http://127.0.0.1:{port}/v1/openapi.json", "--checks", "all",
             "-H", f"Authorization: Bearer {token}", "--phases", "examples,fuzzing,stateful", "--max-examples", "20",
             "--seed", "38", "--workers", "2",
             "--request-timeout", "10", "--report", "junit", "--report-dir", str(tmp_path / "report")],
            cwd=ROOT, capture_output=True, text=True, timeout=300)  # from the root: schemathesis.toml applies
    finally:
        api.kill()
    out = run.stdout + run.stderr
    failures = out[out.find("= FAILURES ="):][:8000] if "= FAILURES =" in out else out[-6000:]
    assert run.returncode == 0, failures + "\n--- the API's log:\n" + api.tail(3000)
    generated = re.search(r"(\d+) generated", out)
    assert generated and int(generated.group(1)) >= 300 and "Stateful (disabled)" not in out, out[-3000:]
