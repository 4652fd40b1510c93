"""`make bench`: inference and pipeline speed, and mask accuracy, in one run on one machine.

Measures, on the same photos and in the same process:
  1. bare YOLO.predict with PyTorch fp32 (the baseline),
  2. bare YOLO.predict with the worker's chosen backend (OpenVINO on the CPU),
  3. the whole pipeline end to end with the worker's settings: the zip in storage -> ingest
     (decode, orient, downscale, store photos, rows) -> segment (inference, cut-outs, colours,
     hashes, encoding, storage, item rows),
  4. mask mAP50 on the val labels for each backend,
and prints the ratios (backend / baseline, pipeline / bare backend, post-processing share),
writing every figure to JSON as well.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import time
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from bench.provenance import stamp

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets" / "ccp-fashionpedia"


class StageSeconds:
    """The benchmark's observer of a segment call's stages (worker.segment.Stages): seconds by stage,
    added up into `seconds` (a dict the caller may pass in and read back), in place of the metrics."""

    def __init__(self, seconds: dict | None = None):
        self.seconds = seconds if seconds is not None else {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


def machine() -> dict:
    from core.cpu import cpu_flags, cpu_model, has_amx

    cpu, flags = cpu_model(), cpu_flags()
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    ov_precision = None
    try:
        import openvino as ov

        ov_precision = str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    except Exception:  # noqa: BLE001
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "amx_bf16": has_amx(flags), "avx512_bf16": "avx512_bf16" in flags,
            "openvino_cpu_precision": ov_precision, "gpu": gpu, "python": platform.python_version()}


def load_photos(folder: Path, n: int) -> tuple[list[Path], list[np.ndarray]]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})[:n]
    return paths, [np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB")) for p in paths]


def best_of(repeats: int, fn, clock=time.perf_counter):
    """The fastest of `repeats` runs of fn(): (seconds by `clock`, what the last run returned)."""
    best, result = None, None
    for _ in range(repeats):
        t0 = clock()
        result = fn()
        dt = clock() - t0
        best = dt if best is None else min(best, dt)
    return best, result


def time_predict(yolo, photos: list[np.ndarray], imgsz: int, batch: int, device: str, half: bool, repeats: int) -> dict:
    bgr = [np.ascontiguousarray(p[..., ::-1]) for p in photos]
    yolo.predict(bgr[:batch], imgsz=imgsz, device=device, half=half, verbose=False, batch=batch)  # warm-up

    def run():
        for i in range(0, len(bgr), batch):
            yolo.predict(bgr[i:i + batch], imgsz=imgsz, device=device, half=half, verbose=False, batch=batch)

    best, _ = best_of(repeats, run)
    return {"seconds": round(best, 3), "ms_per_photo": round(1000 * best / len(bgr), 2), "photos_per_s": round(len(bgr) / best, 2)}


def time_candidates(seg, photos: list[np.ndarray], repeats: int) -> dict:
    """The lean path's bare backend: the model and its decoding (NMS, masks), a batch at a time."""
    seg.candidates(photos[: seg.batch])  # warm-up

    def run():
        for i in range(0, len(photos), seg.batch):
            seg.candidates(photos[i:i + seg.batch])

    best, _ = best_of(repeats, run)
    return {"seconds": round(best, 3), "ms_per_photo": round(1000 * best / len(photos), 2),
            "photos_per_s": round(len(photos) / best, 2)}


