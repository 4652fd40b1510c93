"""The CLI against a real API (PostgreSQL, Redis, moto S3) on a real port: each user mistake of issue 37
ends with one clear line and a non-zero exit, never a traceback; retry, the colour and review filters,
photo file names in the catalogue and short ids."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from tests.conftest import ROOT, auth, example_photos, free_port, wait_port, zip_bytes
from tests.helpers import run_job
from tests.test_api import upload


def wardrobe(*args, url=None, token=None, env=None, timeout=120, **kw):
    e = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    e |= {"WARDROBE_URL": url} if url else {}
    e |= {"WARDROBE_TOKEN": token} if token else {}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=e | (env or {}), capture_output=True,
                          text=True, timeout=timeout, **kw)


def one_line(r) -> str:
    """The command failed with exactly one line on stderr, no traceback; that line."""
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture()
def live(app):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    wait_port(server.server_port)
    yield f"127.0.0.1:{server.server_port}"  # no scheme: as a user types it
    server.shutdown()


@pytest.fixture()
def catalogue(live, client, make_user, rt):
    """A user with the items of three example photos (fake segmenter: two items a photo)."""
    _, token = make_user()
    job_id = upload(client, token, zip_bytes(example_photos(3))).get_json()["id"]
    run_job(rt, job_id)
    items = client.get("/v1/items?limit=100", headers=auth(token)).get_json()["items"]
    assert len(items) == 6
    return live, token, job_id, items


def test_user_mistakes_are_one_line_each(catalogue, tmp_path):
    url, token, job_id, items = catalogue
    line = one_line(wardrobe("upload", str(tmp_path / "nonexistent.zip"), url=url, token=token))
    assert "no such file" in line and "nonexistent.zip" in line
    line = one_line(wardrobe("items", "--category", "shoes", url=url, token=token))
    assert "did you mean 'shoe'" in line and "/v1/" not in line
    line = one_line(wardrobe("items", "--color", "gren", url=url, token=token))
    assert "'green'" in line
    line = one_line(wardrobe("items", url="ftp://" + url, token=token))
    assert "http:// or https://" in line
    line = one_line(wardrobe("items", url=url))
    assert "WARDROBE_TOKEN" in line
    line = one_line(wardrobe("cancel", job_id[:8], url=url, token=token))
    assert line.endswith("the job has already succeeded")
    line = one_line(wardrobe("webhooks", "add", "http://0.0.0.0/hook", url=url, token=token))
    assert "an unspecified address" in line
    line = one_line(wardrobe("item", "zz-not-an-id", url=url, token=token))
    assert "is not an item id" in line


def test_a_url_without_scheme_is_taken_as_http(catalogue):
    url, token, _, items = catalogue
    r = wardrobe("items", "--json", url=url, token=token)
    assert r.returncode == 0, r.stderr
    assert sorted(i["id"] for i in json.loads(r.stdout)) == sorted(i["id"] for i in items)


def test_a_closed_pipe_ends_quietly(catalogue):
    """`wardrobe items | head -1`: the reader has gone before the catalogue is written (a BrokenPipeError
    traceback before)."""
    url, token, _, _ = catalogue
    e = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")} | {"WARDROBE_URL": url,
                                                                                  "WARDROBE_TOKEN": token}
    p = subprocess.Popen([sys.executable, "-m", "cli.main", "items"], cwd=ROOT, env=e, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.close()  # as `head` does once it has its line
    err = p.stderr.read()
    assert p.wait(timeout=120) != 0
    assert err == "", err
    r = subprocess.run(f"{sys.executable} -m cli.main items | head -1", shell=True, cwd=ROOT, env=e,
                       capture_output=True, text=True, timeout=120)
    assert r.stdout == "6 items in 2 categories\n" and "Traceback" not in r.stderr, r.stderr


def test_catalogue_shows_photo_file_names_and_short_ids(catalogue):
    url, token, _, items = catalogue
    r = wardrobe("items", url=url, token=token)
    assert r.returncode == 0, r.stderr
    for name in example_photos(3):
        assert r.stdout.count(name) == 2  # its two items
    for it in items:
        assert it["photo_id"] not in r.stdout and it["id"][:8] in r.stdout


def test_short_ids_from_cutout_file_names(catalogue, client):
    url, token, _, items = catalogue
    target = items[0]
    r = wardrobe("item", target["id"][:8].upper(), url=url, token=token)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["id"] == target["id"]
    # a prefix that two items share (a second item made with the target's first 8 characters):
    # which ones, and nothing deleted
    twin = _item_sharing_prefix(target)
    line = one_line(wardrobe("delete", target["id"][:8], url=url, token=token))
    assert "2 items have ids starting" in line and "give more characters" in line, line
    assert client.get(f"/v1/items/{twin}", headers=auth(token)).status_code == 200
    assert client.get(f"/v1/items/{target['id']}", headers=auth(token)).status_code == 200
    assert "no item of yours" in one_line(wardrobe("delete", "ffffffff0", url=url, token=token))
    r = wardrobe("delete", target["id"][:13], url=url, token=token)
    assert r.returncode == 0 and target["id"] in r.stdout, r.stderr
    assert client.get(f"/v1/items/{target['id']}", headers=auth(token)).status_code == 404
    assert client.get(f"/v1/items/{twin}", headers=auth(token)).status_code == 200


def _item_sharing_prefix(item: dict) -> str:
    """A copy of `item` in the database under an id with the same first 8 characters (and a different
    ninth group onwards); its id."""
    import uuid

    from db.models import Item
    from db.session import session_scope

    twin_id = uuid.UUID(item["id"][:9] + ("0000" if item["id"][9:13] != "0000" else "1111") + item["id"][13:])
    with session_scope() as s:
        src = s.get(Item, uuid.UUID(item["id"]))
        cols = {c.key: getattr(src, c.key) for c in Item.__table__.columns if c.key not in ("id", "instance_index")}
        s.add(Item(**cols, id=twin_id, instance_index=src.instance_index + 100))
    return str(twin_id)


def test_items_by_colour_and_needing_review(catalogue, client):
    url, token, _, items = catalogue
    h = auth(token)
    colors = {i["color"] for i in items}
    color = sorted(colors)[0]
    r = wardrobe("items", "--color", color, "--json", url=url, token=token)
    assert r.returncode == 0, r.stderr
    assert sorted(i["id"] for i in json.loads(r.stdout)) == sorted(i["id"] for i in items if i["color"] == color)
    # the fake model is 0.9 sure of the tops and 0.6 of the shoes: ask about items below 0.7
    assert client.patch("/v1/me", headers=h, json={"review_below": 0.7}).status_code == 200
    r = wardrobe("items", "--needs-review", "--json", url=url, token=token)
    got = json.loads(r.stdout)
    assert len(got) == 3 and all(i["category"] == "shoe" and i["needs_review"] for i in got)
    r = wardrobe("items", "--needs-review", url=url, token=token)
    assert r.stdout.startswith("3 items in 1 category") and r.stdout.count("needs review") == 3


def test_retry_runs_the_failed_photos_again(live, client, make_user, rt):
    from tests.test_live import run_job_failing

    _, token = make_user()
    job_id = upload(client, token, zip_bytes(example_photos(2))).get_json()["id"]
    run_job_failing(rt, job_id)
    r = wardrobe("retry", job_id[:8], url=live, token=token)
    assert r.returncode == 0, r.stderr
    assert "2 photos going again" in r.stderr and json.loads(r.stdout)["status"] == "queued"
    line = one_line(wardrobe("retry", job_id, url=live, token=token))
    assert "job_active" in line


def test_an_error_after_a_progress_bar_starts_its_own_line(tmp_path, capsys):
    """A download cut midway: the bar was drawn, then the error; the error is not glued onto the bar's line."""
    import socket

    from cli.client import ApiClient
    from cli.main import run

    srv = socket.create_server(("127.0.0.1", 0))

    def answer_part_of_it():
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4000000\r\n\r\n" + b"x" * 1_500_000)  # more than a chunk
        conn.close()

    threading.Thread(target=answer_part_of_it, daemon=True).start()
    c = ApiClient(f"127.0.0.1:{srv.getsockname()[1]}", "wdr_x")
    assert run(lambda a: c.download("/x", tmp_path / "out.zip"), None) == 1
    srv.close()
    err = capsys.readouterr().err
    bar_line, error_line = err.rsplit("\n", 2)[:2] if err.endswith("\n") else (None, None)
    assert bar_line is not None and "downloading [" in bar_line and "error" not in bar_line, repr(err)
    assert error_line.startswith("error: the download stopped"), repr(err)


