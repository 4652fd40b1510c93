"""`make bench-api`: the API under load and the upload's memory, against gunicorn on the real
services (PostgreSQL and Redis; uploads go to a local storage folder so the figure is the API's).

  1. poll (GET /v1/jobs/<id>) and catalogue (GET /v1/items?limit=50 over 2,000 items) at a fixed
     200 requests/s, open loop: latency counts from each request's scheduled time, so a slow
     server cannot hide behind a slow client (no coordinated omission). Each phase also counts the
     CPU it cost: the gunicorn processes' and the database's backends' (from /proc), per request,
     which, unlike latency, hardly moves when other work shares the cores;
  2. a 1 GiB zip uploaded as a raw body: the serving process's peak RSS above its idle RSS.

`--baseline REF` serves git's REF (e.g. main) beside the working tree, on the same database, and
runs the poll and catalogue phases against each in turn (--rounds times), so before and after are
measured in the same conditions.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

from bench.loadgen import cpu_seconds, open_loop
from bench.provenance import stamp
from bench.scratch import free_port

ROOT = Path(__file__).resolve().parents[1]
START_SECONDS = 30  # how long a server may take to answer /healthz before it is stopped
PG_ADMIN = os.environ.get("WARDROBE_BENCH_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


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


def seed(url: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The bench's catalogue in a migrated database: one user ('bench') with a finished job of 200
    photos and 2,000 items of three polygons each, a third with the model's alternatives, a
    quarter below the default review threshold. Returns (user id, job id)."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
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
        alts = json.dumps([{"class_id": 1, "category": "sock", "confidence": 0.21}, {"class_id": 0, "confidence": 0.1}])
        c.execute(text("INSERT INTO items (id, user_id, photo_id, job_id, instance_index, class_id, category, supercategory,"
                       " confidence, bbox, polygons, area_fraction, model_version, cutout_key, cutout_content_type,"
                       " created_at, colors, color, status, alternatives)"
                       " VALUES (:id, :u, :p, :j, :k, 0, 'shoe', 'legs and feet', :conf, CAST(:bbox AS JSON), CAST(:poly AS JSON),"
                       " 0.05, 'bench', 'k', 'image/webp', now() - make_interval(secs => :age), CAST(:colors AS JSON), 'black', 'ok',"
                       " CAST(:alts AS JSON))"),
                  [{"id": uuid.uuid4(), "u": uid, "p": photos[i // 10], "j": job, "k": i % 10, "bbox": "[10, 20, 60, 90]",
                    "poly": json.dumps(poly), "age": i, "colors": '[{"hex": "#141416", "name": "black", "fraction": 1.0}]',
                    "conf": 0.3 + (i % 8) / 10, "alts": alts if i % 3 == 0 else None}
                   for i in range(2000)])
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("ANALYZE"))  # what autovacuum does soon after a bulk load; without it the planner sorts all
    eng.dispose()
    return uid, job


def checkout(ref: str, dest: Path) -> str:
    """git's `ref` as plain files in `dest` (no worktree registered); returns its commit."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", commit], cwd=ROOT, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    if archive.wait():
        raise RuntimeError(f"git archive {ref} failed")
    return commit


class Server:
    """`wardrobe serve` run from the code in `tree`, on a free port."""

    def __init__(self, name: str, tree: Path, env: dict, workers: int, threads: int):
        self.name, self.port = name, free_port()
        env = env | {"PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(self.port), "--workers",
                                      str(workers), "--threads", str(threads)], env=env, cwd=tree,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and self.proc.poll() is None:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.1)
            finally:
                c.close()
        self.stop()  # the caller never gets this server to stop: its processes go now
        raise RuntimeError(f"the {name} server did not answer /healthz")

    def pids(self) -> list[int]:
        return [self.proc.pid] + children(self.proc.pid)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass  # the group has gone already
        self.proc.wait(30)


