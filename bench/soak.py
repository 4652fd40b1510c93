"""make soak: the whole system under a steady mixed load for a long while, a fault every few minutes.

Real processes on this machine: the API (`wardrobe serve`, 2 processes), two Celery workers (one with
--beat: the stale-job sweep, the garbage sweep, the webhook sweep), a private Redis, a scratch
PostgreSQL database, moto's S3 server behind a TCP proxy that can cut it off. The benchmark's stand-in
segmenter (bench.standin.TimedSegmenter: five garments a photo, --delay-ms each), so a lost or doubled
photo or item shows.

For --minutes (30): users upload zips, poll their jobs and items, follow live streams, ask for
exports, delete ended jobs' data and retry failed jobs. Every --fault-every seconds one fault, in
turn: kill -9 a pool process, every PostgreSQL backend terminated, storage cut off for 8 s, Redis
killed and started again empty. Then the load stops, every job must end, and the run prints:
requests and errors by route and status, p50/p99 per route, API and worker RSS (each whole process
group) at the start, each minute and the end, and its growth since the warm-up (--warmup-minutes: by
then each process has run its first tasks, so what grows after is what a long run keeps adding; both
samples are taken under load, the end after the settle is idle),
photos and items lost or doubled (jobs not deleted), and stored objects no row names (the sweeper's
dry run, grace 0). Writes bench/out/soak.json. Loads go to 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import requests

from bench.chaos import PG_ADMIN, ROOT, busy_children, log, photos_zip
from bench.provenance import stamp

PER_PHOTO = 5  # the stand-in's garments per photo


class Load:
    """The clients: each request's route, status (or the exception's name) and latency recorded."""

    def __init__(self, url: str, tokens: list[str]):
        self.url, self.tokens = url, tokens
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.lat: dict[str, list[float]] = defaultdict(list)
        self.jobs: dict[str, tuple[str, int]] = {}  # job id -> (token, photos)
        self.deleted: set[str] = set()
        self.stop = threading.Event()

    def call(self, route: str, method: str, path: str, token: str | None, **kw):
        t0 = time.monotonic()
        try:
            r = requests.request(method, self.url + path, timeout=kw.pop("timeout", 60),
                                 headers={"Authorization": f"Bearer {token}"} if token else {}, **kw)
            status = str(r.status_code)
        except requests.RequestException as e:
            r, status = None, type(e).__name__
        with self.lock:
            self.counts[(route, status)] += 1
            self.lat[route].append(time.monotonic() - t0)
        return r

    def ended_jobs(self, token: str | None = None) -> list[str]:
        from sqlalchemy import select

        from db.models import Job
        from db.session import session_scope

        with self.lock:
            ids = [j for j, (t, _) in self.jobs.items() if j not in self.deleted and (token is None or t == token)]
        if not ids:
            return []
        try:
            with session_scope() as s:
                return [str(i) for i in s.scalars(select(Job.id).where(
                    Job.id.in_([uuid.UUID(i) for i in ids]), Job.status.not_in(("queued", "running"))))]
        except Exception:  # noqa: BLE001 - the backends may be being terminated: next time
            return []

    def uploader(self, every: float) -> None:
        k = 0
        while not self.stop.wait(every * random.uniform(0.5, 1.5)):
            token = random.choice(self.tokens)
            n = random.randint(3, 8)
            k += 1
            r = self.call("POST /v1/uploads", "POST", "/v1/uploads", token, files={"file": ("p.zip", photos_zip(n, seed=k))})
            if r is not None and r.status_code == 202:
                with self.lock:
                    self.jobs[r.json()["id"]] = (token, n)

    def poller(self) -> None:
        while not self.stop.wait(random.uniform(0.2, 0.6)):
            token = random.choice(self.tokens)
            self.call("GET /v1/jobs", "GET", "/v1/jobs?limit=20", token)
            with self.lock:
                mine = [j for j, (t, _) in self.jobs.items() if t == token]
            if mine:
                self.call("GET /v1/jobs/<id>", "GET", f"/v1/jobs/{random.choice(mine)}", token)
            self.call("GET /v1/items", "GET", "/v1/items?limit=50", token)
            self.call("GET /healthz", "GET", "/healthz", None)

    def streamer(self) -> None:
        while not self.stop.wait(random.uniform(1, 3)):
            with self.lock:
                recent = list(self.jobs.items())[-5:]
            if not recent:
                continue
            job_id, (token, _) = random.choice(recent)
            t0 = time.monotonic()
            try:
                with requests.get(f"{self.url}/v1/jobs/{job_id}/events", stream=True, timeout=30,
                                  headers={"Authorization": f"Bearer {token}"}) as r:
                    status = str(r.status_code)
                    for line in r.iter_lines(decode_unicode=True):
                        if line == "event: end" or time.monotonic() - t0 > 20 or self.stop.is_set():
                            break
            except requests.RequestException as e:
                status = type(e).__name__
            with self.lock:
                self.counts[("GET /v1/jobs/<id>/events", status)] += 1

    def housekeeper(self, every: float) -> None:
        """Exports, deletes of ended jobs' data, retries of failed jobs."""
        while not self.stop.wait(every):
            token = random.choice(self.tokens)
            r = self.call("POST /v1/exports", "POST", "/v1/exports", token, json={})
            if r is not None and r.status_code == 202:
                self.call("GET /v1/exports/<id>", "GET", f"/v1/exports/{r.json()['id']}", token)
            ended = self.ended_jobs(token)
            for job_id in ended:
                r = self.call("GET /v1/jobs/<id>", "GET", f"/v1/jobs/{job_id}", token)
                if r is not None and r.status_code == 200 and r.json().get("retryable"):
                    self.call("POST /v1/jobs/<id>/retry", "POST", f"/v1/jobs/{job_id}/retry", token)
            if len(ended) > 2:
                victim = random.choice(ended)
                r = self.call("DELETE /v1/jobs/<id>/data", "DELETE", f"/v1/jobs/{victim}/data", token)
                if r is not None and r.status_code == 204:
                    with self.lock:
                        self.deleted.add(victim)


