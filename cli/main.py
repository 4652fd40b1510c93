"""`wardrobe`: one command for serving, working, administering and training."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path


def _settings():
    from core.config import Settings

    return Settings.from_env()


# --- services ---------------------------------------------------------------

def cmd_serve(a) -> int:
    from db.bootup import bootup
    from core.metricsdir import prepare_multiprocess_dir

    prepare_multiprocess_dir("api", _settings().data_path)  # gunicorn's processes add up their metrics there
    bootup(_settings())  # migrate the embedded database before workers fork
    local = Path(sys.executable).parent / "gunicorn"
    gunicorn = str(local) if local.exists() else shutil.which("gunicorn")
    if not gunicorn:
        print("error: gunicorn is not installed (pip install 'wardrobe[api]')", file=sys.stderr)
        return 2
    argv = [gunicorn, "--bind", f"{a.host}:{a.port}", "--workers", str(a.workers), "--threads", str(a.threads),
            "--worker-class", "api.server.JsonErrorWorker", "--timeout", "600", "--access-logfile", "-" if a.access_log else "/dev/null",
            "api.wsgi:app"]
    os.execv(argv[0], argv)


def cmd_worker(a) -> int:
    from db.bootup import bootup
    from core.metricsdir import prepare_multiprocess_dir

    prepare_multiprocess_dir("worker", _settings().data_path)  # before prometheus_client is imported
    settings = _settings()
    concurrency = a.concurrency or settings.worker_concurrency or os.cpu_count() or 1
    # the segmenter splits the cores between the worker's processes: tell it how many there are
    os.environ["WARDROBE_WORKER_CONCURRENCY"] = str(concurrency)
    bootup(settings)
    from worker.celery_app import app

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

    url = _settings().db_url
    if a.downgrade:
        downgrade(url, a.downgrade)
    else:
        upgrade(url, a.revision)
    print(f"database at {a.downgrade or a.revision}")
    return 0


def cmd_users(a) -> int:
    from sqlalchemy import func, select, update

    from db.bootup import bootup
    from db.models import ApiToken, User, utcnow
    from db.session import session_scope
    from db.users import create_user, issue_token

    bootup(_settings())
    if a.action != "list" and not a.name:
        print(f"error: wardrobe users {a.action} needs a NAME", file=sys.stderr)
        return 2
    if a.action == "delete":
        from cli.admin import delete_user

        return delete_user(_settings(), a.name)
    if a.action == "list":
        with session_scope() as s:
            live = func.count(ApiToken.id).filter(ApiToken.revoked_at.is_(None))
            rows = s.execute(select(User.name, User.id, User.created_at, live).outerjoin(ApiToken)
                             .group_by(User.id).order_by(User.name)).all()
        for name, uid, created, n in rows:
            print(f"{name:<30} {uid}  created {created:%Y-%m-%d %H:%M}  {n} live token{'' if n == 1 else 's'}")
        print(f"{len(rows)} user{'' if len(rows) == 1 else 's'}", file=sys.stderr)
        return 0
    if a.action in ("tokens", "revoke"):
        with session_scope() as s:
            uid = s.scalar(select(User.id).where(User.name == a.name))
            if uid is None:
                print(f"error: no user {a.name!r}", file=sys.stderr)
                return 2
            if a.action == "tokens":
                for prefix, created, revoked in s.execute(select(ApiToken.prefix, ApiToken.created_at, ApiToken.revoked_at)
                                                          .where(ApiToken.user_id == uid).order_by(ApiToken.created_at)):
                    state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else "live"
                    print(f"{prefix}…  created {created:%Y-%m-%d %H:%M}  {state}")
                return 0
            q = update(ApiToken).where(ApiToken.user_id == uid, ApiToken.revoked_at.is_(None))
            if a.prefix:
                q = q.where(ApiToken.prefix == a.prefix[:10])
            n = s.execute(q.values(revoked_at=utcnow())).rowcount
        print(f"revoked {n} token{'' if n == 1 else 's'} of {a.name} (API processes notice within "
              f"WARDROBE_TOKEN_CACHE_SECONDS)", file=sys.stderr)
        return 0 if n else 1
    if a.action == "create":
        from sqlalchemy.exc import IntegrityError

        try:
            with session_scope() as s:
                user, token = create_user(s, a.name)
                uid = user.id
        except (ValueError, IntegrityError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(token)
        print(f"created user {a.name} ({uid}); the token above is shown once", file=sys.stderr)
    elif a.action == "token":
        with session_scope() as s:
            uid = s.scalar(select(User.id).where(User.name == a.name))
            if uid is None:
                print(f"error: no user {a.name!r}", file=sys.stderr)
                return 2
            if a.revoke_others:
                s.execute(update(ApiToken).where(ApiToken.user_id == uid, ApiToken.revoked_at.is_(None))
                          .values(revoked_at=utcnow()))
            print(issue_token(s, uid))
    return 0


def cmd_workers(a) -> int:
    """The workers that answer a ping through the broker; exit 1 when none (or, with --this-host,
    none on this machine: the compose healthcheck)."""
    import socket

    from core.queue import make_celery

    try:
        replies = make_celery(_settings()).control.ping(timeout=a.timeout)
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

    return gc(_settings(), a.dry_run, a.grace)


def cmd_reap(a) -> int:
    from db.bootup import bootup
    from core.queue import enqueue_ingest
    from worker.celery_app import app
    from worker.reaper import broker_jobs, reap

    n = reap(bootup(_settings()), send_ingest=lambda j: enqueue_ingest(app, j), stale_after=a.stale_after,
             in_broker=lambda: broker_jobs(app))
    print(f"re-sent {n} stale job(s)")
    return 0


# --- client -----------------------------------------------------------------

def _zip_dir(folder: Path, dst: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif"}:
                zf.write(p, p.name)
    return dst


def cmd_upload(a) -> int:
    import tempfile

    from cli.client import ApiClient

    c = ApiClient(a.url, a.token)
    path = Path(a.path)
    with tempfile.TemporaryDirectory() as tmp:
        if path.is_dir():
            path = _zip_dir(path, Path(tmp) / f"{path.name}.zip")
        job = c.upload(path)
        print(f"job {job['id']} {job['status']}", file=sys.stderr)
        if a.wait:
            job = c.wait(job["id"])
    print(json.dumps(job, indent=2))
    if (note := duplicate_note(job)):
        print(note, file=sys.stderr)
    return 0 if job["status"] in ("queued", "running", "succeeded", "partially_succeeded") else 1


def duplicate_note(job: dict) -> str | None:
    """Say so when photos were skipped as already uploaded (else '0 items' reads as a failure)."""
    p = job["progress"]
    if not p["photos_duplicate"]:
        return None
    dup = p["photos_duplicate"]
    whole = "all " if dup == p["photos_total"] else ""
    return (f"{whole}{dup} photo{'' if dup == 1 else 's'} of this upload {'was' if dup == 1 else 'were'} already in "
            f"your catalogue (same file uploaded before): skipped, no new items from {'it' if dup == 1 else 'them'}")


def cmd_cancel(a) -> int:
    from cli.client import ApiClient

    job = ApiClient(a.url, a.token).delete(f"/v1/jobs/{a.job_id}")
    print(f"job {job['id']} {job['status']}")
    return 0


def cmd_delete(a) -> int:
    from cli.client import ApiClient

    c = ApiClient(a.url, a.token)
    for item_id in a.item_ids:
        c.delete(f"/v1/items/{item_id}")
        print(f"deleted item {item_id}")
    return 0


def cmd_jobs(a) -> int:
    from cli.client import ApiClient

    c = ApiClient(a.url, a.token)
    if a.job_id:
        job = c.wait(a.job_id) if a.wait else c.get(f"/v1/jobs/{a.job_id}")
        print(json.dumps(job, indent=2))
    else:
        for j in c.get("/v1/jobs")["jobs"]:
            p = j["progress"]
            print(f"{j['id']}  {j['status']:<20} {p['photos_done']}/{p['photos_total']} photos  {p['items_found']} items  {j['created_at']}")
    return 0


def print_catalogue(items: list[dict], out=sys.stdout) -> None:
    by_cat: dict[str, list[dict]] = {}
    for it in items:
        by_cat.setdefault(it["category"], []).append(it)
    cats = len(by_cat)
    print(f"{len(items)} item{'' if len(items) == 1 else 's'} in {cats} categor{'y' if cats == 1 else 'ies'}", file=out)
    for cat in sorted(by_cat, key=lambda c: (-len(by_cat[c]), c)):
        rows = by_cat[cat]
        print(f"\n{cat} ({rows[0]['supercategory']}): {len(rows)}", file=out)
        print(f"  {'item':<36}  {'photo':<36}  {'conf':>5}  {'area':>6}  bbox", file=out)
        for it in sorted(rows, key=lambda r: -r["confidence"]):
            print(f"  {it['id']:<36}  {it['photo_id']:<36}  {it['confidence']:5.2f}  {it['area_fraction'] * 100:5.1f}%  {it['bbox']}", file=out)


def cmd_items(a) -> int:
    from cli.client import ApiClient

    c = ApiClient(a.url, a.token)
    filters = {k: v for k, v in {"category": a.category, "supercategory": a.supercategory, "job_id": a.job_id,
                                  "min_confidence": a.min_confidence}.items() if v is not None}
    items = c.all_items(**filters)
    if a.json:
        print(json.dumps(items, indent=2))
    else:
        print_catalogue(items)
    return 0


def cmd_demo(a) -> int:
    from cli.demo import run_demo

    return run_demo(a)


# --- training ---------------------------------------------------------------

def cmd_import(a) -> int:
    from training.fashionpedia import import_dataset

    report = import_dataset(Path(a.train_json), Path(a.val_json), Path(a.images), Path(a.out),
                            val_images_dir=Path(a.val_images) if a.val_images else None,
                            keep_background=not a.drop_background, link=not a.copy)
    print(json.dumps(report, indent=2))
    return 0


def cmd_train(a) -> int:
    from training.train import train

    run = train(a.data, a.preset, project=a.project, name=a.name, epochs=a.epochs, imgsz=a.imgsz, batch=a.batch,
                weights=a.weights, resume=a.resume, seed=a.seed, device=a.device, workers=a.workers,
                bf16=a.bf16, val_every=a.val_every, time_hours=a.time_hours)
    print(f"run directory: {run}")
    return 0


def cmd_evaluate(a) -> int:
    from training.evaluate import evaluate, print_table

    report = evaluate(a.weights, a.data, imgsz=a.imgsz, split=a.split, device=a.device, batch=a.batch)
    print_table(report)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {a.json}")
    return 0


def cmd_predict(a) -> int:
    from segmentation.preview import predict_and_draw

    dets = predict_and_draw(a.weights, Path(a.photo), Path(a.save) if a.save else None, imgsz=a.imgsz, conf=a.conf)
    for d in dets:
        print(f"{d['category']:<40} {d['confidence']:.2f}  {d['bbox']}")
    if a.save:
        print(f"wrote {a.save}", file=sys.stderr)
    return 0


def cmd_export_training(a) -> int:
    from db.bootup import bootup
    from training.export import export_training

    counts = export_training(bootup(_settings()), Path(a.out), user_name=a.user, corrected_only=a.corrected_only,
                             val_fraction=a.val_fraction)
    print(json.dumps(counts, indent=2))
    print(f"import it with: wardrobe import-fashionpedia --train-json {a.out}/instances_train.json "
          f"--val-json {a.out}/instances_val.json --images {a.out}/images --out DATASET", file=sys.stderr)
    return 0


def cmd_export(a) -> int:
    """Export the configured weights for the worker's CPU backend (OpenVINO), into its cache."""
    from dataclasses import replace

    settings = _settings()
    if a.weights:
        settings = replace(settings, model=a.weights)
    from segmentation.runtime import prepare_ultralytics
    from segmentation.backends import openvino_available, openvino_model
    from segmentation.segmenter import weights_digest

    if not openvino_available():
        print("error: openvino is not installed (pip install 'wardrobe[openvino]')", file=sys.stderr)
        return 2
    prepare_ultralytics()
    path = Path(settings.model)
    from segmentation.card import serve_imgsz

    imgsz = a.imgsz or settings.imgsz or serve_imgsz(path)
    digest = weights_digest(path)
    if a.int8:
        if not a.data:
            print("error: --int8 needs --data DATA.yaml (calibration photos come from its train split)", file=sys.stderr)
            return 2
        from training.quantize import quantize_openvino

        out = quantize_openvino(path, imgsz, Path(a.data), digest, fraction=a.fraction)
    else:
        out = openvino_model(path, imgsz, settings.data_path / "model-cache", digest)
    print(out)
    return 0


