"""Slow and half-open clients (issue 36, 1): a real `wardrobe serve` keeps answering beside them on
its own (gevent workers), and the nginx proxy that compose and the Kubernetes manifests put in front
is a valid configuration that passes live streams and resumable chunks through."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from bench.slowclients import half_open
from tests.conftest import ROOT, free_port, wait_port
from tests.procs import Proc, service_env

TEMPLATE = ROOT / "deploy" / "nginx" / "wardrobe.conf.template"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def _slow_chunk(port: int, token: str) -> socket.socket:
    """A resumable upload whose chunk announces 64 KiB and sends 16 bytes of it."""
    r = requests.post(f"http://127.0.0.1:{port}/v1/upload-sessions", json={"filename": "a.zip", "size": 65536},
                      headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 201 and r.json()["mode"] == "chunked", r.text
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall((f"PATCH {r.headers['Location']} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
               "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: 65536\r\n\r\n"
               ).encode() + b"x" * 16)
    return s


def test_half_open_and_slow_clients_leave_the_api_answering(settings, make_user, tmp_path):
    """Before: 12 half-open sockets made /healthz time out on `wardrobe serve` (one process: its threads
    were each held reading a request that never ends), and slow chunks stalled another user's /v1/jobs.
    Here 60 half-open sockets and 12 slow chunks on one worker process; the timeouts are generous (a
    busy machine), the point is an answer at all."""
    _, token = make_user()
    _, other = make_user()
    port = free_port()
    env = service_env(settings, settings.broker_url, WARDROBE_STORAGE_URL=f"file://{tmp_path / 'objects'}",
                      WARDROBE_MAX_UPLOAD_SESSIONS=0)
    api = Proc(["serve", "--port", str(port), "--workers", "1"], env, tmp_path / "api.log").start()
    held: list[socket.socket] = []
    try:
        wait_port(port, 60)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=60).status_code == 200  # the app is loaded
        held += [_slow_chunk(port, token) for _ in range(12)]
        held += half_open(port, 60)
        time.sleep(0.5)
        for _ in range(3):
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
            r = requests.get(f"http://127.0.0.1:{port}/v1/jobs", headers={"Authorization": f"Bearer {other}"}, timeout=30)
            assert r.status_code == 200, r.text
    finally:
        for s in held:
            s.close()
        api.kill()
    assert "psycopg was imported before gevent" not in api.tail(100_000)


def test_psycopg_waits_through_gevent_in_the_servers_processes():
    """psycopg 3 is not patched by gevent: it must pick its select-based wait, which only happens when
    gevent patched `select` before psycopg was imported (what gunicorn's worker does before loading the
    app). The C wait would block every connection of the process while one waits for PostgreSQL."""
    code = ("from gevent import monkey; monkey.patch_all()\n"
            "import api.wsgi\n"
            "from api.server_gevent import waits_cooperatively\n"
            "import psycopg.waiting as w; print(waits_cooperatively(), w.wait.__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "WARDROBE_DATA_DIR": os.environ.get("WARDROBE_DATA_DIR", "/tmp/wardrobe-test")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[0] == "True", out.stdout
    # and the master process never imports psycopg before forking (gunicorn loads the worker class there)
    code = "import sys; import api.server_gevent; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", (out.stdout, out.stderr[-2000:])


def test_the_kubernetes_proxy_carries_the_same_nginx_site():
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "base" / "proxy.yaml").read_text()))
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert cm["data"]["default.conf.template"] == TEMPLATE.read_text()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["proxy"]["image"].startswith("nginx:") and "ports" not in compose["api"]
    assert compose["proxy"]["ports"][0].startswith("${API_PUBLISH_HOST:-127.0.0.1}:")


def _nginx_prefix(tmp_path: Path, listen: int, upstream: str) -> Path:
    from bench.slowclients import nginx_conf

    return nginx_conf(tmp_path / "nginx", listen, upstream)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")
def test_the_nginx_site_is_valid(tmp_path):
    conf = _nginx_prefix(tmp_path, free_port(), "127.0.0.1:8000")
    r = subprocess.run([NGINX, "-t", "-p", str(conf.parent), "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    site = TEMPLATE.read_text()
    for directive in ("client_header_timeout", "client_body_timeout", "send_timeout", "keepalive_timeout",
                      "proxy_request_buffering off", "proxy_buffering off"):
        assert directive in site, directive


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")
def test_through_nginx_streams_pass_at_once_and_half_open_clients_stop_there(settings, make_user, client, tmp_path):
    """A real `wardrobe serve` behind nginx with the deployed site: a job's first live event arrives
    while the stream is open (not held in a buffer), a resumable chunk is appended, and 60 half-open
    sockets at nginx leave /healthz answering."""
    from tests.conftest import example_photos, zip_bytes
    from tests.test_api import upload

    _, token = make_user()
    h = {"Authorization": f"Bearer {token}"}
    job_id = upload(client, token, zip_bytes(example_photos(1))).get_json()["id"]  # queued: no worker here
    port, nport = free_port(), free_port()
    env = service_env(settings, settings.broker_url, WARDROBE_STORAGE_URL=f"file://{tmp_path / 'objects'}")
    api = Proc(["serve", "--port", str(port), "--workers", "1"], env, tmp_path / "api.log").start()
    conf = _nginx_prefix(tmp_path, nport, f"127.0.0.1:{port}")
    nginx = subprocess.Popen([NGINX, "-p", str(conf.parent), "-c", str(conf)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    held: list[socket.socket] = []
    try:
        wait_port(port, 60)
        wait_port(nport, 30)
        base = f"http://127.0.0.1:{nport}"
        assert requests.get(f"{base}/healthz", timeout=60).status_code == 200
        with requests.get(f"{base}/v1/jobs/{job_id}/events", headers=h, stream=True, timeout=30) as r:
            assert r.status_code == 200
            first = next(line for line in r.iter_lines(decode_unicode=True) if line.startswith("event:"))
            assert first == "event: progress"
        r = requests.post(f"{base}/v1/upload-sessions", json={"filename": "a.zip", "size": 1000}, headers=h, timeout=30)
        assert r.status_code == 201, r.text
        r = requests.patch(base + r.headers["Location"], data=b"z" * 100, timeout=30, headers=h | {
            "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0", "Tus-Resumable": "1.0.0"})
        assert r.status_code == 204 and r.headers["Upload-Offset"] == "100", (r.status_code, r.text)
        held += half_open(nport, 60)
        for _ in range(3):
            assert requests.get(f"{base}/healthz", timeout=30).status_code == 200
    finally:
        for s in held:
            s.close()
        nginx.terminate()
        nginx.wait(10)
        api.kill()


def test_a_closed_stream_gives_its_slot_back_within_seconds(settings, make_user, client, tmp_path):
    """Issue 36: a closed stream's slot came back only at the server's next write (a keep-alive, 10-20 s
    later). A real `wardrobe serve` with one stream a process and keep-alives a minute apart: once the
    first client closes its stream, a second is let in within seconds (30 s allowed: a busy machine),
    where before it was refused with 503 until the next keep-alive."""
    from tests.conftest import example_photos, zip_bytes
    from tests.procs import wait_for
    from tests.test_api import upload

    _, token = make_user()
    h = {"Authorization": f"Bearer {token}"}
    job_id = upload(client, token, zip_bytes(example_photos(1))).get_json()["id"]  # queued: no worker here
    port = free_port()
    env = service_env(settings, settings.broker_url, WARDROBE_EVENTS_MAX_STREAMS=1, WARDROBE_EVENTS_HEARTBEAT=120,
                      WARDROBE_EVENTS_POLL=0.5)
    api = Proc(["serve", "--port", str(port), "--workers", "1"], env, tmp_path / "api.log").start()
    url = f"http://127.0.0.1:{port}/v1/jobs/{job_id}/events"
    try:
        wait_port(port, 60)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=60).status_code == 200
        first = requests.get(url, headers=h, stream=True, timeout=60)
        assert first.status_code == 200
        # the iterator is kept: a dropped one is closed at once, and urllib3 closes the connection under
        # an unfinished chunked body, which the server then sees as the client gone
        lines = first.iter_lines(decode_unicode=True)
        next(line for line in lines if line.startswith("event:"))
        busy = requests.get(url, headers=h, timeout=30)
        assert busy.status_code == 503 and busy.json()["error"]["code"] == "too_many_streams", busy.text
        first.close()
        t0 = time.monotonic()

        def let_in() -> bool:
            r = requests.get(url, headers=h, stream=True, timeout=30)
            r.close()
            return r.status_code == 200

        wait_for(let_in, 30, "a new stream let in after the first closed", interval=0.5, on_fail=api.tail)
        print(f"slot back {time.monotonic() - t0:.1f} s after the client closed")
    finally:
        api.kill()
