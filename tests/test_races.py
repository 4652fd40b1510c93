"""Requests at once, over real HTTP (a threaded server), on PostgreSQL and on the embedded SQLite default
(issue 36 #10): a limit checked by a count is not passed by requests that all counted before any wrote,
and completes of one upload session all answer its one job."""
from __future__ import annotations

import hashlib
import threading
import uuid
from dataclasses import replace

import pytest
import requests
from sqlalchemy import func, select

from db.models import WebhookEndpoint
from db.session import session_scope
from tests.conftest import auth, example_photos, free_port, wait_port, zip_bytes


@pytest.fixture()
def serve_on(rt, clean_db, tmp_path):
    """The app over HTTP on PostgreSQL (the session's) or on a SQLite file with folder storage and the
    filesystem broker (the embedded default); the session's runtime again afterwards."""
    from werkzeug.serving import make_server

    from api.app import create_app
    from services.bootup import bootup

    servers = []

    def start(database: str, **changes):
        settings = replace(rt.settings, **changes)
        if database == "sqlite":
            settings = replace(settings, database_url=f"sqlite:///{tmp_path / 'w.db'}", broker_url="",
                               storage_url=f"file://{tmp_path / 'objects'}", data_dir=str(tmp_path),
                               auto_migrate=True)
        bootup(settings, force=True)
        app = create_app(settings)
        server = make_server("127.0.0.1", free_port(), app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        wait_port(server.server_port)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
    bootup(rt.settings, force=True)


def at_once(n: int, call) -> list:
    """`call(i)` on n threads released together; their results in order."""
    gate = threading.Barrier(n)
    out: list = [None] * n

    def run(i: int) -> None:
        gate.wait()
        out[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_thirty_webhook_registrations_at_once_make_no_more_than_the_limit(serve_on, make_user, database):
    """30 concurrent POST /v1/webhooks created 22-25 endpoints against a limit of 20."""
    url = serve_on(database, webhook_max_endpoints=20)
    uid, token = make_user()
    codes = at_once(30, lambda i: requests.post(f"{url}/v1/webhooks", json={"url": f"https://93.184.216.34/h{i}"},
                                                headers=auth(token), timeout=60).status_code)
    assert sorted(codes) == [201] * 20 + [409] * 10, codes
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.user_id == uid)) == 20


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_four_completes_of_one_upload_session_at_once_answer_the_same_job(serve_on, make_user, database):
    """On SQLite, 4 concurrent completes answered 202, 409 upload_incomplete ("0 of ... bytes are
    received") and 404: the session's FOR UPDATE is no lock there."""
    url = serve_on(database, storage_url="")  # PostgreSQL with folder storage too: chunked sessions both ways
    uid, token = make_user()
    data = zip_bytes(example_photos(2))
    h = auth(token)
    sess = requests.post(f"{url}/v1/upload-sessions", headers=h, timeout=30,
                         json={"filename": "a.zip", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}).json()
    where = f"{url}/v1/upload-sessions/{sess['id']}"
    r = requests.patch(where, data=data, timeout=30,
                       headers=h | {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert r.status_code == 204, r.text
    answers = at_once(4, lambda i: requests.post(f"{where}/complete", headers=h, timeout=60))
    assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
    jobs = {a.json()["id"] for a in answers}
    assert len(jobs) == 1 and uuid.UUID(jobs.pop())
