"""`make bench-scale`: the control plane's ceiling. Everything but the model, for real.

A private PostgreSQL cluster (pg_stat_statements loaded), a private Redis, moto's S3 server,
the API under gunicorn (`wardrobe serve`), and one worker (`bench.scale_worker`: the product's
worker with an instant stand-in segmenter, bench/standin.py) serving both queues with 1, 2, 4, 8
processes in turn. At each step, U users upload a zip of K photos each through the API at once
and poll their jobs until they end. Per step it prints:

  photos/s and items/s (first upload to last job's end), PostgreSQL commits/s (pg_stat_database),
  p50/p99 time-to-done per photo (the job's acceptance to the photo's commit),
  CPU milliseconds per photo of each process kind (API, worker, PostgreSQL, Redis, moto),
  the machine's busy share, PostgreSQL's active backends sampled every 50 ms by what they
  waited on (on CPU, Lock, LWLock, IO ...), and the statements that took the most time;

then the scaling ratio against one process and the first resource to saturate, with the
evidence. Writes bench/out/scale.json. Storage and database bytes per photo and item are
measured at the end (what docs/scaling.md's capacity model is built on).
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path

from bench.provenance import stamp
from bench.scratch import free_port, wait_port

ROOT = Path(__file__).resolve().parents[1]
SHARED_IMAGES = ROOT.parent / "shared" / "datasets" / "ccp-fashionpedia" / "images"
CLK = os.sysconf("SC_CLK_TCK")
STATS_DELAY = 11.0  # seconds: PostgreSQL 15+ backends publish their counts when idle, at most 10 s late


# --- CPU accounting from /proc ----------------------------------------------------------------

def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children)."""
    try:
        raw = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / CLK  # ppid; utime stime cutime cstime


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and all its descendants (reaped ones through cutime)."""
    stats = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (st := _stat(int(d))):
            stats[int(d)] = st
    total, todo, seen = 0.0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo.extend(p for p, (pp, _) in stats.items() if pp == pid)
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy CPU seconds, all CPU seconds) of the whole machine so far."""
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / CLK, sum(v[:8]) / CLK


