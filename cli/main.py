"""`wardrobe`: one command for serving, working, administering and training."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path


def _settings():
    from db.config import Settings

    return Settings.from_env()


# --- services ---------------------------------------------------------------

def cmd_serve(a) -> int:
    from db.bootup import bootup
    from db.metricsdir import prepare_multiprocess_dir

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
    from db.metricsdir import prepare_multiprocess_dir

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
    from db.bootup import bootup
    from db.session import session_scope
    from db.users import create_user, issue_token

    bootup(_settings())
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
        from sqlalchemy import select

        from db.models import User

        with session_scope() as s:
            uid = s.scalar(select(User.id).where(User.name == a.name))
            if uid is None:
                print(f"error: no user {a.name!r}", file=sys.stderr)
                return 2
            print(issue_token(s, uid))
    return 0


def cmd_reap(a) -> int:
    from db.bootup import bootup
    from db.queue import enqueue_ingest
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
    return 0 if job["status"] in ("queued", "running", "succeeded", "partially_succeeded") else 1


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
    print(f"{len(items)} items in {len(by_cat)} categories", file=out)
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
    from worker.preview import predict_and_draw

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
    from training.runtime import prepare_ultralytics
    from worker.backends import openvino_available, openvino_model
    from worker.segmenter import weights_digest

    if not openvino_available():
        print("error: openvino is not installed (pip install 'wardrobe[openvino]')", file=sys.stderr)
        return 2
    prepare_ultralytics()
    path = Path(settings.model)
    from training.card import serve_imgsz

    imgsz = a.imgsz or settings.imgsz or serve_imgsz(path)
    digest = weights_digest(path)
    if a.int8:
        if not a.data:
            print("error: --int8 needs --data DATA.yaml (calibration photos come from its train split)", file=sys.stderr)
            return 2
        from worker.backends import quantize_openvino

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
    from db.config import DEFAULT_MODEL

    p = argparse.ArgumentParser(prog="wardrobe", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the API (gunicorn)")
    s.add_argument("--host", default=os.environ.get("WARDROBE_HOST", "127.0.0.1"))
    s.add_argument("--port", type=int, default=int(os.environ.get("WARDROBE_PORT", "8000")))
    # processes over threads: the routes are short and CPU-bound in Python, so threads mostly
    # queue on the GIL (make bench-api: poll p99 16 ms with 2 per core x 2 threads, 49 ms with
    # 1 per core x 4 threads, 174 ms with 1 per core x 8 threads, at 200 requests/s on 2 cores)
    s.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1), help="default: 2 per core")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--access-log", action="store_true")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("worker", help="run a Celery worker")
    s.add_argument("--queues", default="ingest,segment", help="comma-separated: ingest, segment")
    s.add_argument("--concurrency", type=int, default=0)
    s.add_argument("--pool", default=None, help="prefork (default), solo, threads")
    s.add_argument("--loglevel", default="INFO")
    s.add_argument("--beat", action="store_true", help="also run the periodic stale-job sweep (one worker per deployment)")
    s.set_defaults(fn=cmd_worker)

    s = sub.add_parser("migrate", help="apply database migrations")
    s.add_argument("--revision", default="head")
    s.add_argument("--downgrade", metavar="REV")
    s.set_defaults(fn=cmd_migrate)

    s = sub.add_parser("users", help="create users and tokens")
    s.add_argument("action", choices=["create", "token"])
    s.add_argument("name")
    s.set_defaults(fn=cmd_users)

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
    s.add_argument("job_id", nargs="?")
    s.add_argument("--wait", action="store_true")
    client_args(s)
    s.set_defaults(fn=cmd_jobs)

    s = sub.add_parser("items", help="print the catalogue")
    s.add_argument("--category")
    s.add_argument("--supercategory")
    s.add_argument("--job-id")
    s.add_argument("--min-confidence", type=float)
    s.add_argument("--json", action="store_true")
    client_args(s)
    s.set_defaults(fn=cmd_items)

    s = sub.add_parser("demo", help="start everything embedded, upload the example photos, print the catalogue")
    s.add_argument("--photos", default=None, help="folder of photos (default: examples/photos)")
    s.add_argument("--data-dir", default=None, help="where the demo keeps its database and files")
    s.add_argument("--out", default=None, help="folder for the cut-outs")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--keep-running", action="store_true", help="leave the API and worker running")
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("import-fashionpedia", help="Fashionpedia COCO JSON -> YOLO-seg dataset of the 23 classes")
    s.add_argument("--train-json", required=True)
    s.add_argument("--val-json", required=True)
    s.add_argument("--images", required=True, help="train images folder (and val, unless --val-images)")
    s.add_argument("--val-images")
    s.add_argument("--out", required=True)
    s.add_argument("--drop-background", action="store_true", help="skip images with no kept instance")
    s.add_argument("--copy", action="store_true", help="copy images instead of symlinking")
    s.set_defaults(fn=cmd_import)

    from training.presets import PRESETS

    s = sub.add_parser("train", help="train YOLOv8s-seg (offline, from the architecture yaml)")
    s.add_argument("--data", required=True, help="data.yaml written by import-fashionpedia")
    s.add_argument("--preset", default="shared-cpu", choices=sorted(PRESETS))
    s.add_argument("--project", default="runs/train")
    s.add_argument("--name", default="wardrobe")
    s.add_argument("--epochs", type=int)
    s.add_argument("--imgsz", type=int)
    s.add_argument("--batch", type=int)
    s.add_argument("--weights", help="start from these weights (fine-tune) instead of random init")
    s.add_argument("--resume", action="store_true", help="continue project/name/weights/last.pt")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device")
    s.add_argument("--workers", type=int)
    s.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast on the CPU (default: on where the CPU has native bf16)")
    s.add_argument("--val-every", type=int, default=1, help="validate every N epochs (the last one always)")
    s.add_argument("--time-hours", type=float, help="wall-clock budget; sets the epoch count to fit")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("evaluate", help="mask and box metrics on a split, as a table and JSON")
    s.add_argument("--weights", default=str(DEFAULT_MODEL))
    s.add_argument("--data", required=True)
    s.add_argument("--split", default="val")
    s.add_argument("--imgsz", type=int, default=None, help="default: the model card's imgsz")
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--device")
    s.add_argument("--json", help="write the report here")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("predict", help="segment one photo and draw masks and labels")
    s.add_argument("photo")
    s.add_argument("--weights", default=str(DEFAULT_MODEL))
    s.add_argument("--save", help="write the drawing here (PNG/JPEG)")
    s.add_argument("--imgsz", type=int, default=None, help="default: the model card's served size, as the worker")
    s.add_argument("--conf", type=float, default=None, help="default: the model card's serve_conf, as the worker")
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("export", help="export the model for the CPU backend: OpenVINO fp32 into the cache, or --int8 beside the weights")
    s.add_argument("--weights", help="default: WARDROBE_MODEL")
    s.add_argument("--imgsz", type=int)
    s.add_argument("--int8", action="store_true",
                   help="quantise to int8 with NNCF and write it beside the weights (the CPU worker's first choice)")
    s.add_argument("--data", help="with --int8: a YOLO data.yaml whose train split calibrates the quantiser")
    s.add_argument("--fraction", type=float, default=0.4, help="with --int8: share of the train split to calibrate on")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("export-training", help="write the corrected catalogue as a Fashionpedia-format dataset")
    s.add_argument("--out", required=True)
    s.add_argument("--user", help="only this user's catalogue")
    s.add_argument("--corrected-only", action="store_true", help="only photos with at least one corrected item")
    s.add_argument("--val-fraction", type=float, default=0.1)
    s.set_defaults(fn=cmd_export_training)

    s = sub.add_parser("ship", help="write half-precision weights and their model card")
    s.add_argument("best", help="best.pt from a training run (with --card-only: the shipped weights)")
    s.add_argument("--out", default=str(DEFAULT_MODEL))
    s.add_argument("--card-only", action="store_true",
                   help="only record --serve-conf/--serve-imgsz/--quality-json on the card of weights already shipped")
    s.add_argument("--preset")
    s.add_argument("--data-desc", help="what it was trained on")
    s.add_argument("--hardware")
    s.add_argument("--eval-json", help="report from `wardrobe evaluate --json`")
    s.add_argument("--results-csv", help="the run's results.csv")
    s.add_argument("--serve-imgsz", type=int, help="the input size the workers run it at (default: the training size)")
    s.add_argument("--previous-card", help="the card of the weights this run continued from (epochs add up)")
    s.add_argument("--serve-conf", type=float, help="the item threshold the workers use (chosen from make quality)")
    s.add_argument("--quality-json", help="make quality's report at the served settings, for the card")
    s.set_defaults(fn=cmd_ship)
    return p


def main(argv: list[str] | None = None) -> int:
    from training.runtime import ultralytics_offline

    ultralytics_offline()  # every command (train, evaluate, predict, worker ...): no installs or network from Ultralytics
    args = build_parser().parse_args(argv)
    return args.fn(args) or 0


if __name__ == "__main__":
    sys.exit(main())
