"""`wardrobe serve`, `worker`, `migrate`, `users`, `workers`, `gc`, `reap`: running and administering the services."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def env_settings():
    from core.config import Settings

    return Settings.from_env()


# --- services ---------------------------------------------------------------

def cmd_serve(a) -> int:
    from services.bootup import bootup
    from core.metricsdir import prepare_multiprocess_dir

    prepare_multiprocess_dir("api", env_settings().data_path)  # gunicorn's processes add up their metrics there
    bootup(env_settings())  # migrate the embedded database before workers fork
    local = Path(sys.executable).parent / "gunicorn"
    gunicorn = str(local) if local.exists() else shutil.which("gunicorn")
    if not gunicorn:
        print("error: gunicorn is not installed (pip install 'wardrobe[api]')", file=sys.stderr)
        return 2
    # no access log unless asked: gunicorn then skips formatting one line per request (to /dev/null, before)
    argv = [gunicorn, "--bind", f"{a.host}:{a.port}", "--workers", str(a.workers), "--timeout", "600",
            *(["--access-logfile", "-"] if a.access_log else [])]
    if a.server == "gevent":
        # a connection is a greenlet: idle, slow and half-open clients and open streams take no thread
        argv += ["--worker-class", "api.server_gevent.JsonGeventWorker", "--worker-connections", str(a.connections)]
    else:
        # live-progress streams (api/events.py) hold a thread each while open, mostly asleep: each process gets
        # that many threads more, so open streams never take the threads the short routes need
        threads = a.threads + max(0, env_settings().events_max_streams)
        argv += ["--worker-class", "api.server.JsonErrorWorker", "--threads", str(threads)]
    argv.append("api.wsgi:app")
    os.execv(argv[0], argv)


def cmd_worker(a) -> int:
    from core import logs
    from services.bootup import bootup
    from core.metricsdir import prepare_multiprocess_dir

    prepare_multiprocess_dir("worker", env_settings().data_path)  # before prometheus_client is imported
    settings = env_settings()
    concurrency = a.concurrency or settings.worker_concurrency or os.cpu_count() or 1
    # the segmenter splits the cores between the worker's processes: tell it how many there are
    os.environ["WARDROBE_WORKER_CONCURRENCY"] = str(concurrency)
    logs.configure(settings.log_level, logfile=a.logfile)  # Celery leaves the root logger to us
    if "segment" in a.queues.split(",") and settings.segmenter == "yolo":
        from segmentation.lean import ModelError
        from segmentation.serving import check_model

        try:
            check_model(settings)  # a model the decoder cannot read stops the worker here, not in every process
        except ModelError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    bootup(settings)
    from worker.celery_app import app, configure

    configure(settings)

    argv = ["worker", "-Q", a.queues, "--concurrency", str(concurrency), "--loglevel", a.loglevel,
            "-n", f"wardrobe-{os.getpid()}@%h", "--without-gossip", "--without-mingle"]
    if a.pool:
        argv += ["--pool", a.pool]
    if a.beat:
        argv += ["--beat", "--schedule", str(settings.data_path / "celerybeat-schedule")]
    app.worker_main(argv)
    return 0


def cmd_migrate(a) -> int:
    from db.migrate import downgrade, upgrade

    url = env_settings().db_url
    if a.downgrade:
        downgrade(url, a.downgrade)
    else:
        upgrade(url, a.revision)
    print(f"database at {a.downgrade or a.revision}")
    return 0


def cmd_users(a) -> int:
    from cli.admin import users

    return users(env_settings(), a)


def cmd_workers(a) -> int:
    """The workers that answer a ping through the broker; exit 1 when none (or, with --this-host,
    none on this machine: the compose healthcheck)."""
    import socket

    from core.queue import make_celery

    try:
        replies = make_celery(env_settings()).control.ping(timeout=a.timeout)
    except Exception as e:  # noqa: BLE001
        print(f"error: cannot reach the broker: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    names = sorted(n for r in replies for n in r)
    if a.this_host:
        names = [n for n in names if n.endswith("@" + socket.gethostname())]
    for n in names:
        print(n)
    if not names:
        print("no worker answered: uploads wait queued until one runs (wardrobe worker)", file=sys.stderr)
    return 0 if names else 1


def cmd_gc(a) -> int:
    from cli.admin import gc

    return gc(env_settings(), a.dry_run, a.grace)


def cmd_reap(a) -> int:
    from services.bootup import bootup
    from core.queue import enqueue_export, enqueue_ingest, make_celery
    from worker.reaper import broker_jobs, reap, reap_exports

    rt = bootup(env_settings())
    app = make_celery(rt.settings)
    n = reap(rt, send_ingest=lambda j: enqueue_ingest(app, j), stale_after=a.stale_after,
             in_broker=lambda: broker_jobs(app))
    e = reap_exports(rt, send_export=lambda x: enqueue_export(app, x), stale_after=a.stale_after,
                     in_broker=lambda: broker_jobs(app))
    print(f"re-sent {n} stale job(s) and {e} stale export(s)")
    return 0


def _add_serve_parser(sub) -> None:
    s = sub.add_parser("serve", help="run the API (gunicorn)")
    s.add_argument("--host", default=os.environ.get("WARDROBE_HOST", "127.0.0.1"),
                   help="address to listen on (WARDROBE_HOST; default 127.0.0.1, this machine only)")
    s.add_argument("--port", type=int, default=int(os.environ.get("WARDROBE_PORT", "8000")),
                   help="port to listen on (WARDROBE_PORT; default 8000)")
    # processes over threads: the routes are short and CPU-bound in Python, so threads mostly
    # queue on the GIL (make bench-api: poll p99 16 ms with 2 per core x 2 threads, 49 ms with
    # 1 per core x 4 threads, 174 ms with 1 per core x 8 threads, at 200 requests/s on 2 cores)
    s.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1), help="default: 2 per core")
    s.add_argument("--threads", type=int, default=2,
                   help="with --server gthread: threads per worker process for the routes (plus "
                        "WARDROBE_EVENTS_MAX_STREAMS for live streams)")
    s.add_argument("--access-log", action="store_true", help="log every request to stdout")
    s.add_argument("--server", choices=["gevent", "gthread"], default=os.environ.get("WARDROBE_SERVER", "gevent"),
                   help="gunicorn's worker class (WARDROBE_SERVER): gevent (default; a connection is a greenlet, so "
                        "slow and half-open clients hold no thread) or gthread (a thread per request being read)")
    s.add_argument("--connections", type=int, default=1000,
                   help="with gevent: connections per worker process at most (idle, slow and streaming included)")
    s.set_defaults(fn=cmd_serve)


def add_parsers(sub) -> None:
    from core.queue import QUEUES

    _add_serve_parser(sub)

    s = sub.add_parser("worker", help="run a Celery worker")
    s.add_argument("--queues", default=",".join(QUEUES), help=f"comma-separated: {', '.join(QUEUES)} (default: all)")
    s.add_argument("--concurrency", type=int, default=0,
                   help="pool processes (default: WARDROBE_WORKER_CONCURRENCY, else one per core)")
    s.add_argument("--pool", default=None, help="prefork (default), solo, threads")
    s.add_argument("--loglevel", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    s.add_argument("--logfile", default=None, help="write the log to this file (JSON lines) instead of stderr")
    s.add_argument("--beat", action="store_true",
                   help="also run the periodic stale-job sweep and the garbage sweep (one worker per deployment)")
    s.set_defaults(fn=cmd_worker)

    s = sub.add_parser("migrate", help="apply database migrations")
    s.add_argument("--revision", default="head", help="migrate up to this revision (default: the latest)")
    s.add_argument("--downgrade", metavar="REV", help="migrate down to this revision instead")
    s.set_defaults(fn=cmd_migrate)

    s = sub.add_parser("users", help="create, list and revoke users' API tokens",
                       description="create NAME: a user and its first token; token NAME: one more token; "
                                   "list: every user; tokens NAME: a user's tokens; revoke NAME: its live tokens; "
                                   "delete NAME: the user and everything of theirs (jobs, photos, items, stored objects)")
    s.add_argument("action", choices=["create", "token", "list", "tokens", "revoke", "delete"])
    s.add_argument("name", nargs="?", help="the user's name (not for list)")
    s.add_argument("--prefix", help="with revoke: only the token starting so (as `tokens` lists it)")
    s.add_argument("--revoke-others", action="store_true", help="with token: revoke the user's other tokens")
    s.set_defaults(fn=cmd_users)

    s = sub.add_parser("workers", help="list the workers that answer through the broker (exit 1: none)")
    s.add_argument("--this-host", action="store_true", help="only workers on this machine (a healthcheck)")
    s.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for answers")
    s.set_defaults(fn=cmd_workers)

    s = sub.add_parser("gc", help="delete unreferenced objects, zips past their retention and stale temp files "
                                  "(as the --beat worker does every WARDROBE_GC_INTERVAL)")
    s.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
    s.add_argument("--grace", type=int, default=None, help="seconds an object must be old to go (WARDROBE_GC_GRACE)")
    s.set_defaults(fn=cmd_gc)

    s = sub.add_parser("reap", help="re-send work of jobs and exports whose worker vanished")
    s.add_argument("--stale-after", type=int, default=None, help="seconds without progress")
    s.set_defaults(fn=cmd_reap)