def group_rss(pgid: int) -> int:
    """Bytes resident in a process group (a service and its children)."""
    import psutil

    total = 0
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid:
                total += p.memory_info().rss
        except (psutil.Error, ProcessLookupError, PermissionError):
            pass
    return total


def warm_sample(samples: list[dict], after_s: float) -> dict | None:
    """The first RSS sample taken once the warm-up is over (None: the run was shorter)."""
    return next((s for s in samples if s["at_s"] >= after_s), None)


def percentile(v: list[float], q: float) -> float:
    v = sorted(v)
    return round(v[min(len(v) - 1, int(q * len(v)))], 3) if v else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="how long the load runs")
    ap.add_argument("--fault-every", type=float, default=180.0, help="seconds between faults")
    ap.add_argument("--upload-every", type=float, default=4.0, help="mean seconds between uploads")
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--delay-ms", type=int, default=100, help="the stand-in segmenter's time per photo")
    ap.add_argument("--warmup-minutes", type=float, default=3.0,
                    help="RSS growth is also given from the sample this far in (each process has run its first tasks)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "soak.json"))
    a = ap.parse_args()

    from bench.procs import Proc, RedisServer, TcpProxy, wait_ready
    from bench.scratch import free_port, scratch_database, scratch_s3

    tmp = Path(tempfile.mkdtemp(prefix="wardrobe-soak-"))
    report: dict = {"minutes": a.minutes, "fault_every_s": a.fault_every, "faults": [], "cpus": os.cpu_count(),
                    "loadavg_at_start": os.getloadavg()[0]}
    with scratch_database(PG_ADMIN, "wardrobe_soak") as db_url, open(tmp / "moto.log", "wb") as mlog, scratch_s3(mlog) as s3:
        redis = RedisServer(tmp).start()
        proxy = TcpProxy(int(s3.rsplit(":", 1)[1]))
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
        env.update(WARDROBE_DATABASE_URL=db_url, WARDROBE_BROKER_URL=redis.url, WARDROBE_STORAGE_URL="s3://wardrobe-soak",
                   WARDROBE_S3_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}", WARDROBE_DATA_DIR=str(tmp / "data"),
                   WARDROBE_SEGMENTER="bench.standin:TimedSegmenter", BENCH_STANDIN_DELAY_MS=str(a.delay_ms), WARDROBE_SEGMENT_CHUNK="4",
                   WARDROBE_LOG_LEVEL="WARNING", WARDROBE_MAX_UPLOADS_PER_HOUR="0", WARDROBE_MAX_UPLOADS_IN_FLIGHT="0",
                   WARDROBE_STALE_AFTER="30", WARDROBE_REAP_INTERVAL="5", TMPDIR=str(tmp))
        os.environ.update({k: v for k, v in env.items() if k.startswith("WARDROBE_")})
        subprocess.run([sys.executable, "-m", "cli.main", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
        from core.config import Settings
        from core.queue import make_celery
        from services.bootup import bootup
        from db.session import session_scope
        from db.users import create_user

        settings = Settings.from_env()
        rt = bootup(settings)
        with session_scope() as s:
            tokens = [create_user(s, f"soak-{i}")[1] for i in range(a.users)]
        port = free_port()
        procs = {"api": Proc(["serve", "--port", str(port), "--workers", "2"], env, tmp / "api.log"),
                 "worker-a": Proc(["worker", "--concurrency", "2", "--beat"], env, tmp / "worker-a.log"),
                 "worker-b": Proc(["worker", "--concurrency", "1"], env, tmp / "worker-b.log")}
        for p in procs.values():
            p.start()
        load = Load(f"http://127.0.0.1:{port}", tokens)
        threads = []
        try:
            wait_ready(load.url, 2, 180)
            time.sleep(5)  # each process settled: the RSS baseline
            rss = lambda: {"api": group_rss(procs["api"].p.pid),  # noqa: E731
                           "workers": sum(group_rss(procs[n].p.pid) for n in ("worker-a", "worker-b"))}
            report["rss_start"] = rss()
            threads = [threading.Thread(target=load.uploader, args=(a.upload_every,), daemon=True),
                       threading.Thread(target=load.poller, daemon=True), threading.Thread(target=load.poller, daemon=True),
                       threading.Thread(target=load.streamer, daemon=True),
                       threading.Thread(target=load.housekeeper, args=(20.0,), daemon=True)]
            for t in threads:
                t.start()
            log(f"load for {a.minutes:g} min, a fault every {a.fault_every:g} s")
            celery = make_celery(settings)
            end = time.monotonic() + a.minutes * 60
            faults = ["kill -9 a busy pool process", "PostgreSQL backends terminated", "storage cut off for 8 s",
                      "Redis restarted empty"]
            k = 0
            next_fault = time.monotonic() + a.fault_every
            start, next_sample = time.monotonic(), time.monotonic() + 60
            report["rss_samples"] = []
            while time.monotonic() < end:
                time.sleep(1)
                if time.monotonic() >= next_sample:  # the curve tells a leak (a slope) from warming up (a step)
                    next_sample = time.monotonic() + 60
                    report["rss_samples"].append({"at_s": round(time.monotonic() - start)} | rss())
                if time.monotonic() < next_fault:
                    continue
                next_fault += a.fault_every
                fault = faults[k % len(faults)]
                k += 1
                if fault.startswith("kill"):
                    busy, wait_until = [], time.monotonic() + 20
                    while not busy and time.monotonic() < wait_until:
                        busy = busy_children(celery, {procs["worker-a"].p.pid, procs["worker-b"].p.pid})
                    if not busy:
                        fault += " (none busy: skipped)"
                    else:
                        os.kill(busy[0], signal.SIGKILL)
                elif fault.startswith("PostgreSQL"):
                    from sqlalchemy import create_engine, text

                    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
                    with admin.connect() as c:
                        n = len(c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                               "datname = current_database() AND pid <> pg_backend_pid()")).all())
                    admin.dispose()
                    fault = f"{n} {fault}"
                elif fault.startswith("storage"):
                    proxy.down = True
                    time.sleep(8)
                    proxy.down = False
                else:
                    redis.kill()
                    time.sleep(1)
                    redis.start()
                report["faults"].append({"at_s": round(a.minutes * 60 - (end - time.monotonic())), "fault": fault})
                log(f"  fault: {fault}")
            load.stop.set()
            for t in threads:
                t.join(60)
            log(f"load stopped: {sum(load.counts.values())} requests; waiting for every job to end")
            report.update(settle(load, rt, procs))
            report["rss_end"] = rss()
            report["rss_warm"] = warm_sample(report["rss_samples"], a.warmup_minutes * 60)
        finally:
            load.stop.set()
            for p in procs.values():
                p.kill()
            redis.kill()
            proxy.close()
    routes = sorted(load.lat)
    report["requests"] = {f"{r} {st}": n for (r, st), n in sorted(load.counts.items())}
    report["latency"] = {r: {"n": len(load.lat[r]), "p50_s": percentile(load.lat[r], 0.5), "p99_s": percentile(load.lat[r], 0.99)}
                         for r in routes}
    report["loadavg_at_end"] = os.getloadavg()[0]
    print_report(report)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(stamp(report, "bench.soak"), indent=2) + "\n")
    log(f"written {a.out}; logs in {tmp}")
    return 0 if report.get("ok") else 1