def cmd_ship(a) -> int:
    from training.ship import ship, update_card

    if a.card_only:
        card = update_card(Path(a.best), serve_conf=a.serve_conf, serve_imgsz=a.serve_imgsz,
                           quality_json=Path(a.quality_json) if a.quality_json else None)
        print(json.dumps(card, indent=2))
        return 0
    if not (a.preset and a.data_desc and a.hardware):
        print("error: shipping weights needs --preset, --data-desc and --hardware", file=sys.stderr)
        return 2

    card = ship(Path(a.best), Path(a.out), preset=a.preset, data=a.data_desc, hardware=a.hardware,
                eval_json=Path(a.eval_json) if a.eval_json else None, results_csv=Path(a.results_csv) if a.results_csv else None,
                serve_imgsz=a.serve_imgsz, previous_card=Path(a.previous_card) if a.previous_card else None,
                serve_conf=a.serve_conf, quality_json=Path(a.quality_json) if a.quality_json else None)
    print(json.dumps(card, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from core.config import DEFAULT_MODEL

    p = argparse.ArgumentParser(prog="wardrobe", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the API (gunicorn)")
    s.add_argument("--host", default=os.environ.get("WARDROBE_HOST", "127.0.0.1"),
                   help="address to listen on (WARDROBE_HOST; default 127.0.0.1, this machine only)")
    s.add_argument("--port", type=int, default=int(os.environ.get("WARDROBE_PORT", "8000")),
                   help="port to listen on (WARDROBE_PORT; default 8000)")
    # processes over threads: the routes are short and CPU-bound in Python, so threads mostly
    # queue on the GIL (make bench-api: poll p99 16 ms with 2 per core x 2 threads, 49 ms with
    # 1 per core x 4 threads, 174 ms with 1 per core x 8 threads, at 200 requests/s on 2 cores)
    s.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1), help="default: 2 per core")
    s.add_argument("--threads", type=int, default=2, help="threads per worker process")
    s.add_argument("--access-log", action="store_true", help="log every request to stdout")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("worker", help="run a Celery worker")
    s.add_argument("--queues", default="ingest,segment", help="comma-separated: ingest, segment")
    s.add_argument("--concurrency", type=int, default=0,
                   help="pool processes (default: WARDROBE_WORKER_CONCURRENCY, else one per core)")
    s.add_argument("--pool", default=None, help="prefork (default), solo, threads")
    s.add_argument("--loglevel", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
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

    s = sub.add_parser("reap", help="re-send work of jobs whose worker vanished")
    s.add_argument("--stale-after", type=int, default=None, help="seconds without progress")
    s.set_defaults(fn=cmd_reap)

    def client_args(sp):
        sp.add_argument("--url", default=None, help="API address (WARDROBE_URL)")
        sp.add_argument("--token", default=None, help="API token (WARDROBE_TOKEN)")

    s = sub.add_parser("upload", help="upload a zip (or a folder of photos)")
    s.add_argument("path")
    s.add_argument("--wait", action="store_true", help="follow the job to the end")
    client_args(s)
    s.set_defaults(fn=cmd_upload)

    s = sub.add_parser("jobs", help="list jobs, or show one")
    s.add_argument("job_id", nargs="?", help="show this job (default: list them)")
    s.add_argument("--wait", action="store_true", help="follow the job to the end")
    client_args(s)
    s.set_defaults(fn=cmd_jobs)

    s = sub.add_parser("cancel", help="cancel a queued or running job")
    s.add_argument("job_id")
    client_args(s)
    s.set_defaults(fn=cmd_cancel)

    s = sub.add_parser("items", help="print the catalogue")
    s.add_argument("--category", help="any of a class's names, any case: bag, \"bag, wallet\", Shoe")
    s.add_argument("--supercategory", help="e.g. upperbody, lowerbody, wholebody (GET /v1/categories)")
    s.add_argument("--job-id", help="only the items of this upload")
    s.add_argument("--min-confidence", type=float, help="0 to 1")
    s.add_argument("--json", action="store_true", help="the items as the API returns them")
    client_args(s)
    s.set_defaults(fn=cmd_items)

    s = sub.add_parser("delete", help="delete items (and their cut-outs) for good")
    s.add_argument("item_ids", nargs="+", metavar="item_id")
    client_args(s)
    s.set_defaults(fn=cmd_delete)

    s = sub.add_parser("demo", help="start everything embedded, upload the example photos, print the catalogue")
    s.add_argument("--photos", default=None, help="folder of photos (default: examples/photos)")
    s.add_argument("--data-dir", default=None, help="where the demo keeps its database and files")
    s.add_argument("--out", default=None, help="folder for the cut-outs")
    s.add_argument("--port", type=int, default=8765, help="the API's and page's port (default 8765)")
    s.add_argument("--keep-running", action="store_true",
                   help="leave the API and worker running after the catalogue is printed (stop them with the pids shown)")
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("import-fashionpedia", help="Fashionpedia COCO JSON -> YOLO-seg dataset of the 23 classes")
    s.add_argument("--train-json", required=True, help="Fashionpedia/COCO instances JSON of the train split")
    s.add_argument("--val-json", required=True, help="the same for the val split")
    s.add_argument("--images", required=True, help="train images folder (and val, unless --val-images)")
    s.add_argument("--val-images", help="val images folder, when apart from --images")
    s.add_argument("--out", required=True, help="folder for the YOLO dataset (data.yaml, images, labels)")
    s.add_argument("--drop-background", action="store_true", help="skip images with no kept instance")
    s.add_argument("--copy", action="store_true", help="copy images instead of symlinking")
    s.set_defaults(fn=cmd_import)

    from training.presets import PRESETS

    s = sub.add_parser("train", help="train YOLOv8s-seg (offline, from the architecture yaml)")
    s.add_argument("--data", required=True, help="data.yaml written by import-fashionpedia")
    s.add_argument("--preset", default="shared-cpu", choices=sorted(PRESETS), help="training settings (training/presets.py)")
    s.add_argument("--project", default="runs/train", help="runs are written to PROJECT/NAME")
    s.add_argument("--name", default="wardrobe", help="see --project")
    s.add_argument("--epochs", type=int, help="default: the preset's")
    s.add_argument("--imgsz", type=int, help="training image size in pixels (default: the preset's)")
    s.add_argument("--batch", type=int, help="default: the preset's")
    s.add_argument("--weights", help="start from these weights (fine-tune) instead of random init")
    s.add_argument("--resume", action="store_true", help="continue project/name/weights/last.pt")
    s.add_argument("--seed", type=int, default=0, help="random seed")
    s.add_argument("--device", help="cpu, 0 (the first GPU) ... (default: the preset's)")
    s.add_argument("--workers", type=int, help="data loader processes")
    s.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast on the CPU (default: on where the CPU has native bf16)")
    s.add_argument("--val-every", type=int, default=1, help="validate every N epochs (the last one always)")
    s.add_argument("--time-hours", type=float, help="wall-clock budget; sets the epoch count to fit")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("evaluate", help="mask and box metrics on a split, as a table and JSON")
    s.add_argument("--weights", default=str(DEFAULT_MODEL), help="the .pt to evaluate (default: the shipped model)")
    s.add_argument("--data", required=True, help="data.yaml written by import-fashionpedia")
    s.add_argument("--split", default="val", help="the data.yaml split to score: val (default), train, test")
    s.add_argument("--imgsz", type=int, default=None, help="default: the model card's imgsz")
    s.add_argument("--batch", type=int, default=8, help="photos per forward pass")
    s.add_argument("--device", help="cpu, 0 (the first GPU) ...")
    s.add_argument("--json", help="write the report here")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("predict", help="segment one photo and draw masks and labels")
    s.add_argument("photo")
    s.add_argument("--weights", default=str(DEFAULT_MODEL), help="the .pt to run (default: the shipped model)")
    s.add_argument("--save", help="write the drawing here (PNG/JPEG)")
    s.add_argument("--imgsz", type=int, default=None, help="default: the model card's served size, as the worker")
    s.add_argument("--conf", type=float, default=None, help="default: the model card's serve_conf, as the worker")
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("export", help="export the model for the CPU backend: OpenVINO fp32 into the cache, or --int8 beside the weights")
    s.add_argument("--weights", help="default: WARDROBE_MODEL")
    s.add_argument("--imgsz", type=int, help="input size to export at (default: WARDROBE_IMGSZ, else the card's served size)")
    s.add_argument("--int8", action="store_true",
                   help="quantise to int8 with NNCF and write it beside the weights (the CPU worker's first choice)")
    s.add_argument("--data", help="with --int8: a YOLO data.yaml whose train split calibrates the quantiser")
    s.add_argument("--fraction", type=float, default=0.4, help="with --int8: share of the train split to calibrate on")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("export-training", help="write the corrected catalogue as a Fashionpedia-format dataset")
    s.add_argument("--out", required=True, help="folder for the dataset (instances_*.json, images)")
    s.add_argument("--user", help="only this user's catalogue")
    s.add_argument("--corrected-only", action="store_true", help="only photos with at least one corrected item")
    s.add_argument("--val-fraction", type=float, default=0.1, help="share of the photos held out for val")
    s.set_defaults(fn=cmd_export_training)

    s = sub.add_parser("ship", help="write half-precision weights and their model card")
    s.add_argument("best", help="best.pt from a training run (with --card-only: the shipped weights)")
    s.add_argument("--out", default=str(DEFAULT_MODEL), help="where the fp16 weights go (the card beside them)")
    s.add_argument("--card-only", action="store_true",
                   help="only record --serve-conf/--serve-imgsz/--quality-json on the card of weights already shipped")
    s.add_argument("--preset", help="the preset it was trained with (for the card)")
    s.add_argument("--data-desc", help="what it was trained on")
    s.add_argument("--hardware", help="what it was trained on, e.g. '2 CPU cores' (for the card)")
    s.add_argument("--eval-json", help="report from `wardrobe evaluate --json`")
    s.add_argument("--results-csv", help="the run's results.csv")
    s.add_argument("--serve-imgsz", type=int, help="the input size the workers run it at (default: the training size)")
    s.add_argument("--previous-card", help="the card of the weights this run continued from (epochs add up)")
    s.add_argument("--serve-conf", type=float, help="the item threshold the workers use (chosen from make quality)")
    s.add_argument("--quality-json", help="make quality's report at the served settings, for the card")
    s.set_defaults(fn=cmd_ship)
    return p


def main(argv: list[str] | None = None) -> int:
    from segmentation.runtime import ultralytics_offline

    ultralytics_offline()  # every command (train, evaluate, predict, worker ...): no installs or network from Ultralytics
    args = build_parser().parse_args(argv)
    return args.fn(args) or 0


if __name__ == "__main__":
    sys.exit(main())