def db_backends(admin, dbname: str) -> list[int]:
    from sqlalchemy import text

    with admin.connect() as c:
        return [r[0] for r in c.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": dbname})]


def measured(server: Server, admin, dbname: str, path: str, headers: dict, rate: float, seconds: float) -> dict:
    """One open-loop phase, with the CPU the server's processes and the database's backends spent on it."""
    before_api, before_db = cpu_seconds(server.pids()), cpu_seconds(db_backends(admin, dbname))
    r = open_loop(server.port, path, headers, rate, seconds)
    api, db = cpu_seconds(server.pids(), before_api), cpu_seconds(db_backends(admin, dbname), before_db)
    n = max(1, r["requests"])
    r["api_cpu_ms_per_request"] = round(1000 * api / n, 3)
    r["db_cpu_ms_per_request"] = round(1000 * db / n, 3) if db is not None else None
    return r


def upload_rss(server: Server, tmp: Path, headers: dict, gib: float) -> dict:
    zpath = tmp / "big.zip"
    big_zip(zpath, int(gib * (1 << 30)))
    pids = server.pids()
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
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    with open(zpath, "rb") as f:
        conn.request("POST", "/v1/uploads", body=f, headers=headers | {"Content-Type": "application/zip",
                                                                        "Content-Length": str(zpath.stat().st_size)})
        resp = conn.getresponse()
        resp.read()
    dt = time.perf_counter() - t0
    stop.set()
    sampler.join()
    return {"bytes": zpath.stat().st_size, "status": resp.status, "seconds": round(dt, 2),
            "mb_per_s": round(zpath.stat().st_size / dt / 1e6, 1),
            "idle_rss_mb": round(max(idle.values()) / 1024, 1),
            "rss_rise_mb": round(max(peak[p] - idle[p] for p in pids) / 1024, 1)}


def _get(port: int, path: str, headers: dict) -> bytes:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", path, headers=headers)
        return c.getresponse().read()
    finally:
        c.close()


def same_answers(base: Server, new: Server, headers: dict) -> dict:
    """Whether both servers answer a few catalogue requests with the same bytes. Their signed URLs
    carry the second they were made: a pair that straddles a second is asked again."""
    first = json.loads(_get(new.port, "/v1/items?limit=7", headers))
    review = json.loads(_get(new.port, "/v1/items?needs_review=true&limit=5", headers))
    paths = ["/v1/items?limit=50", "/v1/items?limit=50&needs_review=true", "/v1/items?needs_review=false&limit=9",
             f"/v1/items?limit=7&cursor={first['next_cursor']}", "/v1/items?category=shoe&min_confidence=0.5&limit=20",
             f"/v1/items?needs_review=true&limit=5&cursor={review['next_cursor']}", f"/v1/items/{first['items'][0]['id']}"]
    out = {}
    for path in paths:
        for _ in range(10):
            a, b = _get(base.port, path, headers), _get(new.port, path, headers)
            if a == b or b"expires=" not in a:  # equal, or unequal with no signed URL to blame
                break
        out[path] = a == b
    return out


def _line(name: str, r: dict) -> str:
    cpu = f"  CPU/request: API {r['api_cpu_ms_per_request']:.2f} ms"
    if r.get("db_cpu_ms_per_request") is not None:
        cpu += f", PostgreSQL {r['db_cpu_ms_per_request']:.2f} ms"
    return (f"  {name:10} p50 {r['p50_ms']:7.2f} ms  p90 {r['p90_ms']:7.2f}  p99 {r['p99_ms']:7.2f}  max {r['max_ms']:7.2f}"
            f"  ({r['requests']} requests, {r['errors']} errors, {r['achieved_rps']} req/s){cpu}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--upload-gib", type=float, default=1.0, help="0: no upload phase")
    ap.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1), help="gunicorn processes (serve's default)")
    ap.add_argument("--threads", type=int, default=2, help="threads per gunicorn process (serve's default)")
    ap.add_argument("--baseline", metavar="REF", help="also serve git's REF (e.g. main) and measure it alternately")
    ap.add_argument("--rounds", type=int, default=2, help="with --baseline: times each server's phases are run, alternating")
    ap.add_argument("--redis", default=os.environ.get("WARDROBE_BENCH_REDIS", "redis://127.0.0.1:6379/11"))
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
    env.update(WARDROBE_DATABASE_URL=PG_ADMIN.rsplit("/", 1)[0] + "/" + dbname, WARDROBE_BROKER_URL=args.redis,
               WARDROBE_DATA_DIR=str(tmp), WARDROBE_STORAGE_URL=f"file://{tmp}/objects", WARDROBE_LOG_LEVEL="WARNING",
               WARDROBE_MAX_UPLOAD_BYTES=str(4 << 30), WARDROBE_MAX_TOTAL_UNCOMPRESSED_BYTES=str(4 << 30))
    exe = [sys.executable, "-m", "cli.main"]
    report: dict = {"rate": args.rate, "seconds": args.seconds, "workers": args.workers, "threads": args.threads}
    servers: list[Server] = []
    try:
        subprocess.run(exe + ["migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
        token = subprocess.run(exe + ["users", "create", "bench"], env=env, cwd=ROOT, check=True, capture_output=True,
                               text=True).stdout.strip()
        _uid, job = seed(env["WARDROBE_DATABASE_URL"])
        servers.append(Server("this tree", ROOT, env, args.workers, args.threads))
        if args.baseline:
            report["baseline"] = {"ref": args.baseline, "commit": checkout(args.baseline, tmp / "baseline")}
            servers.insert(0, Server(f"baseline {args.baseline}", tmp / "baseline", env, args.workers, args.threads))
        h = {"Authorization": f"Bearer {token}"}
        if args.baseline:
            report["same_answers_as_baseline"] = same_answers(servers[0], servers[-1], h)
        for s in servers:
            open_loop(s.port, f"/v1/jobs/{job}", h, rate=50, seconds=2)  # warm the pools
            open_loop(s.port, "/v1/items?limit=50", h, rate=20, seconds=1)
        runs: dict[str, dict[str, list]] = {s.name: {"poll": [], "catalogue": []} for s in servers}
        for _ in range(args.rounds if args.baseline else 1):
            for s in servers:
                runs[s.name]["poll"].append(measured(s, admin, dbname, f"/v1/jobs/{job}", h, args.rate, args.seconds))
                runs[s.name]["catalogue"].append(measured(s, admin, dbname, "/v1/items?limit=50", h, args.rate, args.seconds))
        ours = runs[servers[-1].name]
        report["poll"], report["catalogue"] = ours["poll"][-1], ours["catalogue"][-1]
        if args.baseline:
            report["runs"] = runs
        if args.upload_gib > 0:
            report["upload"] = upload_rss(servers[-1], tmp, h, args.upload_gib)
    finally:
        for s in servers:
            s.stop()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"open loop at {args.rate:.0f} requests/s for {args.seconds:.0f}s (gunicorn, {args.workers} workers x "
          f"{args.threads} threads, PostgreSQL)")
    if args.baseline:
        for name, phases in runs.items():
            print(f"{name}:")
            for i in range(len(phases["poll"])):
                print(_line("poll", phases["poll"][i]))
                print(_line("catalogue", phases["catalogue"][i]))
        base, new = runs[servers[0].name]["catalogue"], runs[servers[-1].name]["catalogue"]

        def mean(rs, key):
            return sum(r[key] for r in rs) / len(rs)

        ratio = {k: round(mean(new, k) / mean(base, k), 3) for k in ("api_cpu_ms_per_request", "p50_ms", "p99_ms")}
        if all(r.get("db_cpu_ms_per_request") for r in base + new):
            ratio["db_cpu_ms_per_request"] = round(mean(new, "db_cpu_ms_per_request") / mean(base, "db_cpu_ms_per_request"), 3)
        report["catalogue_vs_baseline"] = ratio
        print("catalogue, this tree / baseline (means over the rounds): " + ", ".join(f"{k} {v}" for k, v in ratio.items()))
        same = report["same_answers_as_baseline"]
        print(f"byte-identical answers to the baseline's: {sum(same.values())} of {len(same)}"
              + "".join(f"\n  differs: {p}" for p, ok in same.items() if not ok))
    else:
        for name in ("poll", "catalogue"):
            print(_line(name, report[name]))
    if u := report.get("upload"):
        print(f"upload of {u['bytes'] / (1 << 30):.2f} GiB: HTTP {u['status']} in {u['seconds']}s ({u['mb_per_s']} MB/s), "
              f"serving process RSS rose {u['rss_rise_mb']} MB above idle ({u['idle_rss_mb']} MB)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(stamp(report, "bench.api"), indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