def settle(load: Load, rt, procs) -> dict:
    """Every job ended, then counted against its zip: photos and items lost or doubled; stored objects
    that no row names."""
    from sqlalchemy import func, select

    from db.models import Item, Job, Photo
    from db.session import session_scope
    from services.sweeper import sweep

    ids = [uuid.UUID(j) for j in load.jobs if j not in load.deleted]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with session_scope() as s:
            active = s.scalar(select(func.count()).select_from(Job).where(Job.id.in_(ids), Job.status.in_(("queued", "running"))))
        if not active:
            break
        time.sleep(2)
    out = {"jobs": len(load.jobs), "jobs_deleted": len(load.deleted), "jobs_still_active": active,
           "statuses": {}, "photos_duplicate": 0, "photos_lost": 0, "photos_doubled": 0, "items_lost": 0, "items_doubled": 0}
    with session_scope() as s:
        for jid in ids:
            job = s.get(Job, jid)
            n = load.jobs[str(jid)][1]
            out["statuses"][job.status] = out["statuses"].get(job.status, 0) + 1
            by_status = dict(s.execute(select(Photo.status, func.count()).where(Photo.job_id == jid)
                                       .group_by(Photo.status)).all())
            # a photo this user already has is recorded as a duplicate of it, not segmented again
            done, dup = by_status.get("done", 0), by_status.get("duplicate", 0)
            out["photos_duplicate"] += dup
            per_photo = [c for _, c in s.execute(select(Item.photo_id, func.count()).where(Item.job_id == jid)
                                                 .group_by(Item.photo_id)).all()]
            if job.status == "succeeded":
                out["photos_lost"] += max(0, n - done - dup)
                out["items_lost"] += sum(max(0, PER_PHOTO - c) for c in per_photo) + PER_PHOTO * max(0, n - dup - len(per_photo))
            out["photos_doubled"] += max(0, done - n)
            out["items_doubled"] += sum(max(0, c - PER_PHOTO) for c in per_photo)
    dry = sweep(rt, dry_run=True, grace=0)
    out["stored_without_row"] = dry["unreferenced"]
    sweep(rt, grace=0)  # what the --beat worker's next pass does
    out["stored_without_row_after_a_sweep"] = sweep(rt, dry_run=True, grace=0)["unreferenced"]
    out["ok"] = (not active and out["photos_lost"] == out["photos_doubled"] == out["items_lost"] == out["items_doubled"] == 0
                 and not any(dry["unreferenced"].values()))
    return out


