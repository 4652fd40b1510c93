"""make chaos: the faults of issue 17 in one run, counted against a fault-free run.

Real processes on this machine: the API under gunicorn, two Celery workers of two processes each (one
with --beat: the stale-job sweep every WARDROBE_REAP_INTERVAL, the garbage sweep), a private Redis, a
scratch PostgreSQL database on the local server, moto's S3 server behind a TCP proxy that can cut it
off. The segmenter is the benchmark's stand-in with a fixed time per photo (bench.standin.TimedSegmenter,
BENCH_STANDIN_DELAY_MS): five items per photo, whatever the machine, so a lost or doubled photo or item shows in the counts; the model
itself is not what is being attacked.

1. Fault-free: N users upload a zip each (over HTTP); every job's time, photos and items are recorded.
2. The same zips by N other users, and while the jobs run, one after the other:
   kill -9 a pool process that is running a task; every PostgreSQL backend of the database
   terminated, three times a second apart; storage cut off for a while; Redis killed and started
   again empty (no persistence: every queued and unacknowledged message is lost).
3. Every job must end succeeded with the fault-free run's photos and items: none lost, none doubled
   (per job, per photo); each job's time is printed beside its fault-free time.
4. The sweeper, dry run then for real (grace 0, all jobs ended): what the faults left unreferenced is
   deleted, and every object a row names is still there; no zip is left (WARDROBE_UPLOAD_RETENTION 0).

Writes bench/out/chaos.json. Takes about two minutes on 2 cores, most of it the wait for the stale-job sweep
after the broker lost its messages (WARDROBE_STALE_AFTER, 60 s).
"""
from __future__ import annotations

import argparse
import io
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

import requests