def pids_matching(word: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if word in open(f"/proc/{d}/cmdline").read().replace("\0", " "):
                    out.append(int(d))
            except OSError:
                pass
    return out


# --- private services ---------------------------------------------------------------------------

class PrivatePostgres:
    """A throwaway cluster with pg_stat_statements loaded (the shared server has it available
    but not preloaded, and restarting it is not ours to do). fsync and synchronous commits stay
    on, as in production: a commit's flush is part of what is measured."""

    def __init__(self, tmp: Path):
        bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not bindirs:
            raise SystemExit("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin, self.port = bindirs[-1], free_port()
        self.root = Path(tempfile.mkdtemp(prefix="wardrobe-scale-pg-"))
        self.dir, self.sock = self.root / "pg", self.root / "sock"
        self.dir.mkdir()
        self.sock.mkdir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            for d in (self.root, self.dir, self.sock):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all")
        self._run("pg_ctl", "-D", str(self.dir), "-w", "-l", str(self.dir / "log"), "-o", opts, "start")

    @property
    def postmaster(self) -> int:
        return int((self.dir / "postmaster.pid").read_text().split()[0])

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def dsn(self, db: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={db}"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.dir), "-w", "-m", "fast", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class WaitSampler:
    """pg_stat_activity every `interval` seconds: what the database's active backends wait on."""

    def __init__(self, dsn: str, db: str, interval: float = 0.05):
        self.dsn, self.db, self.interval = dsn, db, interval
        self.counts: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as c:  # on the `postgres` database: its commits are not the bench's
            while not self._stop.is_set():
                rows = c.execute("SELECT coalesce(wait_event_type, 'CPU'), coalesce(wait_event, '') FROM pg_stat_activity "
                                 "WHERE datname = %s AND state = 'active' AND pid <> pg_backend_pid()", (self.db,)).fetchall()
                self.samples += 1
                for typ, ev in rows:
                    key = typ if typ in ("CPU", "IO") else f"{typ}:{ev}"
                    self.counts[key] = self.counts.get(key, 0) + 1
                time.sleep(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)


# --- the load ---------------------------------------------------------------------------------

def make_zip(paths: list[Path], dst: Path) -> bytes:
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zf:
        for p in paths:
            zf.write(p, p.name)
    return dst.read_bytes()


def client(port: int, token: str, data: bytes, out: dict, poll: float = 0.5) -> None:
    """One user: upload the zip, then poll the job until it ends (as the web page does)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    hdr = {"Authorization": f"Bearer {token}"}
    conn.request("POST", "/v1/uploads", body=data, headers=hdr | {"Content-Type": "application/zip", "X-Filename": "p.zip"})
    r = conn.getresponse()
    body = json.loads(r.read())
    if r.status != 202:
        out["error"] = f"{r.status} {body}"
        return
    job = body["id"]
    out["job"], out["accepted"] = job, time.perf_counter()
    while True:
        time.sleep(poll)
        conn.request("GET", f"/v1/jobs/{job}", headers=hdr)
        r = conn.getresponse()
        j = json.loads(r.read())
        if r.status == 200 and j["status"] not in ("queued", "running"):
            out["status"], out["ended"] = j["status"], time.perf_counter()
            return


def run_step(ctx: dict, procs: int, users: int, paths: list[Path], tmp: Path) -> dict:
    import psycopg
    import redis

    pg: PrivatePostgres = ctx["pg"]
    metrics_port = free_port()
    env = dict(ctx["env"], WARDROBE_WORKER_CONCURRENCY=str(procs), WARDROBE_WORKER_METRICS_PORT=str(metrics_port))
    log = tmp / f"worker-{procs}.log"
    worker = subprocess.Popen([sys.executable, "-m", "bench.scale_worker", "--queues", "ingest,segment",
                               "--concurrency", str(procs)], env=env, cwd=ROOT, stdout=open(log, "wb"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t_wait = time.monotonic()
        while " ready." not in log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() - t_wait > 120:
                raise RuntimeError("worker did not start:\n" + log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        time.sleep(1.0)  # the pool's processes settle
        # users of their own: a user's photos are deduplicated against their own catalogue
        tokens = []
        from db.session import session_scope
        from db.users import create_user

        for i in range(users):
            with session_scope() as s:
                tokens.append(create_user(s, f"scale-{procs}-{i}-{uuid.uuid4().hex[:6]}")[1])
        data = ctx["zip"]
        r = redis.Redis.from_url(ctx["redis_url"])
        with psycopg.connect(pg.dsn(ctx["db"]), autocommit=True) as c:
            c.execute("SELECT pg_stat_statements_reset()")

        def commits() -> int:
            with psycopg.connect(pg.dsn(), autocommit=True) as c:  # from the `postgres` database: not counted
                return c.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (ctx["db"],)).fetchone()[0]

        # an idle backend publishes its counts up to 10 s late (PostgreSQL 15+): let them land
        time.sleep(STATS_DELAY)
        groups = {"api": lambda: tree_cpu(ctx["api_pid"]), "worker": lambda: tree_cpu(worker.pid),
                  "postgres": lambda: tree_cpu(pg.postmaster), "redis": lambda: tree_cpu(ctx["redis_pid"]),
                  "moto (S3)": lambda: sum(tree_cpu(p) for p in ctx["moto_pids"])}
        redis_before = r.info("commandstats")
        c0 = commits()
        cpu0 = {k: f() for k, f in groups.items()}
        busy0, all0 = machine_cpu()
        outs = [dict() for _ in range(users)]
        threads = [threading.Thread(target=client, args=(ctx["api_port"], tok, data, o)) for tok, o in zip(tokens, outs)]
        with WaitSampler(pg.dsn(), ctx["db"]) as waits:
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
        cpu1 = {k: f() for k, f in groups.items()}
        busy1, all1 = machine_cpu()
        task_cpu = worker_task_cpu(metrics_port)
        time.sleep(STATS_DELAY)
        c1 = commits()
        redis_after = r.info("commandstats")
        errors = [o["error"] for o in outs if "error" in o]
        if errors:
            raise RuntimeError(f"uploads refused: {errors[:3]}")
        jobs = [o["job"] for o in outs]
        with psycopg.connect(pg.dsn(ctx["db"]), autocommit=True) as c:
            photos, items, failed = c.execute(
                "SELECT sum(photos_done), sum(items_found), sum(photos_failed) FROM jobs WHERE id = ANY(%s::uuid[])", (jobs,)).fetchone()
            ttd = sorted(float(x) for (x,) in c.execute(
                "SELECT extract(epoch FROM p.processed_at - j.created_at) FROM photos p JOIN jobs j ON j.id = p.job_id "
                "WHERE p.job_id = ANY(%s::uuid[]) AND p.status = 'done'", (jobs,)))
            top = c.execute(
                "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 90), calls, round(total_exec_time::numeric, 1), "
                "round(mean_exec_time::numeric, 3) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
                "WHERE datname = current_database()) ORDER BY total_exec_time DESC LIMIT 6").fetchall()
            by_calls = c.execute(
                "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 90), calls FROM pg_stat_statements WHERE dbid = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY calls DESC LIMIT 12").fetchall()
            db_exec_ms = c.execute("SELECT coalesce(sum(total_exec_time), 0) FROM pg_stat_statements WHERE dbid = "
                                   "(SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()[0]
        photos, items = int(photos or 0), int(items or 0)
        cpu = {k: cpu1[k] - cpu0[k] for k in groups}
        calls = sum(v["calls"] for v in redis_after.values()) - sum(v["calls"] for v in redis_before.values())
        active = sum(waits.counts.values())
        other = max(0.0, (busy1 - busy0) - sum(cpu.values()))

        def pct(p: float) -> float:
            return round(ttd[min(len(ttd) - 1, int(p / 100 * len(ttd)))], 3) if ttd else float("nan")

        return {
            "processes": procs, "users": users, "photos": photos, "items": items, "photos_failed": int(failed or 0),
            "statuses": sorted({o.get("status") for o in outs}), "seconds": round(elapsed, 3),
            "photos_per_s": round(photos / elapsed, 2), "items_per_s": round(items / elapsed, 2),
            "commits": c1 - c0, "commits_per_s": round((c1 - c0) / elapsed, 1),
            "time_to_done_s": {"p50": pct(50), "p99": pct(99), "max": round(ttd[-1], 3) if ttd else None},
            "cpu_seconds": {k: round(v, 2) for k, v in cpu.items()} | {"other (not this benchmark)": round(other, 2)},
            "cpu_ms_per_photo": {k: round(1000 * v / max(photos, 1), 2) for k, v in cpu.items()},
            "worker_cpu_ms_per_photo_by_task": {k.removeprefix("wardrobe."): round(1000 * v / max(photos, 1), 2) for k, v in task_cpu.items()},
            "cores_busy": {k: round(v / elapsed, 2) for k, v in cpu.items()} | {"other (not this benchmark)": round(other / elapsed, 2)},
            "machine_busy": round((busy1 - busy0) / max(all1 - all0, 1e-9), 3),
            "redis_commands_per_s": round(calls / elapsed, 1),
            "pg_active_backends": {"mean": round(active / max(waits.samples, 1), 2), "samples": waits.samples,
                                   "by_wait": {k: round(v / max(active, 1), 3) for k, v in sorted(waits.counts.items(), key=lambda kv: -kv[1])}},
            "pg_exec_ms_per_photo": round(float(db_exec_ms) / max(photos, 1), 3),
            "pg_calls_per_photo": {q: round(n / max(photos, 1), 3) for q, n in by_calls},
            "pg_top_statements": [{"query": q, "calls": n, "total_ms": float(tot), "mean_ms": float(mean)} for q, n, tot, mean in top],
        }
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)


def worker_task_cpu(port: int) -> dict[str, float]:
    """CPU seconds the worker's pool processes spent in each task (its /metrics: wardrobe_task_cpu_seconds)."""
    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    return {s.labels["task"]: s.value for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == "wardrobe_task_cpu_seconds_total"}


def bottleneck(step: dict, cores: int) -> str:
    """The first resource to saturate at this step, with the figure that says so."""
    busy = step["cores_busy"]
    ours = {k: v for k, v in busy.items() if not k.startswith("other")}
    top, top_cores = max(ours.items(), key=lambda kv: kv[1])
    waits = step["pg_active_backends"]["by_wait"]
    mean = step["pg_active_backends"]["mean"]  # backends active on average: shares of it below are backends
    lock = sum(v for k, v in waits.items() if k.startswith("Lock:"))
    lwlock = sum(v for k, v in waits.items() if k.startswith("LWLock:"))
    io = waits.get("IO", 0.0)
    parts = []
    if step["machine_busy"] >= 0.85:
        parts.append(f"CPU: the machine's {cores} cores were {100 * step['machine_busy']:.0f}% busy; the largest share is the "
                     f"{top} ({top_cores:.2f} cores, {step['cpu_ms_per_photo'][top]:.1f} ms a photo)"
                     + (f"; {busy['other (not this benchmark)']:.2f} cores went to other processes" if busy.get("other (not this benchmark)", 0) > 0.1 else ""))
    elif ours["worker"] >= 0.85 * step["processes"]:
        parts.append(f"the worker's processes: {ours['worker']:.2f} cores busy for {step['processes']} processes")
    if mean * lock >= 0.25:
        parts.append(f"database locks: {mean * lock:.2f} backends waiting on a lock on average ({100 * lock:.0f}% of active samples)")
    if mean * (io + lwlock) >= 0.5:
        parts.append(f"database I/O (WAL flushes): {mean * (io + lwlock):.2f} backends in IO/LWLock waits on average")
    if not parts:
        parts.append(f"nothing saturated: machine {100 * step['machine_busy']:.0f}% busy, worker {ours['worker']:.2f} cores "
                     f"for {step['processes']} processes")
    parts.append(f"PostgreSQL: {mean:.2f} backends active on average ({100 * lock:.0f}% of them on locks, "
                 f"{100 * (io + lwlock):.0f}% on I/O), {busy['postgres']:.2f} cores")
    return "; ".join(parts)


def storage_and_db_bytes(ctx: dict) -> dict:
    import boto3
    import psycopg

    s3 = boto3.client("s3", endpoint_url=ctx["env"]["WARDROBE_S3_ENDPOINT_URL"], region_name="us-east-1")
    sizes: dict[str, list[int]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ctx["bucket"]):
        for o in page.get("Contents", []):
            kind = o["Key"].split("/")[2] if o["Key"].count("/") >= 2 else "other"
            sizes.setdefault(kind, []).append(o["Size"])
    with psycopg.connect(ctx["pg"].dsn(ctx["db"]), autocommit=True) as c:
        c.execute("VACUUM ANALYZE")
        photos, items = c.execute("SELECT (SELECT count(*) FROM photos WHERE status = 'done'), (SELECT count(*) FROM items)").fetchone()
        rel = dict(c.execute("SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname IN ('photos', 'items', 'jobs')").fetchall())
        dbsize = c.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {
        "objects": {k: {"count": len(v), "mean_bytes": round(statistics.mean(v))} for k, v in sizes.items()},
        "photos": photos, "items": items, "database_bytes": dbsize,
        "items_table_bytes_per_item": round(rel.get("items", 0) / max(items, 1)),
        "photos_table_bytes_per_photo": round(rel.get("photos", 0) / max(photos, 1)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="1,2,4,8", help="worker processes at each step")
    ap.add_argument("--users", type=int, default=8, help="users uploading at once, each one zip")
    ap.add_argument("--photos", type=int, default=100, help="photos in each user's zip")
    ap.add_argument("--photos-dir", default=str(SHARED_IMAGES if SHARED_IMAGES.exists() else ROOT / "examples" / "photos"))
    ap.add_argument("--api-workers", type=int, default=2 * (os.cpu_count() or 1), help="gunicorn processes (serve's default)")
    ap.add_argument("--chunk", type=int, default=32, help="WARDROBE_SEGMENT_CHUNK: photos per segment task")
    ap.add_argument("--label", default="", help="a note stored with the figures (e.g. 'tiny run')")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "scale.json"))
    a = ap.parse_args(argv)
    for k, v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(k, v)
    steps = [int(x) for x in a.steps.split(",")]
    paths = sorted(p for p in Path(a.photos_dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: a.photos]
    cores = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="wardrobe-scale-"))
    from bench.scratch import scratch_s3

    pg = PrivatePostgres(tmp)
    redis_proc = api = None
    report: dict = {"label": a.label, "cores": cores, "users": a.users, "photos_per_user": len(paths), "chunk": a.chunk,
                    "api_workers": a.api_workers, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                    "other_load": [open(f"/proc/{p}/cmdline").read().replace("\0", " ")[:120] for p in pids_matching("cli.main train")],
                    "steps": []}
    try:
        pg.start()
        import psycopg

        db = "wardrobe_scale"
        with psycopg.connect(pg.dsn(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {db}")
        with psycopg.connect(pg.dsn(db), autocommit=True) as c:
            c.execute("CREATE EXTENSION pg_stat_statements")
        redis_port = free_port()
        redis_proc = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL)
        wait_port(redis_port, 60)
        with open(tmp / "moto.log", "wb") as mlog, scratch_s3(mlog) as endpoint:
            bucket = f"wardrobe-scale-{uuid.uuid4().hex[:6]}"
            env = {k: v for k, v in os.environ.items() if not k.startswith(("WARDROBE_", "PROMETHEUS_"))}
            env.update(WARDROBE_DATABASE_URL=pg.url(db), WARDROBE_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
                       WARDROBE_STORAGE_URL=f"s3://{bucket}", WARDROBE_S3_ENDPOINT_URL=endpoint, WARDROBE_DATA_DIR=str(tmp / "data"),
                       WARDROBE_SEGMENT_CHUNK=str(a.chunk), WARDROBE_LOG_LEVEL="INFO", WARDROBE_TOKEN_CACHE_SECONDS="5")
            subprocess.run([sys.executable, "-m", "cli.main", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
            os.environ.update({k: v for k, v in env.items() if k.startswith("WARDROBE_")})
            from services.bootup import bootup
            from core.config import Settings

            bootup(Settings.from_env(), force=True)  # creates the bucket; this process's users and queries
            api_port = free_port()
            api = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(api_port), "--workers", str(a.api_workers)],
                                   env=env, cwd=ROOT, stdout=open(tmp / "api.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
            wait_port(api_port, 60)
            port = endpoint.rsplit(":", 1)[1]
            ctx = {"pg": pg, "db": db, "env": env, "api_port": api_port, "api_pid": api.pid, "redis_pid": redis_proc.pid,
                   "redis_url": env["WARDROBE_BROKER_URL"], "bucket": bucket, "zip": make_zip(paths, tmp / "photos.zip"),
                   "moto_pids": [p for p in pids_matching("moto.server") if f"-p {port}" in open(f"/proc/{p}/cmdline").read().replace("\0", " ")]}
            print(f"bench-scale: {a.users} users x {len(paths)} photos a step, steps {steps} worker processes, {cores} cores"
                  + (f"; also running here: {report['other_load']}" if report["other_load"] else ""), flush=True)
            for n in steps:
                step = run_step(ctx, n, a.users, paths, tmp)
                step["bottleneck"] = bottleneck(step, cores)
                report["steps"].append(step)
                print(f"  {n} processes: {step['photos_per_s']} photos/s, {step['items_per_s']} items/s, "
                      f"{step['commits_per_s']} commits/s, time-to-done p99 {step['time_to_done_s']['p99']} s", flush=True)
            report["bytes"] = storage_and_db_bytes(ctx)
    finally:
        if api is not None:
            os.killpg(api.pid, signal.SIGTERM)
            api.wait(30)
        if redis_proc is not None:
            redis_proc.kill()
            redis_proc.wait(10)
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    base = report["steps"][0]["photos_per_s"] if report["steps"] else 0
    for s in report["steps"]:
        s["photos_per_s_vs_first_step"] = round(s["photos_per_s"] / base, 2) if base else None
    best = max(report["steps"], key=lambda s: s["photos_per_s"])
    report["best"] = {"processes": best["processes"], "photos_per_s": best["photos_per_s"], "bottleneck": best["bottleneck"]}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(stamp(report, "bench.scale"), indent=2))
    print_report(report)
    return 0


def print_report(r: dict) -> None:
    print(f"\nbench-scale {r['label'] or ''} ({r['users']} users x {r['photos_per_user']} photos a step, {r['cores']} cores, "
          f"segment chunk {r['chunk']}, {r['api_workers']} API processes; instant stand-in segmenter)")
    kinds = list(r["steps"][0]["cpu_ms_per_photo"])
    head = ["procs", "photos/s", "x first", "items/s", "commits/s", "ttd p50 s", "ttd p99 s", "busy"] + [f"{k} ms/photo" for k in kinds]
    print(" | ".join(head))
    for s in r["steps"]:
        row = [s["processes"], s["photos_per_s"], s["photos_per_s_vs_first_step"], s["items_per_s"], s["commits_per_s"],
               s["time_to_done_s"]["p50"], s["time_to_done_s"]["p99"], f"{100 * s['machine_busy']:.0f}%"] + \
              [s["cpu_ms_per_photo"][k] for k in kinds]
        print(" | ".join(str(x) for x in row))
    print("\nthe worker's CPU ms a photo by task (its pool processes' CPU while each ran, I/O threads included; "
          "wardrobe_task_cpu_seconds): " + "; ".join(f"{s['processes']} procs {s['worker_cpu_ms_per_photo_by_task']}" for s in r["steps"]))
    print("\ncores busy per process kind, and PostgreSQL's active backends by wait (share of samples):")
    for s in r["steps"]:
        w = ", ".join(f"{k} {v}" for k, v in list(s["pg_active_backends"]["by_wait"].items())[:5])
        print(f"  {s['processes']} procs: {s['cores_busy']}; backends active {s['pg_active_backends']['mean']} on average: {w}")
    last = r["steps"][-1]
    print(f"\nPostgreSQL's costliest statements at {last['processes']} processes (pg_stat_statements; "
          f"{last['pg_exec_ms_per_photo']} ms of execution a photo in all):")
    for q in last["pg_top_statements"]:
        print(f"  {q['total_ms']:>9} ms  {q['calls']:>6} calls  {q['mean_ms']:>7} ms each  {q['query']}")
    print(f"statements a photo, most called first: " + "; ".join(f"{n} x {q[:60]}" for q, n in list(last["pg_calls_per_photo"].items())[:8]))
    b = r.get("bytes", {})
    if b:
        print(f"\nbytes: database {b['database_bytes']} for {b['photos']} photos and {b['items']} items "
              f"(items table {b['items_table_bytes_per_item']} B an item, photos table {b['photos_table_bytes_per_photo']} B a photo); "
              f"objects {b['objects']}")
    print("\nbottleneck, step by step:")
    for s in r["steps"]:
        print(f"  {s['processes']} procs: {s['bottleneck']}")
    print(f"\nbest: {r['best']['photos_per_s']} photos/s with {r['best']['processes']} processes; first to saturate there: {r['best']['bottleneck']}")


if __name__ == "__main__":
    sys.exit(main())
