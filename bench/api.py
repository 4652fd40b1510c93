"""`make bench-api`: the API under load and the upload's memory, against gunicorn on the real
services (PostgreSQL and Redis; uploads go to a local storage folder so the figure is the API's).

  1. poll (GET /v1/jobs/<id>) and catalogue (GET /v1/items?limit=50 over 2,000 items) at a fixed
     200 requests/s, open loop: latency counts from each request's scheduled time, so a slow
     server cannot hide behind a slow client (no coordinated omission);
  2. a 1 GiB zip uploaded as a raw body: the serving process's peak RSS above its idle RSS.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

from bench.scratch import free_port

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("WARDROBE_BENCH_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def open_loop(port: int, path: str, headers: dict, rate: float, seconds: float, threads: int = 32) -> dict:
    n_total = int(rate * seconds)
    lat: list[float] = []
    errors = [0]
    counter = [0]
    lock = threading.Lock()
    t0 = time.perf_counter() + 0.2

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                i = counter[0]
                counter[0] += 1
            if i >= n_total:
                break
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                conn.request("GET", path, headers=headers)
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                ok = False
            done = time.perf_counter()
            with lock:
                lat.append(done - scheduled)
                if not ok:
                    errors[0] += 1
        conn.close()

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    lat.sort()

    def pct(p):
        return round(1000 * lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 2)

    return {"requests": len(lat), "errors": errors[0], "achieved_rps": round(len(lat) / elapsed, 1),
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": round(1000 * lat[-1], 2)}


def rss_kb(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def big_zip(path: Path, size: int) -> None:
    chunk = os.urandom(1 << 20)  # incompressible, as photos are; stored, not deflated
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open(zipfile.ZipInfo("photos/big.jpg"), "w", force_zip64=True) as f:
            for _ in range(size // len(chunk)):
                f.write(chunk)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--upload-gib", type=float, default=1.0)
    ap.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1), help="gunicorn processes (serve's default)")
    ap.add_argument("--threads", type=int, default=2, help="threads per gunicorn process (serve's default)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "api.json"))
    args = ap.parse_args(argv)

    from sqlalchemy import create_engine, text

    subprocess.run(["bash", str(ROOT / "scripts" / "services.sh")], check=True, stdout=subprocess.DEVNULL)
    dbname = f"wardrobe_bench_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{dbname}"'))
    tmp = Path(tempfile.mkdtemp(prefix="wardrobe-bench-api-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    env.update(WARDROBE_DATABASE_URL=PG_ADMIN.rsplit("/", 1)[0] + "/" + dbname, WARDROBE_BROKER_URL="redis://127.0.0.1:6379/11",
               WARDROBE_DATA_DIR=str(tmp), WARDROBE_STORAGE_URL=f"file://{tmp}/objects", WARDROBE_LOG_LEVEL="WARNING",
               WARDROBE_MAX_UPLOAD_BYTES=str(4 << 30), WARDROBE_MAX_TOTAL_UNCOMPRESSED_BYTES=str(4 << 30))
    exe = [sys.executable, "-m", "cli.main"]
    report: dict = {"rate": args.rate, "seconds": args.seconds, "workers": args.workers, "threads": args.threads}
    server = None
    try:
        subprocess.run(exe + ["migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
        token = subprocess.run(exe + ["users", "create", "bench"], env=env, cwd=ROOT, check=True, capture_output=True,
                               text=True).stdout.strip()
        eng = create_engine(env["WARDROBE_DATABASE_URL"])
        with eng.begin() as c:
            uid = c.execute(text("SELECT id FROM users WHERE name = 'bench'")).scalar()
            job = uuid.uuid4()
            c.execute(text("INSERT INTO jobs (id, user_id, status, created_at, updated_at, upload_key, upload_bytes, upload_sha256,"
                           " photos_total, photos_done, photos_failed, photos_duplicate, items_found, ingest_finished)"
                           " VALUES (:j, :u, 'succeeded', now(), now(), 'k', 0, '0', 200, 200, 0, 0, 2000, true)"),
                      {"j": job, "u": uid})
            photos = [uuid.uuid4() for _ in range(200)]
            c.execute(text("INSERT INTO photos (id, user_id, job_id, entry_index, entry_name, status, created_at)"
                           " VALUES (:id, :u, :j, :i, :n, 'done', now())"),
                      [{"id": p, "u": uid, "j": job, "i": i, "n": f"{i}.jpg"} for i, p in enumerate(photos)])
            poly = [[[10.0 + k, 20.0], [60.0, 20.0 + k], [60.0, 90.0], [10.0, 90.0]] for k in range(3)]
            c.execute(text("INSERT INTO items (id, user_id, photo_id, job_id, instance_index, class_id, category, supercategory,"
                           " confidence, bbox, polygons, area_fraction, model_version, cutout_key, cutout_content_type,"
                           " created_at, colors, color, status)"
                           " VALUES (:id, :u, :p, :j, :k, 0, 'shoe', 'legs and feet', 0.9, CAST(:bbox AS JSON), CAST(:poly AS JSON),"
                           " 0.05, 'bench', 'k', 'image/webp', now() - make_interval(secs => :age), CAST(:colors AS JSON), 'black', 'ok')"),
                      [{"id": uuid.uuid4(), "u": uid, "p": photos[i // 10], "j": job, "k": i % 10, "bbox": "[10, 20, 60, 90]",
                        "poly": json.dumps(poly), "age": i, "colors": '[{"hex": "#141416", "name": "black", "fraction": 1.0}]'}
                       for i in range(2000)])
        with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("ANALYZE"))  # what autovacuum does soon after a bulk load; without it the planner sorts all
        eng.dispose()
        port = free_port()
        server = subprocess.Popen(exe + ["serve", "--port", str(port), "--workers", str(args.workers), "--threads", str(args.threads)], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        h = {"Authorization": f"Bearer {token}"}
        for _ in range(200):
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        open_loop(port, f"/v1/jobs/{job}", h, rate=50, seconds=2)  # warm the pools
        report["poll"] = open_loop(port, f"/v1/jobs/{job}", h, args.rate, args.seconds)
        report["catalogue"] = open_loop(port, "/v1/items?limit=50", h, args.rate, args.seconds)

        zpath = tmp / "big.zip"
        big_zip(zpath, int(args.upload_gib * (1 << 30)))
        pids = [server.pid] + children(server.pid)
        idle = {p: rss_kb(p) for p in pids}
        peak = dict(idle)
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                for p in pids:
                    peak[p] = max(peak[p], rss_kb(p))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        with open(zpath, "rb") as f:
            conn.request("POST", "/v1/uploads", body=f, headers=h | {"Content-Type": "application/zip",
                                                                      "Content-Length": str(zpath.stat().st_size)})
            resp = conn.getresponse()
            resp.read()
        dt = time.perf_counter() - t0
        stop.set()
        sampler.join()
        report["upload"] = {"bytes": zpath.stat().st_size, "status": resp.status, "seconds": round(dt, 2),
                            "mb_per_s": round(zpath.stat().st_size / dt / 1e6, 1),
                            "idle_rss_mb": round(max(idle.values()) / 1024, 1),
                            "rss_rise_mb": round(max(peak[p] - idle[p] for p in pids) / 1024, 1)}
    finally:
        if server:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        admin.dispose()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)

    print(f"open loop at {args.rate:.0f} requests/s for {args.seconds:.0f}s (gunicorn, {args.workers} workers x "
          f"{args.threads} threads, PostgreSQL)")
    for name in ("poll", "catalogue"):
        r = report[name]
        print(f"  {name:10} p50 {r['p50_ms']:7.2f} ms  p90 {r['p90_ms']:7.2f}  p99 {r['p99_ms']:7.2f}  max {r['max_ms']:7.2f}"
              f"  ({r['requests']} requests, {r['errors']} errors, {r['achieved_rps']} req/s)")
    u = report["upload"]
    print(f"upload of {u['bytes'] / (1 << 30):.2f} GiB: HTTP {u['status']} in {u['seconds']}s ({u['mb_per_s']} MB/s), "
          f"serving process RSS rose {u['rss_rise_mb']} MB above idle ({u['idle_rss_mb']} MB)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