from bench.provenance import stamp

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("WARDROBE_TEST_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def photos_zip(n: int, seed: int) -> bytes:
    """n small photos, each different from every other photo of this zip and of every other seed's
    (below 16,384): the same photo uploaded twice by one user is a `duplicate`, not a new photo."""
    from PIL import Image

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            # the colour repeats every 256 seeds: the height tells those apart
            im = Image.new("RGB", (96 + i % 5, 72 + (seed // 256) % 64),
                           ((seed * 53 + i * 37) % 256, (i * 11) % 256, (seed * 17 + i) % 256))
            out = io.BytesIO()
            im.save(out, "JPEG")
            zf.writestr(f"p{i:03d}.jpg", out.getvalue())
    return buf.getvalue()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Run:
    def __init__(self, url: str, tokens: list[str]):
        self.url, self.tokens = url, tokens

    def upload(self, token: str, data: bytes) -> str:
        r = requests.post(f"{self.url}/v1/uploads", headers={"Authorization": f"Bearer {token}"},
                          files={"file": ("photos.zip", data)}, timeout=60)
        assert r.status_code == 202, r.text
        return r.json()["id"]


def job_rows(ids: list[str]) -> dict[str, dict]:
    from sqlalchemy import func, select

    from db.models import Item, Job, Photo
    from db.session import session_scope

    out = {}
    with session_scope() as s:
        for jid in ids:
            j = s.get(Job, uuid.UUID(jid))
            per_photo = s.execute(select(Item.photo_id, func.count()).where(Item.job_id == j.id)
                                  .group_by(Item.photo_id)).all()
            out[jid] = {
                "status": j.status, "photos_total": j.photos_total, "photos_done": j.photos_done,
                "photos_failed": j.photos_failed, "items_found": j.items_found,
                "photo_rows_done": s.scalar(select(func.count()).select_from(Photo)
                                            .where(Photo.job_id == j.id, Photo.status == "done")),
                "item_rows": sum(c for _, c in per_photo), "photos_with_items": len(per_photo),
                "items_per_photo": sorted({c for _, c in per_photo}),
                "seconds": round((j.finished_at - j.created_at).total_seconds(), 1) if j.finished_at else None,
                "finished_at": j.finished_at.timestamp() if j.finished_at else None,
                "error": j.error_code,
            }
    return out


def wait_ended(ids: list[str], timeout: float, logs) -> None:
    from sqlalchemy import select

    from db.models import Job
    from db.session import session_scope

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with session_scope() as s:
                states = list(s.scalars(select(Job.status).where(Job.id.in_([uuid.UUID(i) for i in ids]))))
            if len(states) == len(ids) and all(st not in ("queued", "running") for st in states):
                return
        except Exception:  # noqa: BLE001 - the backends are being terminated: ask again
            pass
        time.sleep(0.5)
    raise SystemExit(f"jobs did not end within {timeout}s\n{logs()}")


def photos_done(ids: list[str]) -> int:
    from sqlalchemy import func, select

    from db.models import Job
    from db.session import session_scope

    with session_scope() as s:
        return s.scalar(select(func.sum(Job.photos_done)).where(Job.id.in_([uuid.UUID(i) for i in ids]))) or 0


def busy_children(app, parents: set[int]) -> list[int]:
    """Pool processes of our workers that are running a task now (Celery's inspect says which). A
    fresh broker connection each time: a pooled one may be to a Redis the run has since restarted.
    None busy while the broker cannot be reached."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    pids = []
    try:
        with app.connection_for_read() as conn:
            active = app.control.inspect(timeout=2, connection=conn).active() or {}
    except (OperationalError, RedisConnectionError, OSError):
        return pids
    for tasks in active.values():
        for t in tasks:
            pid = t.get("worker_pid")
            try:
                ppid = int(next(line.split()[1] for line in open(f"/proc/{pid}/status") if line.startswith("PPid:")))
            except (OSError, StopIteration, TypeError):
                continue
            if ppid in parents:  # only ever a child of a worker this run started
                pids.append(pid)
    return pids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=4, help="zips per run (one user each)")
    ap.add_argument("--photos", type=int, default=60, help="photos per zip")
    ap.add_argument("--delay-ms", type=int, default=300, help="the stand-in segmenter's time per photo")
    ap.add_argument("--storage-down", type=float, default=8.0, help="seconds storage is cut off")
    ap.add_argument("--slow-clients", type=float, default=20.0,
                    help="seconds of the slow-client phase (bench/slowclients.py) at the end, direct and through nginx "
                         "where it is installed; 0: none")
    ap.add_argument("--only-slow-clients", action="store_true", help="the slow-client phase alone, no faults")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "chaos.json"))
    a = ap.parse_args()

    from bench.scratch import scratch_database, scratch_s3
    from bench.procs import Proc, RedisServer, TcpProxy, wait_ready

    tmp = Path(tempfile.mkdtemp(prefix="wardrobe-chaos-"))
    report: dict = {"jobs": a.jobs, "photos_per_job": a.photos, "standin_delay_ms": a.delay_ms, "faults": []}
    with scratch_database(PG_ADMIN, "wardrobe_chaos") as db_url, \
            open(tmp / "moto.log", "wb") as mlog, scratch_s3(mlog) as s3:
        redis = RedisServer(tmp).start()
        proxy = TcpProxy(int(s3.rsplit(":", 1)[1]))
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
        env.update(WARDROBE_DATABASE_URL=db_url, WARDROBE_BROKER_URL=redis.url, WARDROBE_STORAGE_URL="s3://wardrobe-chaos",
                   WARDROBE_S3_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}", WARDROBE_S3_MAX_ATTEMPTS="1",
                   WARDROBE_DATA_DIR=str(tmp / "data"), WARDROBE_SEGMENTER="bench.standin:TimedSegmenter", BENCH_STANDIN_DELAY_MS=str(a.delay_ms),
                   WARDROBE_SEGMENT_CHUNK="4", WARDROBE_LOG_LEVEL="INFO", WARDROBE_MAX_UPLOADS_PER_HOUR="0")
        os.environ.update({k: v for k, v in env.items() if k.startswith("WARDROBE_")})
        subprocess.run([sys.executable, "-m", "cli.main", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)

        from services.bootup import bootup
        from core.config import Settings
        from core.queue import make_celery
        from db.session import session_scope
        from db.users import create_user

        settings = Settings.from_env()
        rt = bootup(settings)
        with session_scope() as s:
            tokens = [create_user(s, f"chaos-{i}")[1] for i in range(2 * a.jobs)]
            slow_tokens = [create_user(s, f"chaos-slow-{i}")[1] for i in range(5)]
        port = int(subprocess.check_output([sys.executable, "-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); "
                                            "print(s.getsockname()[1])"], text=True))
        procs = {
            "api": Proc(["serve", "--port", str(port), "--workers", "2"], env, tmp / "api.log"),
            "worker-a": Proc(["worker", "--concurrency", "2", "--beat"], env, tmp / "worker-a.log"),
            "worker-b": Proc(["worker", "--concurrency", "2"], env, tmp / "worker-b.log"),
        }
        for p in procs.values():
            p.start()

        def logs() -> str:
            return "\n".join(f"--- {n}\n{p.tail(3000)}" for n, p in procs.items())

        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, 2, 120, logs)
            if a.only_slow_clients:
                report["slow_clients"] = slow_client_phases(port, slow_tokens, a.slow_clients, tmp)
                report["ok"] = all(r["ok"] for r in report["slow_clients"])
                return finish(report, a, tmp)
            run = Run(url, tokens)
            zips = [photos_zip(a.photos, seed=k) for k in range(a.jobs)]

            log(f"fault-free run: {a.jobs} zips of {a.photos} photos")
            base_ids = [run.upload(tokens[k], zips[k]) for k in range(a.jobs)]
            wait_ended(base_ids, 300, logs)
            base = job_rows(base_ids)
            for jid in base_ids:
                log(f"  job {jid[:8]}: {base[jid]['status']} in {base[jid]['seconds']} s, "
                    f"{base[jid]['photos_done']} photos, {base[jid]['item_rows']} items")

            log("the same zips by other users, with faults")
            ids = [run.upload(tokens[a.jobs + k], zips[k]) for k in range(a.jobs)]
            celery = make_celery(settings)
            while photos_done(ids) < 4:
                time.sleep(0.1)
            parents = {procs["worker-a"].p.pid, procs["worker-b"].p.pid}
            t_fault = time.time()
            for _ in range(50):
                busy = busy_children(celery, parents)
                if busy:
                    os.kill(busy[0], signal.SIGKILL)
                    report["faults"].append({"at": round(time.time() - t_fault, 1), "fault": f"kill -9 busy pool process {busy[0]}"})
                    log(f"  kill -9 pool process {busy[0]} (running a task)")
                    break
                time.sleep(0.1)
            else:
                raise SystemExit("no pool process was running a task")
            time.sleep(2)
            from sqlalchemy import create_engine, text

            admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
            killed = 0
            for _ in range(3):
                with admin.connect() as c:
                    killed += len(c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                                 "WHERE datname = current_database() AND pid <> pg_backend_pid()")).all())
                time.sleep(1)
            admin.dispose()
            report["faults"].append({"at": round(time.time() - t_fault, 1), "fault": f"{killed} PostgreSQL backends terminated (3 rounds)"})
            log(f"  {killed} PostgreSQL backends terminated, in three rounds a second apart")
            time.sleep(1)
            proxy.down = True
            report["faults"].append({"at": round(time.time() - t_fault, 1), "fault": f"storage cut off for {a.storage_down:g} s"})
            log(f"  storage cut off for {a.storage_down:g} s")
            time.sleep(a.storage_down)
            proxy.down = False
            time.sleep(1)
            done_before = photos_done(ids)
            redis.kill()
            time.sleep(1)
            redis.start()
            report["faults"].append({"at": round(time.time() - t_fault, 1),
                                     "fault": f"Redis killed and started again empty ({done_before} of {a.jobs * a.photos} photos done)"})
            log(f"  Redis killed and restarted empty, {done_before} of {a.jobs * a.photos} photos done")
            t_last = time.time()
            wait_ended(ids, 600, logs)
            got = job_rows(ids)

            ok = True
            rows = []
            for k, (b, c) in enumerate(zip(base_ids, ids)):
                b_, c_ = base[b], got[c]
                same = (c_["status"] == b_["status"] == "succeeded"
                        and c_["photos_done"] == b_["photos_done"] == c_["photo_rows_done"] == a.photos
                        and c_["item_rows"] == b_["item_rows"] == c_["items_found"]
                        and c_["items_per_photo"] == b_["items_per_photo"] and c_["photos_with_items"] == a.photos)
                ok &= same
                rows.append({"zip": k, "fault_free": {x: b_[x] for x in ("status", "photos_done", "item_rows", "seconds")},
                             "with_faults": {x: c_[x] for x in ("status", "photos_done", "photos_failed", "item_rows",
                                                                "items_per_photo", "seconds")},
                             "ended_after_last_fault_s": round(c_["finished_at"] - t_last, 1),
                             "extra_seconds": round(c_["seconds"] - b_["seconds"], 1), "same_counts": same})
                log(f"  zip {k}: fault-free {b_['seconds']} s, {b_['photos_done']} photos, {b_['item_rows']} items | "
                    f"with faults {c_['status']} in {c_['seconds']} s (+{c_['seconds'] - b_['seconds']:.1f} s; ended "
                    f"{c_['finished_at'] - t_last:.1f} s after the broker restart), {c_['photos_done']} photos, "
                    f"{c_['item_rows']} items, {c_['items_per_photo']} per photo: {'same' if same else 'DIFFERENT'}")
            report["runs"] = rows
            report["reaper_resent"] = sum(p.tail(10_000_000).count("has not moved") for n, p in procs.items() if n != "api")
            report["pool_timeouts"] = sum(p.tail(10_000_000).count("Timed out waiting for UP message") for p in procs.values())
            log(f"  the stale-job sweep re-sent {report['reaper_resent']} job(s); "
                f"{report['pool_timeouts']} 'Timed out waiting for UP message'")

            # the sweeper: what the faults left behind
            from services.sweeper import sweep

            objects_before = {o.key for o in rt.storage.list("users/")}
            dry = sweep(rt, dry_run=True, grace=0)
            done = sweep(rt, grace=0)
            left = {o.key for o in rt.storage.list("users/")}
            from sqlalchemy import select

            from db.models import Item, Photo

            with session_scope() as s:
                named = set(s.scalars(select(Item.cutout_key))) | {k for k in s.scalars(select(Photo.storage_key)) if k}
            zips_left = [k for k in left if "/uploads/" in k]
            report["sweeper"] = {"dry_run": dry, "run": done, "objects_before": len(objects_before), "objects_after": len(left),
                                 "named_by_rows": len(named), "named_missing": len(named - left), "zips_left": len(zips_left)}
            log(f"  sweeper: {len(objects_before)} objects, unreferenced {dry['unreferenced']} (dry run), "
                f"{done['deleted']} deleted in {done['seconds']} s; {len(left)} left, every one named by a row: "
                f"{left == named}; {len(named - left)} named objects missing; {len(zips_left)} zips left")
            ok &= not (named - left) and left == named and not zips_left and dry["unreferenced"] == done["unreferenced"]
            if a.slow_clients > 0:
                report["slow_clients"] = slow_client_phases(port, slow_tokens, a.slow_clients, tmp)
                ok &= all(r["ok"] for r in report["slow_clients"])
            report["ok"] = bool(ok)
        finally:
            for p in procs.values():
                p.kill()
            redis.kill()
            proxy.close()
    return finish(report, a, tmp)


def finish(report: dict, a, tmp: Path) -> int:
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(stamp(report, "bench.chaos"), indent=2) + "\n")
    what = "the slow-client phase" if a.only_slow_clients else "none lost, none doubled"
    log(f"OK: {what}" if report.get("ok") else "FAILED")
    log(f"written {a.out}; logs in {tmp}")
    return 0 if report.get("ok") else 1


def slow_client_phases(port: int, tokens: list[str], seconds: float, tmp: Path) -> list[dict]:
    """200 half-open connections and 20 slow uploads against the API, then the same through nginx (the
    deployed site, deploy/nginx) when nginx is installed: /healthz and /v1/jobs p99 while they hold on.
    The target: p99 under 1 s and no failed probe."""
    from bench.slowclients import phase, start_nginx
    from bench.scratch import free_port

    out = []
    nport = free_port()
    nginx = start_nginx(tmp / "nginx", nport, f"127.0.0.1:{port}")
    try:
        for via, target in [("direct", port)] + ([("nginx", nport)] if nginx else []):
            log(f"slow clients ({via}): 200 half-open connections, 20 slow uploads, {seconds:g} s of probes")
            got = phase(target, tokens, 200, 20, seconds)
            ok = all(got[k]["p99_s"] < 1.0 and got[k]["failed"] == 0 for k in ("healthz", "jobs"))
            out.append({"via": via, "ok": ok, **got})
            log(f"  /healthz p50 {got['healthz']['p50_s']} s, p99 {got['healthz']['p99_s']} s, {got['healthz']['failed']} "
                f"failed of {got['healthz']['requests']}; /v1/jobs p50 {got['jobs']['p50_s']} s, p99 {got['jobs']['p99_s']} s, "
                f"{got['jobs']['failed']} failed of {got['jobs']['requests']}; slow uploads sending: "
                f"{got['slow_uploads_sending']}")
        if not nginx:
            log("  nginx is not installed: the phase ran without the proxy only (apt-get install nginx-light)")
    finally:
        if nginx:
            nginx.terminate()
            nginx.wait(10)
    return out


if __name__ == "__main__":
    sys.exit(main())
