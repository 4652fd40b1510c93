"""Slow and half-open clients against a real API, and what a normal client sees meanwhile.

The attack of issue 36: sockets that send `GET /healthz HTTP/1.1\\r\\nHost: x\\r\\nX-a: ` and wait
(half-open), and authenticated resumable-upload chunks (PATCH) that announce a length and send a
few bytes a second (slow uploads). During the phase one client asks GET /healthz and GET /v1/jobs
in turn (a 30 s timeout each) and the latencies give the p50/p99; a timeout counts as 30 s.

`phase()` is what `make chaos` runs (in front of nginx and without it); `python -m bench.slowclients`
alone compares gunicorn's worker classes (gevent against gthread) on the same machine and writes
bench/out/slowclients.json. Loads go to 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("WARDROBE_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PROBE_TIMEOUT = 30.0
NGINX_SITE = ROOT / "deploy" / "nginx" / "wardrobe.conf.template"


def half_open(port: int, n: int) -> list[socket.socket]:
    """n connections that each send the start of a request and never finish it."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-a: ")
        socks.append(s)
    return socks


def slow_upload(port: int, token: str, stop: threading.Event, started: list, size: int = 1 << 20) -> None:
    """One upload that announces `size` bytes and sends 16 a second until stopped: a resumable chunk
    (PATCH) where the storage takes chunks (folder storage), else a plain POST /v1/uploads (S3)."""
    url = f"http://127.0.0.1:{port}"
    head = f"Host: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {size}\r\n"
    try:
        r = requests.post(f"{url}/v1/upload-sessions", json={"filename": "slow.zip", "size": size},
                          headers={"Authorization": f"Bearer {token}"}, timeout=PROBE_TIMEOUT)
        if r.status_code == 201 and r.json().get("mode") == "chunked":
            line = (f"PATCH {r.headers['Location']} HTTP/1.1\r\n{head}Tus-Resumable: 1.0.0\r\n"
                    "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n\r\n")
        else:
            line = f"POST /v1/uploads HTTP/1.1\r\n{head}Content-Type: application/zip\r\n\r\n"
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(line.encode())
        started.append(line.split(" ", 1)[0])
        while not stop.wait(1.0):
            s.sendall(b"x" * 16)
        s.close()
    except (OSError, requests.RequestException, ValueError, KeyError):
        return


def p(values: list[float], q: float) -> float:
    v = sorted(values)
    return round(v[min(len(v) - 1, int(q * len(v)))], 4) if v else float("nan")


def probe(port: int, token: str, seconds: float) -> dict:
    """GET /healthz and GET /v1/jobs in turn for `seconds`: latencies (a timeout counts as PROBE_TIMEOUT)."""
    url = f"http://127.0.0.1:{port}"
    lat: dict[str, list[float]] = {"healthz": [], "jobs": []}
    failed = {"healthz": 0, "jobs": 0}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for name, path, headers in (("healthz", "/healthz", {}),
                                    ("jobs", "/v1/jobs", {"Authorization": f"Bearer {token}"})):
            t0 = time.monotonic()
            try:
                ok = requests.get(url + path, headers=headers, timeout=PROBE_TIMEOUT).status_code == 200
            except requests.RequestException:
                ok = False
            lat[name].append(time.monotonic() - t0)
            failed[name] += not ok
        time.sleep(0.05)
    return {name: {"requests": len(v), "failed": failed[name], "p50_s": p(v, 0.5), "p99_s": p(v, 0.99),
                   "max_s": round(max(v), 3)} for name, v in lat.items()}


def phase(port: int, tokens: list[str], half: int = 200, uploads: int = 20, seconds: float = 20.0) -> dict:
    """`half` half-open connections and `uploads` slow uploads (spread over tokens[1:]) held open while
    tokens[0]'s client probes; all closed after."""
    stop = threading.Event()
    socks: list[socket.socket] = []
    started: list[str] = []
    threads = [threading.Thread(target=slow_upload, args=(port, tokens[1 + k % (len(tokens) - 1)], stop, started),
                                daemon=True) for k in range(uploads)]
    try:
        for t in threads:
            t.start()
        socks = half_open(port, half)
        time.sleep(1.0)
        out = probe(port, tokens[0], seconds)
        out["slow_uploads_sending"] = {m: started.count(m) for m in sorted(set(started))}
    finally:
        stop.set()
        for s in socks:
            s.close()
        for t in threads:
            t.join(15)
    return {"half_open": half, "slow_uploads": uploads, "seconds": seconds, **out}