def _bare_child(settings, paths: list[str], ready, go, out) -> None:
    """One worker-like process: the worker's own segmenter (path, backend, threads, batch), the model
    and its decoding only (`candidates`: NMS and masks, no outlines, no post-processing)."""
    from segmentation.serving import load_segmenter

    seg = load_segmenter(settings)
    rgb = [np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB")) for p in paths]
    seg.candidates(rgb[: seg.batch])
    ready.release()
    go.wait()
    t0 = time.time()
    for i in range(0, len(rgb), seg.batch):
        seg.candidates(rgb[i:i + seg.batch])
    out.put((t0, time.time()))


def time_bare_layout(settings, paths: list[Path], procs: int, threads: int) -> dict:
    """The bare backend in the workers' layout: `procs` processes of `threads` thread(s), each
    timing predict on its share of the photos, all started together. The fair yardstick for the
    pipeline through real workers: same processes, same threads, no pipeline around the model."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    child_settings = replace(settings, worker_concurrency=procs, threads=threads)
    shares = [[str(p) for p in paths[i::procs]] for i in range(procs)]
    kids = [ctx.Process(target=_bare_child, args=(child_settings, share, ready, go, out)) for share in shares]
    for k in kids:
        k.start()
    for _ in kids:
        ready.acquire()
    go.set()
    spans = [out.get(timeout=1800) for _ in kids]
    for k in kids:
        k.join()
    dt = max(e for _, e in spans) - min(s for s, _ in spans)
    return {"processes": procs, "threads_each": threads, "seconds": round(dt, 3),
            "ms_per_photo": round(1000 * dt / len(paths), 2), "photos_per_s": round(len(paths) / dt, 2)}


def time_cutout_encoders(photos: list[np.ndarray], seg, n: int = 40, repeats: int = 3) -> dict:
    """The cut-outs of the first `n` photos (mask as alpha over the crop), encoded by each candidate:
    ms of one thread's CPU and KiB per cut-out. The worker's choice is `webp` (lossy colour,
    lossless alpha, method 0)."""
    import io

    import cv2

    from worker.cutouts import make_cutout

    cuts = [c.rgba for p in photos[:n] for d in seg.segment([p])[0] if (c := make_cutout(p, d)) is not None]

    def pil(fmt: str, **kw):
        def enc(rgba):
            buf = io.BytesIO()
            Image.fromarray(rgba, "RGBA").save(buf, fmt, **kw)
            return buf.getvalue()
        return enc

    encoders = {
        "webp q80 method 0 (the worker's)": pil("WEBP", quality=80, method=0),
        "webp q80 method 4 (libwebp's default)": pil("WEBP", quality=80, method=4),
        "webp lossless, fastest": pil("WEBP", lossless=True, quality=0, method=0),
        "png level 1": pil("PNG", compress_level=1),
        "opencv webp q80": lambda rgba: cv2.imencode(".webp", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA),
                                                     [cv2.IMWRITE_WEBP_QUALITY, 80])[1].tobytes(),
    }
    out = {"cutouts": len(cuts), "mean_pixels": round(float(np.mean([c.shape[0] * c.shape[1] for c in cuts])))}
    for name, enc in encoders.items():
        best, size = best_of(repeats, lambda enc=enc: sum(len(enc(c)) for c in cuts), time.thread_time)
        out[name] = {"ms_per_cutout": round(1000 * best / len(cuts), 3), "kib_per_cutout": round(size / 1024 / len(cuts), 1)}
    return out


def time_cutout_cap(photos: list[np.ndarray], seg, work_side: int, max_side: int, n: int = 10, repeats: int = 3) -> dict:
    """Cut-outs (mask, crop, encode) of working-size photos, at full size and under the worker's
    `max_side`: ms of one thread's CPU and KiB per photo. The val photos are small (550 px wide),
    so the first `n` are upscaled to the working size as a stand-in for phone photos."""
    import cv2

    from worker.cutouts import make_cutout

    big = []
    for p in photos[:n]:
        s = work_side / max(p.shape[:2])
        big.append(cv2.resize(p, (round(p.shape[1] * s), round(p.shape[0] * s)), interpolation=cv2.INTER_CUBIC))
    dets = [seg.segment([p])[0] for p in big]
    out = {"photos": len(big), "photo_size": list(big[0].shape[1::-1]) if big else None, "max_side": max_side}
    for name, side in (("full_size", 0), ("capped", max_side)):
        best, size = best_of(repeats, lambda side=side: sum(
            len(c.data) for p, ds in zip(big, dets) for d in ds if (c := make_cutout(p, d, max_side=side))), time.thread_time)
        out[name] = {"ms_per_photo": round(1000 * best / len(big), 2), "kib_per_photo": round(size / 1024 / len(big), 1)}
    return out


def time_outline(photos: list[np.ndarray], seg, repeats: int = 3) -> dict:
    """CPU per photo from the model's raw detections to items (merging, masks to polygons): with
    the masks traced as the model gives them (the old way) and with the guided-filter refinement,
    on the same detections, in this thread (thread time: the cost, whatever else runs)."""
    from dataclasses import replace as _replace

    from segmentation.segmenter import outline

    cands = [(p, c) for p, c in zip(photos, seg.candidates(photos)) if c is not None]
    out = {}
    for name, radius in (("traced_as_given", 0), ("refined", seg.settings.mask_refine_radius)):
        s = _replace(seg.settings, mask_refine_radius=radius)
        secs, _ = best_of(repeats, lambda: [outline(p, c, s) for p, c in cands], clock=time.thread_time)
        out[f"{name}_ms_per_photo"] = round(1000 * secs / len(photos), 2)
    out["refinement_ms_per_photo"] = round(out["refined_ms_per_photo"] - out["traced_as_given_ms_per_photo"], 2)
    return out


# The other OpenVINO candidate, by the backend the worker chose, and its key in the report.
OTHER_OPENVINO = {"openvino-int8": ("openvino", "openvino_export_bare"), "openvino": ("openvino-int8", "openvino_int8_bare")}


def time_other_openvino(settings, photos: list[np.ndarray], backend: str, repeats: int) -> dict | None:
    """Bare predict with `backend` (the plain OpenVINO export of the weights, fp32 weights run in
    bf16 where the CPU has it; or the shipped int8 model), loaded as a worker would with
    WARDROBE_BACKEND set to it. None when there is no int8 model for these weights."""
    from segmentation.segmenter import YoloSegmenter

    try:
        other = YoloSegmenter(replace(settings, backend=backend))
    except FileNotFoundError:
        return None
    return time_predict(other.model, photos, other.imgsz, other.batch, other.device, half=False, repeats=repeats)


@contextmanager
def torch_threads(n: int):
    import torch
    import ultralytics.utils.torch_utils as tu

    before = torch.get_num_threads(), tu.NUM_THREADS
    torch.set_num_threads(n)
    tu.NUM_THREADS = n
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        tu.NUM_THREADS = before[1]


def mask_map50(weights: str, data_yaml: Path, imgsz: int, device: str) -> dict:
    from ultralytics import YOLO

    m = YOLO(weights, task="segment").val(data=str(data_yaml), imgsz=imgsz, batch=8, device=device, plots=False,
                                          verbose=False, half=device.startswith("cuda"))
    return {"map50_m": round(float(m.seg.map50), 4), "map50_95_m": round(float(m.seg.map), 4)}


def _process_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def stage_job(rt, paths: list[Path], zpath: Path, user_name: str) -> uuid.UUID:
    """A new user, the photos zipped into storage, and a queued job for them: what an upload leaves."""
    from db.models import Job
    from db.session import session_scope
    from core.storage import keys
    from db.users import create_user

    with session_scope() as s:
        user, _ = create_user(s, user_name)
        uid = user.id
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as zf:
        for p in paths:
            zf.write(p, p.name)
    job_id = uuid.uuid4()
    with open(zpath, "rb") as f:
        rt.storage.put_file(keys.upload(uid, job_id), f)
    with session_scope() as s:
        s.add(Job(id=job_id, user_id=uid, upload_key=keys.upload(uid, job_id), upload_sha256="0" * 64))
    return job_id


def run_pipeline(settings, photos_dir: Path, paths: list[Path], segmenter) -> dict:
    """The real task bodies on an embedded store (SQLite + a folder) under a temp dir."""
    from sqlalchemy import func, select

    from services.bootup import bootup
    from db.models import Item, Job
    from db.session import session_scope
    from worker import ingest, segment

    rt = bootup(settings, force=True)
    job_id = stage_job(rt, paths, Path(settings.data_dir) / "bench.zip", f"bench-{uuid.uuid4().hex[:6]}")
    chunks: list[list] = []
    cpu0 = _process_cpu()
    t0 = time.perf_counter()
    ingest.run(job_id, rt, send_segment=lambda j, ids: chunks.append(list(ids)))
    t_ingest = time.perf_counter() - t0
    timings: dict = {}
    t1 = time.perf_counter()
    for ids in chunks:
        segment.run(job_id, ids, rt, segmenter, stages=StageSeconds(timings))
    t_segment = time.perf_counter() - t1
    total = t_ingest + t_segment
    cpu = _process_cpu() - cpu0
    with session_scope() as s:
        job = s.get(Job, job_id)
        n_items = s.scalar(select(func.count()).select_from(Item).where(Item.job_id == job_id))
        status = job.status
    n = len(paths)
    return {
        "status": status, "photos": n, "items": n_items,
        "seconds": round(total, 3), "photos_per_s": round(n / total, 2), "ms_per_photo": round(1000 * total / n, 2),
        "ingest_ms_per_photo": round(1000 * t_ingest / n, 2),
        "segment_ms_per_photo": round(1000 * t_segment / n, 2),
        "load_ms_per_photo": round(1000 * timings.get("load", 0) / n, 2),
        "infer_ms_per_photo": round(1000 * timings.get("infer", 0) / n, 2),
        "post_ms_per_photo": round(1000 * timings.get("post", 0) / n, 2),
        "cpu_ms_per_photo": round(1000 * cpu / n, 2),
        "post_cpu_ms_per_photo": round(1000 * timings.get("post_cpu", 0) / n, 2),
        "post_breakdown_ms_per_photo": {k: round(1000 * timings.get(k, 0) / n, 2) for k in ("cutout", "features", "commit", "store")},
        # of all the CPU time the process spent on the photos (model threads included), the share
        # the post-processing thread used: wall-clock time on a shared core would count waiting
        "post_share": round(timings.get("post_cpu", 0) / cpu, 4),
    }


POLL_S = 0.25  # how often the workers' run looks at its job (the timing comes from the job's finished_at)


def run_worker_pipeline(paths: list[Path], concurrency: int, tmp: Path, threads: int = 0, tag: str = "",
                        imgsz: int = 0) -> dict:
    """The same zip through real worker processes in the default layout (N processes, one core each),
    on PostgreSQL and Redis, from the moment the ingest task is sent to the job's end."""
    with bench_database() as db_url:
        return _run_workers(paths, concurrency, tmp, threads, tag, imgsz, db_url)


def _run_workers(paths: list[Path], concurrency: int, tmp: Path, threads: int, tag: str, imgsz: int, db_url: str) -> dict:
    import signal
    import subprocess
    import sys

    from core.config import Settings
    from core.queue import enqueue_ingest, make_celery

    name = f"workers-{concurrency}x{threads}{tag}"
    data = tmp / name
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    env.update(WARDROBE_DATABASE_URL=db_url, WARDROBE_BROKER_URL=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/10"),
               WARDROBE_DATA_DIR=str(data), WARDROBE_STORAGE_URL=f"file://{data}/objects", WARDROBE_LOG_LEVEL="INFO",
               WARDROBE_WORKER_CONCURRENCY=str(concurrency), WARDROBE_THREADS=str(threads),
               WARDROBE_IMGSZ=str(imgsz))  # the run's input size: the workers see none of this process's WARDROBE_*
    # reuse the export made for the in-process run
    (data / "model-cache").mkdir(parents=True, exist_ok=True)
    for d in (tmp / "model-cache").glob("*_openvino_model"):
        os.symlink(d, data / "model-cache" / d.name)
    exe = [sys.executable, "-m", "cli.main"]
    log = tmp / f"{name}.log"
    worker = None
    try:
        import redis

        redis.Redis.from_url(env["WARDROBE_BROKER_URL"]).flushdb()
        subprocess.run(exe + ["migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
        worker = subprocess.Popen(exe + ["worker", "--concurrency", str(concurrency)], env=env, cwd=ROOT,
                                  stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        t_wait = time.monotonic()
        while log.read_text(errors="replace").count("model ready") < concurrency:
            if worker.poll() is not None or time.monotonic() - t_wait > 300:
                raise RuntimeError("worker did not start:\n" + log.read_text(errors="replace")[-2000:])
            time.sleep(0.2)
        os.environ.update({k: v for k, v in env.items() if k.startswith("WARDROBE_")})
        settings = Settings.from_env()
        from services.bootup import bootup
        from db.models import Job
        from db.session import session_scope

        rt = bootup(settings, force=True)
        job_id = stage_job(rt, paths, tmp / f"{name}.zip", f"bench-{name}")
        t0 = time.time()  # the clock the workers stamp finished_at with (db.base.utcnow), on this machine
        enqueue_ingest(make_celery(settings), job_id)
        # The end is the job's own finished_at, so the poll can be slow: polling every 20 ms cost this
        # process and PostgreSQL several ms of CPU a photo, taken from the workers it times.
        while True:
            with session_scope() as s:
                job = s.get(Job, job_id)
            if job.status not in ("queued", "running"):
                break
            time.sleep(POLL_S)
        dt = (job.finished_at.timestamp() if job.finished_at else time.time()) - t0
        n = len(paths)
        # what the workers said they loaded ("model ready: ... imgsz N"), not what was asked of them
        sizes = {int(m) for m in re.findall(r"model ready: .*?imgsz (\d+)", log.read_text(errors="replace"))}
        return {"status": job.status, "processes": concurrency, "threads_each": threads, "imgsz": sorted(sizes),
                "photos": n, "items": job.items_found,
                "seconds": round(dt, 3), "photos_per_s": round(n / dt, 2), "ms_per_photo": round(1000 * dt / n, 2)}
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)


@contextmanager
def bench_database():
    """A fresh PostgreSQL database (services started if they are not running), dropped after."""
    import subprocess

    from bench.scratch import scratch_database

    subprocess.run(["bash", str(ROOT / "scripts" / "services.sh")], check=True, stdout=subprocess.DEVNULL)
    admin_url = os.environ.get("WARDROBE_BENCH_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    with scratch_database(admin_url, "wardrobe_bench") as url:
        try:
            yield url
        finally:
            from db import session as dbs

            if dbs._engine is not None:
                dbs._engine.dispose()  # the benchmark's own connections, before the database goes


def run_pipeline_on_services(settings, photos_dir: Path, paths: list[Path], segmenter) -> dict:
    """Row 3 on the stores a deployment has: PostgreSQL, and S3 over HTTP (moto's server, which
    shares this machine's cores: a real S3 endpoint costs the worker's machine no CPU)."""
    from bench.scratch import scratch_s3

    with bench_database() as db_url, scratch_s3() as endpoint:
        on_services = replace(settings, database_url=db_url, storage_url=f"s3://wardrobe-bench-{uuid.uuid4().hex[:6]}",
                              s3_endpoint_url=endpoint, s3_create_bucket=True)
        return run_pipeline(on_services, photos_dir, paths, segmenter)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", default=str(SHARED / "images") if SHARED.exists() else str(ROOT / "examples" / "photos"))
    ap.add_argument("--val-json", default=str(SHARED / "instances_val.json") if SHARED.exists() else None,
                    help="Fashionpedia-format labels for the mAP check (default: the shared val split)")
    ap.add_argument("-n", type=int, default=100, help="photos to time")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "pipeline.json"))
    ap.add_argument("--no-workers", action="store_true", help="skip the run through real worker processes")
    ap.add_argument("--no-services", action="store_true",
                    help="skip the in-process run on PostgreSQL and moto's S3 server")
    ap.add_argument("--large", type=int, default=900,
                    help="also send one upload of this many photos of the folder through the workers (0: skip)")
    args = ap.parse_args(argv)

    from core.config import Settings
    from segmentation.runtime import prepare_ultralytics

    base = Settings.from_env()
    threads = base.threads or os.cpu_count() or 1
    prepare_ultralytics(threads=threads)
    from ultralytics import YOLO

    from segmentation.segmenter import YoloSegmenter
    from segmentation.serving import load_segmenter

    tmp = Path(tempfile.mkdtemp(prefix="wardrobe-bench-"))
    os.environ.pop("WARDROBE_DATABASE_URL", None)
    settings = replace(base, data_dir=str(tmp), database_url="", broker_url="", storage_url="", auto_migrate=True,
                       worker_concurrency=1, threads=threads, log_level="WARNING")
    photos_dir = Path(args.photos)
    val_names = None
    if args.val_json:
        val_names = [im["file_name"] for im in json.load(open(args.val_json))["images"]]
        paths = [photos_dir / n for n in val_names][: args.n]
        photos = [np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB")) for p in paths]
    else:
        paths, photos = load_photos(photos_dir, args.n)
    weights = settings.model
    seg = load_segmenter(settings)  # the worker's own choice of path, backend, threads and export cache
    imgsz = seg.imgsz
    device = seg.device
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "weights": Path(weights).name, "model_version": seg.version, "imgsz": imgsz, "photos": len(paths),
              "batch": seg.batch, "threads": threads, "backend": seg.backend}
    print(f"{len(paths)} photos from {photos_dir}, imgsz {imgsz}, batch {seg.batch}, {threads} thread(s), "
          f"{report['machine']['cpu']}")

    baseline = YOLO(weights, task="segment")
    with torch_threads(threads):  # the baseline gets every core (the segmenter may have lent them to OpenVINO)
        report["baseline_pytorch_fp32"] = time_predict(baseline, photos, imgsz, seg.batch, device,
                                                       half=False, repeats=args.repeats)
    report["backend_bare"] = (time_predict(seg.model, photos, imgsz, seg.batch, device, half=seg.half, repeats=args.repeats)
                              if isinstance(seg, YoloSegmenter) else time_candidates(seg, photos, args.repeats))
    if seg.backend in OTHER_OPENVINO:
        # the other OpenVINO candidate, timed the same way: the default has to beat it
        other, key = OTHER_OPENVINO[seg.backend]
        timed = time_other_openvino(settings, photos, other, args.repeats)
        if timed is not None:
            report[key] = timed
    report["pipeline"] = run_pipeline(settings, photos_dir, paths, seg)
    if not args.no_services:
        report["pipeline_postgres_s3"] = run_pipeline_on_services(settings, photos_dir, paths, seg)
    report["outline"] = time_outline(photos, seg)
    report["cutout_encoders"] = time_cutout_encoders(photos, seg)
    report["cutout_cap"] = time_cutout_cap(photos, seg, settings.work_max_side, settings.cutout_max_side)
    if not args.no_workers:
        cores = os.cpu_count() or 1
        # the default layout (a process per core, one thread each), and one process using every core
        procs = base.worker_concurrency or cores
        each = base.threads or max(1, cores // procs)
        report["backend_bare_worker_layout"] = time_bare_layout(settings, paths, procs, each)
        report["pipeline_workers"] = run_worker_pipeline(paths, procs, tmp, threads=each, imgsz=imgsz)
        if cores > 1:
            report["pipeline_one_worker"] = run_worker_pipeline(paths, 1, tmp, threads=cores, imgsz=imgsz)
        folder = sorted(p for p in photos_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
        if args.large and len(folder) > len(paths):
            # a user with many photos: one upload, a catalogue that grows as it runs
            report["pipeline_workers_large"] = run_worker_pipeline(folder[: args.large], procs, tmp, threads=each, tag="-large",
                                                                     imgsz=imgsz)

    if args.val_json:
        from training.fashionpedia import import_dataset

        ds = tmp / "val-yolo"
        import_dataset(Path(args.val_json), Path(args.val_json), photos_dir, ds)
        report["accuracy"] = {"pytorch_fp32": mask_map50(weights, ds / "data.yaml", imgsz, device)}
        if device == "cpu":
            from segmentation.backends import openvino_available, openvino_model, shipped_int8_model
            from segmentation.segmenter import weights_digest

            digest = weights_digest(weights)
            if openvino_available():
                ov_dir = openvino_model(Path(weights), imgsz, settings.data_path / "model-cache", digest)
                report["accuracy"]["openvino"] = mask_map50(str(ov_dir), ds / "data.yaml", imgsz, device)
            int8 = shipped_int8_model(Path(weights), imgsz, digest)
            if int8 is not None:
                report["accuracy"]["openvino-int8"] = mask_map50(str(int8), ds / "data.yaml", imgsz, device)

    b, k, p = report["baseline_pytorch_fp32"], report["backend_bare"], report["pipeline"]
    report["ratios"] = {
        "backend_speedup_vs_pytorch_fp32": round(b["ms_per_photo"] / k["ms_per_photo"], 2),
        **{f"{key.removesuffix('_bare')}_speedup_vs_pytorch_fp32": round(b["ms_per_photo"] / report[key]["ms_per_photo"], 2)
           for key in ("openvino_export_bare", "openvino_int8_bare") if key in report},
        "pipeline_throughput_vs_bare_backend": round(p["photos_per_s"] / k["photos_per_s"], 3),
        **({"pipeline_postgres_s3_throughput_vs_bare_backend": round(
                report["pipeline_postgres_s3"]["photos_per_s"] / k["photos_per_s"], 3)}
           if "pipeline_postgres_s3" in report else {}),
        **({"worker_pipeline_throughput_vs_bare_backend_same_layout": round(
                report["pipeline_workers"]["photos_per_s"] / report["backend_bare_worker_layout"]["photos_per_s"], 3),
            "worker_pipeline_throughput_vs_bare_backend": round(report["pipeline_workers"]["photos_per_s"] / k["photos_per_s"], 3)}
           if "pipeline_workers" in report else {}),
        **({"large_upload_worker_pipeline_throughput_vs_bare_backend_same_layout": round(
                report["pipeline_workers_large"]["photos_per_s"] / report["backend_bare_worker_layout"]["photos_per_s"], 3)}
           if "pipeline_workers_large" in report else {}),
        **({"one_worker_pipeline_throughput_vs_bare_backend": round(report["pipeline_one_worker"]["photos_per_s"] / k["photos_per_s"], 3)}
           if "pipeline_one_worker" in report else {}),
        "post_processing_share_of_photo_time": p["post_share"],
    }
    ol = report["outline"]
    if p["post_cpu_ms_per_photo"]:
        # the edge refinement's own cost (on the model's thread, before post-processing) against
        # the post-processing CPU per photo measured in the same run
        report["ratios"]["mask_refinement_cost_vs_post_processing_cpu"] = round(
            ol["refinement_ms_per_photo"] / p["post_cpu_ms_per_photo"], 3)
    enc = report["cutout_encoders"]
    if enc["cutouts"] and p["photos"]:
        # the floor under the post-processing share: the worker's encoder alone, timed on one idle
        # thread (cheaper than inside the pipeline), for as many cut-outs as a photo has
        per_photo = enc["webp q80 method 0 (the worker's)"]["ms_per_cutout"] * p["items"] / p["photos"]
        report["ratios"]["cutout_encoding_alone_share_of_photo_time"] = round(per_photo / p["cpu_ms_per_photo"], 4)
    if seg.backend in report.get("accuracy", {}):
        a = report["accuracy"]
        report["ratios"]["mask_map50_delta_backend_minus_pytorch"] = round(a[seg.backend]["map50_m"] - a["pytorch_fp32"]["map50_m"], 4)

    print(f"\n{'':34} {'ms/photo':>9} {'photos/s':>9}")
    print(f"{'1. bare PyTorch fp32 (baseline)':34} {b['ms_per_photo']:9.1f} {b['photos_per_s']:9.2f}")
    print(f"{'2. bare ' + seg.backend:34} {k['ms_per_photo']:9.1f} {k['photos_per_s']:9.2f}")
    if "openvino_export_bare" in report:
        o = report["openvino_export_bare"]
        print(f"{'2a. bare openvino (plain export)':34} {o['ms_per_photo']:9.1f} {o['photos_per_s']:9.2f}"
              f"   (the candidate the default beat; {report['machine']['openvino_cpu_precision']})")
    if "openvino_int8_bare" in report:
        o = report["openvino_int8_bare"]
        print(f"{'2a. bare openvino-int8':34} {o['ms_per_photo']:9.1f} {o['photos_per_s']:9.2f}"
              f"   (the candidate the default beat: this CPU has AMX)")
    if "backend_bare_worker_layout" in report:
        w = report["backend_bare_worker_layout"]
        name = f"2b. bare {seg.backend}, {w['processes']} x {w['threads_each']} thread(s)"
        print(f"{name:34} {w['ms_per_photo']:9.1f} {w['photos_per_s']:9.2f}   (the workers' layout)")
    print(f"{'3. pipeline end to end':34} {p['ms_per_photo']:9.1f} {p['photos_per_s']:9.2f}")
    print(f"   of which ingest {p['ingest_ms_per_photo']} ms, waiting for photos {p['load_ms_per_photo']} ms, "
          f"inference {p['infer_ms_per_photo']} ms; post-processing {p['post_ms_per_photo']} ms per photo on its own "
          f"thread ({p['items']} items, job {p['status']})")
    print(f"   CPU per photo: {p['cpu_ms_per_photo']} ms in all, post-processing {p['post_cpu_ms_per_photo']} ms: "
          + ", ".join(f"{k} {v} ms" for k, v in p["post_breakdown_ms_per_photo"].items())
          + " (cutout: mask + crop + encode; features: colours + hash; commit: rows; store: waiting on uploads, wall)")
    print(f"   detections to items (merging, outlines): {ol['traced_as_given_ms_per_photo']} ms traced as the model "
          f"gives them, {ol['refined_ms_per_photo']} ms refined (+{ol['refinement_ms_per_photo']} ms a photo)")
    if "pipeline_postgres_s3" in report:
        q = report["pipeline_postgres_s3"]
        print(f"{'3s. pipeline, PostgreSQL + S3 (moto)':34} {q['ms_per_photo']:9.1f} {q['photos_per_s']:9.2f}"
              f"   (ingest {q['ingest_ms_per_photo']} ms, waiting on cut-out uploads {q['post_breakdown_ms_per_photo']['store']} ms"
              f" a photo; moto's server shares the cores)")
    enc = report["cutout_encoders"]
    print(f"   cut-out encoders on {enc['cutouts']} cut-outs of {enc['mean_pixels']} pixels on average (ms of CPU, KiB, each): "
          + "; ".join(f"{k} {v['ms_per_cutout']} ms {v['kib_per_cutout']} KiB" for k, v in enc.items() if isinstance(v, dict)))
    cap = report["cutout_cap"]
    print(f"   cut-outs of {cap['photos']} val photos upscaled to {cap['photo_size']}: full size {cap['full_size']['ms_per_photo']} ms "
          f"and {cap['full_size']['kib_per_photo']} KiB a photo; at most {cap['max_side']} px (the worker's) "
          f"{cap['capped']['ms_per_photo']} ms and {cap['capped']['kib_per_photo']} KiB")
    for key, label in (("pipeline_workers", "3b"), ("pipeline_one_worker", "3c"), ("pipeline_workers_large", "3d")):
        if key in report:
            w = report[key]
            name = f"{label}. workers {w['processes']} x {w['threads_each']} thread(s)"
            print(f"{name:34} {w['ms_per_photo']:9.1f} {w['photos_per_s']:9.2f}"
                  f"   (real processes, PostgreSQL + Redis, {w['photos']} photos, job {w['status']}, {w['items']} items)")
    if "accuracy" in report:
        for name, a in report["accuracy"].items():
            print(f"4. mask mAP50 {name:14} {a['map50_m']:.4f}  (mAP50-95 {a['map50_95_m']:.4f})")
    print()
    for key, v in report["ratios"].items():
        print(f"{key:45} {v}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(stamp(report, "bench.pipeline"), indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