def test_help_says_where_the_token_and_address_come_from():
    r = wardrobe("--help")
    assert r.returncode == 0 and "WARDROBE_TOKEN" in r.stdout and "WARDROBE_URL" in r.stdout


def test_an_address_that_is_not_the_api_is_one_line(tmp_path):
    """WARDROBE_URL pointing at another web server: a page of HTML where JSON was expected (a traceback
    before), and its HTML error page (printed over many lines before)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Other(BaseHTTPRequestHandler):
        def do_GET(self):
            status = 200 if self.path.startswith("/v1/items") else 404
            body = b"<html>\n<body>\n<p>Some other site</p>\n</body>\n</html>\n"
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *_):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"127.0.0.1:{srv.server_address[1]}"
    try:
        line = one_line(wardrobe("items", url=url, token="wdr_x"))
        assert "not JSON" in line and url in line, line
        line = one_line(wardrobe("jobs", url=url, token="wdr_x"))
        assert "HTTP 404" in line and "Some other site" in line, line
        zipped = tmp_path / "photos.zip"
        zipped.write_bytes(zip_bytes(example_photos(1)))
        line = one_line(wardrobe("upload", str(zipped), "--resumable", "always", url=url, token="wdr_x",
                                 env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}))
        assert "HTTP 404" in line and "Some other site" in line, line
    finally:
        srv.shutdown()