def nginx_conf(prefix: Path, listen: int, upstream: str) -> Path:
    """The deployed nginx site (deploy/nginx) in a main config of its own under `prefix`."""
    site = NGINX_SITE.read_text().replace("${API_UPSTREAM}", upstream).replace("listen 8080", f"listen 127.0.0.1:{listen}")
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    (prefix / "site.conf").write_text(site)
    conf = prefix / "nginx.conf"
    conf.write_text(f"daemon off;\nmaster_process on;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
                    f"error_log {prefix}/logs/error.log warn;\nevents {{ worker_connections 4096; }}\n"
                    f"http {{\n  access_log off;\n  client_body_temp_path {prefix}/body;\n"
                    f"  proxy_temp_path {prefix}/proxy;\n  include {prefix}/site.conf;\n}}\n")
    return conf


def start_nginx(prefix: Path, listen: int, upstream: str) -> subprocess.Popen | None:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not binary:
        return None
    conf = nginx_conf(prefix, listen, upstream)
    proc = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=open(prefix / "logs" / "stderr.log", "wb"), start_new_session=True)
    from bench.scratch import wait_port

    wait_port(listen, 15)
    return proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--half-open", type=int, default=200)
    ap.add_argument("--uploads", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20.0, help="probing time per phase")
    ap.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    ap.add_argument("--servers", default="gthread,gevent")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "slowclients.json"))
    a = ap.parse_args()

    from bench.procs import Proc, RedisServer
    from bench.scratch import free_port, scratch_database, wait_port

    tmp = Path(tempfile.mkdtemp(prefix="wardrobe-slow-"))
    report: dict = {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()[0], "runs": []}
    with scratch_database(PG_ADMIN, "wardrobe_slow") as db_url:
        redis = RedisServer(tmp).start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
        env.update(WARDROBE_DATABASE_URL=db_url, WARDROBE_BROKER_URL=redis.url, WARDROBE_DATA_DIR=str(tmp / "data"),
                   WARDROBE_STORAGE_URL=f"file://{tmp}/objects", WARDROBE_MAX_UPLOADS_PER_HOUR="0",
                   WARDROBE_MAX_UPLOAD_SESSIONS="0", WARDROBE_LOG_LEVEL="WARNING")
        os.environ.update({k: v for k, v in env.items() if k.startswith("WARDROBE_")})
        subprocess.run([sys.executable, "-m", "cli.main", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
        from core.config import Settings
        from services.bootup import bootup
        from db.session import session_scope
        from db.users import create_user

        bootup(Settings.from_env())
        with session_scope() as s:
            tokens = [create_user(s, f"slow-{i}")[1] for i in range(5)]
        try:
            for server in a.servers.split(","):
                port = free_port()
                api = Proc(["serve", "--port", str(port), "--workers", str(a.workers), "--server", server], env,
                           tmp / f"api-{server}.log").start()
                nginx = None
                try:
                    wait_port(port, 60)
                    targets = [("direct", port)]
                    nport = free_port()
                    nginx = start_nginx(tmp / f"nginx-{server}", nport, f"127.0.0.1:{port}")
                    if nginx:
                        targets.append(("nginx", nport))
                    for via, target in targets:
                        print(f"[{time.strftime('%H:%M:%S')}] {server} {via}: {a.half_open} half-open, {a.uploads} slow uploads",
                              flush=True)
                        probe(target, tokens[0], 2)  # warm-up: the app's first requests load it
                        quiet = probe(target, tokens[0], 5)
                        got = phase(target, tokens, a.half_open, a.uploads, a.seconds)
                        row = {"server": server, "via": via, "quiet": quiet, "under_attack": got}
                        report["runs"].append(row)
                        print(f"  quiet: healthz p99 {quiet['healthz']['p99_s']} s, jobs p99 {quiet['jobs']['p99_s']} s | "
                              f"attacked: healthz p99 {got['healthz']['p99_s']} s ({got['healthz']['failed']} failed of "
                              f"{got['healthz']['requests']}), jobs p99 {got['jobs']['p99_s']} s ({got['jobs']['failed']} "
                              f"failed of {got['jobs']['requests']})", flush=True)
                        time.sleep(2)
                finally:
                    if nginx:
                        nginx.terminate()
                        nginx.wait(10)
                    api.kill()
        finally:
            redis.kill()
    report["loadavg_at_end"] = os.getloadavg()[0]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    from bench.provenance import stamp

    Path(a.out).write_text(json.dumps(stamp(report, "bench.slowclients"), indent=2) + "\n")
    print(f"written {a.out}; logs in {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
