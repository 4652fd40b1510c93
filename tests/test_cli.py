"""The CLI as a new user meets it: short errors, help on every option, plain counts, duplicates said."""
from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _wardrobe(*args, env=None, timeout=120):
    e = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=e, capture_output=True, text=True,
                          timeout=timeout)


def test_an_unreachable_api_is_one_line_not_a_traceback():
    r = _wardrobe("items", "--url", "http://127.0.0.1:9", "--token", "wdr_x")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "cannot reach the API at http://127.0.0.1:9" in r.stderr


def test_every_option_has_help():
    from cli.main import build_parser

    parser = build_parser()
    missing = [(name, a.option_strings) for name, sp in parser._subparsers._group_actions[0].choices.items()
               for a in sp._actions if a.option_strings and not a.help]
    assert not missing, missing


def test_catalogue_counts_read_as_english():
    from cli.catalogue import print_catalogue

    item = {"id": "i", "photo_id": "p", "category": "shoe", "supercategory": "legs and feet", "confidence": 0.9,
            "area_fraction": 0.1, "bbox": [0, 0, 1, 1]}
    out = io.StringIO()
    print_catalogue([item], out=out)
    assert out.getvalue().startswith("1 item in 1 category\n")
    out = io.StringIO()
    print_catalogue([item, dict(item, id="j", category="hat", supercategory="head")], out=out)
    assert out.getvalue().startswith("2 items in 2 categories\n")


def test_a_job_of_duplicates_says_so():
    from cli.catalogue import duplicate_note

    job = {"progress": {"photos_total": 6, "photos_duplicate": 6}}
    assert duplicate_note(job).startswith("all 6 photos of this upload were already in your catalogue")
    assert duplicate_note({"progress": {"photos_total": 6, "photos_duplicate": 0}}) is None


def test_wait_says_when_no_worker_takes_the_job(monkeypatch, capsys):
    from cli.client import ApiClient

    polls = iter(["queued", "queued", "succeeded"])
    progress = {"photos_total": 0, "photos_done": 0, "photos_failed": 0, "photos_duplicate": 0, "items_found": 0}
    c = ApiClient("http://127.0.0.1:9", "wdr_x")
    monkeypatch.setattr(c, "get", lambda path: {"status": next(polls), "progress": progress})
    assert c.wait("j1", poll=0.01, worker_wait=0)["status"] == "succeeded"
    assert "waiting for a worker" in capsys.readouterr().err


def test_users_list_tokens_and_revoke(tmp_path):
    env = {"WARDROBE_DATA_DIR": str(tmp_path)}
    assert _wardrobe("users", "create", "ada", env=env).returncode == 0
    first = _wardrobe("users", "token", "ada", env=env).stdout.strip()
    listed = _wardrobe("users", "list", env=env)
    assert listed.returncode == 0 and "ada" in listed.stdout and "2 live tokens" in listed.stdout
    tokens = _wardrobe("users", "tokens", "ada", env=env).stdout
    assert tokens.count("live") == 2 and first[:10] in tokens
    only = _wardrobe("users", "token", "ada", "--revoke-others", env=env)
    assert only.returncode == 0 and "1 live token" in _wardrobe("users", "list", env=env).stdout
    r = _wardrobe("users", "revoke", "ada", env=env)
    assert r.returncode == 0 and "revoked 1 token" in r.stderr
    assert "0 live tokens" in _wardrobe("users", "list", env=env).stdout
    assert _wardrobe("users", "revoke", "nobody", env=env).returncode == 2
    assert _wardrobe("users", "tokens", env=env).returncode == 2  # a NAME is needed


@pytest.mark.parametrize("args", [["workers", "--timeout", "0.3"]])
def test_workers_says_when_none_answers(tmp_path, args):
    r = _wardrobe(*args, env={"WARDROBE_DATA_DIR": str(tmp_path)})
    assert r.returncode == 1 and "no worker answered" in r.stderr


def test_a_download_cut_midway_is_one_line_and_leaves_no_part_file(tmp_path):
    """The connection drops after a thousand bytes of a 100 kB answer: one line saying so, and no
    half-written `.part` file left beside where the zip was to go (it was a traceback and a leftover)."""
    import socket
    import threading

    from cli.client import ApiClient

    srv = socket.create_server(("127.0.0.1", 0))

    def answer_part_of_it():
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        conn.close()

    threading.Thread(target=answer_part_of_it, daemon=True).start()
    dst = tmp_path / "catalogue.zip"
    with pytest.raises(SystemExit) as e:
        ApiClient(f"http://127.0.0.1:{srv.getsockname()[1]}", "wdr_x").download("/v1/exports/x/download", dst, progress=False)
    srv.close()
    assert "download" in str(e.value) and "again" in str(e.value)
    assert list(tmp_path.iterdir()) == []