def print_report(r: dict) -> None:
    log(f"requests by route and status: {json.dumps(r['requests'])}")
    for route, v in r["latency"].items():
        log(f"  {route}: {v['n']} requests, p50 {v['p50_s']} s, p99 {v['p99_s']} s")
    warm = r.get("rss_warm") or {}
    loaded = (r.get("rss_samples") or [{}])[-1]  # the last sample under load: the end is measured idle, after the settle
    for part in ("api", "workers"):
        a, b = r.get("rss_start", {}).get(part, 0), r.get("rss_end", {}).get(part, 0)
        w, last = warm.get(part, 0), loaded.get(part, 0)
        log(f"  RSS {part}: {a / 2**20:.0f} MiB at the start, {b / 2**20:.0f} MiB at the end "
            f"({(b - a) / a * 100 if a else 0:+.1f} %)"
            + (f"; under load {w / 2**20:.0f} MiB after the warm-up ({warm['at_s']} s), {last / 2**20:.0f} MiB at "
               f"the last sample ({loaded['at_s']} s): {(last - w) / w * 100:+.1f} %" if w and last else ""))
        curve = [round(s[part] / 2**20) for s in r.get("rss_samples", [])]
        if curve:
            log(f"    each minute (MiB): {curve}")
    log(f"  jobs {r.get('jobs')} ({r.get('jobs_deleted')} deleted), statuses {r.get('statuses')}, still active "
        f"{r.get('jobs_still_active')}; photos lost {r.get('photos_lost')} (duplicates of a user's own: "
        f"{r.get('photos_duplicate')}), doubled {r.get('photos_doubled')}; items lost "
        f"{r.get('items_lost')}, doubled {r.get('items_doubled')}; stored without a row {r.get('stored_without_row')}, "
        f"after one sweep {r.get('stored_without_row_after_a_sweep')}")
    log(f"  faults: {[f['fault'] for f in r['faults']]}; load average {r['loadavg_at_start']:.1f} at the start, "
        f"{r['loadavg_at_end']:.1f} at the end, {r['cpus']} cores")


if __name__ == "__main__":
    sys.exit(main())
