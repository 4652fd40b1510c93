"""One training run on the lent GPU machine: what `make gpu-train` (scripts/gpu_train.sh) runs there.

Trains on from the shipped weights with the `shared-gpu` preset through `training.train.train()`
(the code path `wardrobe train` uses), evaluates the result on val with `training/evaluate.py`,
and writes to $OUT (each file must be at most 16 MiB to come back; at most 8 files):

- `wardrobe-gpu-fp16.pt.part-00`, `-01`, ...: the best weights, fp16, no optimizer state, in
  parts of 15 MiB (`python -m training.gpu_kit join OUTDIR`, or `cat` in name order, joins them);
- `results.csv`: Ultralytics' per-epoch log;
- `val-report.json`: `wardrobe evaluate`'s report on the val split;
- `timings.json`: each phase's seconds, the run's settings, the machine, the weights' sha256 and,
  when time allows, bare `YOLO.predict` speed in fp16 at batch 1 and 32;
- `gpu-train.log`: the output (written by the shell script).

The device runs one command for at most 600 s (the machine's start not counted), so the run is
sized to end inside GPU_CALL_S (570 s): the training budget is what is left of it after unpacking,
less GPU_RESERVE_S (90 s) for Ultralytics' setup and final validation, the conversion, the
evaluation and the speed timing, and at most the preset's 0.15 h (about 7.8 min in practice).
The speed timing runs only while at least 25 s of GPU_CALL_S are left.

Every setting can be overridden from the environment, so the same code runs in a tiny form on a
CPU: GPU_TRAIN_HOURS (Ultralytics `time=`, instead of the computed budget), GPU_EPOCHS (a fixed
count instead), GPU_IMGSZ, GPU_BATCH, GPU_FRACTION (of the training photos), GPU_WORKERS,
GPU_THREADS, GPU_EVAL_BATCH, GPU_CALL_S and GPU_RESERVE_S (seconds since the script started,
GPU_T0), GPU_SPEED_S (seconds of timing per batch size), GPU_WEIGHTS, GPU_KIT, GPU_WORK,
GPU_EXTRA (JSON of further Ultralytics arguments).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from training.gpu_kit import DATASET_ARCHIVE, KIT, ROOT, sha256, split_file, unpack_dataset

PRESET = "shared-gpu"
WEIGHTS_NAME = "wardrobe-gpu-fp16.pt"


def _env(name: str, cast=str, default=None):
    v = os.environ.get(name)
    return cast(v) if v not in (None, "") else default


def read_results_csv_without_polars() -> bool:
    """Where polars is missing, read results.csv without it in the trainer's `read_results_csv`.

    Ultralytics 8.4.190 imports polars in exactly one place on the training path that `plots=False`
    does not switch off: `BaseTrainer.read_results_csv`, called by `save_model` every epoch to
    store the per-epoch log inside the checkpoint (`train_results`). Its `import polars` sits
    outside its try, so without polars the first save fails. The other imports (plot_results,
    plot_labels, Results.to_df/to_csv, benchmarks, the W&B callback) are reached only with plots
    on or from APIs this run does not call. The replacement reads the same CSV into the same
    {column: [values]} shape (ints where a column is all integers, else floats), with the standard
    library. Returns True when the method was replaced.
    """
    try:
        import polars  # noqa: F401

        return False
    except ImportError:
        pass
    from ultralytics.engine.trainer import BaseTrainer

    def read_results_csv(self):
        try:
            return read_csv_columns(self.csv)
        except Exception:  # noqa: BLE001 - as Ultralytics' own: an unreadable log is stored as {}
            return {}

    BaseTrainer.read_results_csv = read_results_csv
    return True


def read_csv_columns(path: Path) -> dict[str, list]:
    """A CSV as {column: [values]}, as polars' read_csv(...).to_dict(as_series=False) gives it for numbers."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    cols: dict[str, list] = {name: [r[i] for r in rows[1:]] for i, name in enumerate(rows[0])}
    for name, values in cols.items():
        for cast in (int, float):
            try:
                cols[name] = [cast(v) for v in values]
                break
            except ValueError:
                pass
    return cols


class Run:
    def __init__(self, out: Path):
        self.out = out
        self.t0 = _env("GPU_T0", float, time.time())
        self.info: dict = {"phases_s": {}}
        if _env("GPU_INSTALL_S", float) is not None:
            self.info["phases_s"]["install"] = round(_env("GPU_INSTALL_S", float), 2)

    def elapsed(self) -> float:
        return time.time() - self.t0

    def phase(self, name: str, started: float) -> None:
        self.info["phases_s"][name] = round(time.time() - started, 2)
        self.save()

    def save(self) -> None:
        self.info["elapsed_s"] = round(self.elapsed(), 2)
        (self.out / "timings.json").write_text(json.dumps(self.info, indent=2) + "\n")


def machine() -> dict:
    import torch

    d = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
         "cuda": torch.version.cuda, "gpu": None}
    if torch.cuda.is_available():
        d["gpu"] = torch.cuda.get_device_name(0)
        d["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    try:
        import ultralytics

        d["ultralytics"] = ultralytics.__version__
    except ImportError:
        pass
    return d


def time_predict(weights: Path, photos: list[Path], imgsz: int, device: str, batches=(1, 32),
                 seconds: float = 5.0, deadline: float | None = None) -> dict:
    """Photos per second of bare `YOLO.predict` (fp16 on a GPU) on decoded photos, at each batch size.

    Photos are decoded once beforehand, so the figure covers letterbox, the network, NMS and masks.
    Each batch size gets one warm-up call, then whole passes over the photos until `seconds` pass.
    """
    import cv2
    import torch
    from ultralytics import YOLO

    cuda = device != "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    ims = [cv2.imread(str(p)) for p in photos]
    model = YOLO(str(weights), task="segment")
    kw = dict(imgsz=imgsz, quantize=16 if cuda else None, device=device, verbose=False, conf=0.25)
    res = {}
    for bs in batches:
        if deadline is not None and time.time() > deadline:
            res[f"batch_{bs}"] = {"skipped": "out of time"}
            continue
        chunks = [ims[i:i + bs] for i in range(0, len(ims) - bs + 1, bs)]
        if not chunks:
            continue
        for _ in range(3 if cuda else 1):
            model.predict(chunks[0], batch=bs, **kw)
        sync()
        n, passes, t = 0, 0, time.perf_counter()
        while True:
            for c in chunks:
                out = model.predict(c, batch=bs, **kw)
                assert len(out) == len(c)
                n += len(c)
            passes += 1
            sync()
            dt = time.perf_counter() - t
            if dt >= seconds or (deadline is not None and time.time() > deadline):
                break
        speed = out[-1].speed  # ms per photo in the last call: preprocess, inference, postprocess
        res[f"batch_{bs}"] = {"photos": n, "passes": passes, "seconds": round(dt, 3),
                              "photos_per_s": round(n / dt, 1), "ms_per_photo": round(1000 * dt / n, 3),
                              "last_call_ms_per_photo": {k: round(v, 3) for k, v in speed.items()}}
    return {"imgsz": imgsz, "half": cuda, "device": device, "photos": len(ims), **res}


def _settings(run: Run) -> dict:
    """The run's settings: the preset's, unless the environment says otherwise."""
    from training.presets import PRESETS
    from training.train import pick_device

    preset = PRESETS[PRESET]
    extra = {"plots": False}
    if _env("GPU_FRACTION", float):
        extra["fraction"] = _env("GPU_FRACTION", float)
    extra.update(json.loads(_env("GPU_EXTRA", str, "{}")))
    cfg = dict(preset=preset, imgsz=_env("GPU_IMGSZ", int, preset.imgsz), batch=_env("GPU_BATCH", int, preset.batch),
               epochs=_env("GPU_EPOCHS", int),
               weights=Path(_env("GPU_WEIGHTS", str, str(ROOT / "models" / "wardrobe-yolov8s-seg.pt"))),
               device=pick_device(), extra=extra, call_s=_env("GPU_CALL_S", float, 570.0),
               reserve_s=_env("GPU_RESERVE_S", float, 90.0))
    run.info["machine"] = machine()
    print(f"[gpu-train] {json.dumps(run.info['machine'])}", flush=True)
    return cfg


def _unpack(run: Run, kit: Path, work: Path) -> Path:
    t = time.time()
    shutil.rmtree(work / "data", ignore_errors=True)
    data_yaml = unpack_dataset(kit / DATASET_ARCHIVE, work / "data")
    import cv2

    first = next((work / "data" / "images" / "val").iterdir())
    if cv2.imread(str(first)) is None:
        raise SystemExit(f"OpenCV here cannot decode {first.suffix} photos")
    run.phase("unpack", t)
    return data_yaml


def _budget(run: Run, cfg: dict) -> float | None:
    """Training hours (None with a fixed epoch count): GPU_TRAIN_HOURS, else what the call leaves."""
    hours = None
    if not cfg["epochs"]:
        hours = _env("GPU_TRAIN_HOURS", float)
        if hours is None:
            left = cfg["call_s"] - run.elapsed() - cfg["reserve_s"]
            hours = round(min(cfg["preset"].time_hours or 1.0, max(10.0, left) / 3600), 4)
    weights = cfg["weights"]
    run.info["settings"] = dict(
        preset=PRESET, imgsz=cfg["imgsz"], batch=cfg["batch"], epochs=cfg["epochs"], time_hours=hours,
        device=cfg["device"], weights=str(weights.relative_to(ROOT) if weights.is_relative_to(ROOT) else weights),
        extra=cfg["extra"], call_s=cfg["call_s"], reserve_s=cfg["reserve_s"])
    print(f"[gpu-train] {json.dumps(run.info['settings'])}", flush=True)
    return hours


def _train(run: Run, cfg: dict, data_yaml: Path, work: Path, out: Path, hours: float | None) -> Path:
    from training.train import train

    t = time.time()
    run.info["polars_replaced"] = read_results_csv_without_polars()
    run_dir = train(data_yaml, PRESET, project=work / "runs", name=PRESET, epochs=cfg["epochs"], imgsz=cfg["imgsz"],
                    batch=cfg["batch"], weights=cfg["weights"], device=cfg["device"], workers=_env("GPU_WORKERS", int),
                    threads=_env("GPU_THREADS", int), time_hours=hours, extra=cfg["extra"])
    run.phase("train", t)
    csv = run_dir / "results.csv"
    shutil.copyfile(csv, out / "results.csv")
    cols = {k.strip(): v for k, v in read_csv_columns(csv).items()}
    run.info["training"] = {"epochs_run": len(cols["epoch"]), "train_seconds": cols["time"][-1],
                            "last_epoch": {k: v[-1] for k, v in cols.items() if "(M)" in k or k.startswith("val/")}}
    return run_dir


def _convert(run: Run, run_dir: Path, work: Path, out: Path) -> Path:
    t = time.time()
    best = run_dir / "weights" / "best.pt"
    if not best.exists():
        best = run_dir / "weights" / "last.pt"
    from ultralytics.utils.torch_utils import strip_optimizer

    shipped = work / WEIGHTS_NAME
    strip_optimizer(str(best), s=str(shipped))  # EMA weights, fp16, no optimizer state (as training/ship.py)
    for old in out.glob(f"{WEIGHTS_NAME}.part-*"):
        old.unlink()
    parts = split_file(shipped, out)
    run.info["weights"] = {"file": WEIGHTS_NAME, "from": best.name, "bytes": shipped.stat().st_size,
                           "sha256": sha256(shipped), "parts": [p.name for p in parts],
                           "join": f"python -m training.gpu_kit join OUTDIR  (or: cat {WEIGHTS_NAME}.part-* > {WEIGHTS_NAME})"}
    run.phase("convert", t)
    return shipped


def _evaluate(run: Run, cfg: dict, shipped: Path, data_yaml: Path, out: Path) -> None:
    t = time.time()
    from training.evaluate import evaluate, print_table

    report = evaluate(shipped, data_yaml, imgsz=cfg["imgsz"], split="val", device=cfg["device"],
                      batch=_env("GPU_EVAL_BATCH", int, 32 if cfg["device"] != "cpu" else 8))
    report["weights_sha256"] = run.info["weights"]["sha256"]
    (out / "val-report.json").write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    run.info["val"] = {k: report.get(k) for k in ("imgsz", "images", "seg_loss", "cls_loss", "precision_m", "recall_m",
                                                   "map50_m", "map50_95_m", "map50_b")}
    run.phase("evaluate", t)


def _speed(run: Run, cfg: dict, shipped: Path, work: Path) -> None:
    call_s, device = cfg["call_s"], cfg["device"]
    if run.elapsed() < call_s - 25:
        t = time.time()
        photos = sorted((work / "data" / "images" / "val").iterdir())
        run.info["predict_speed"] = time_predict(shipped, photos, cfg["imgsz"], "cuda:0" if device == "0" else device,
                                                 seconds=_env("GPU_SPEED_S", float, 5.0), deadline=run.t0 + call_s - 10)
        run.info["predict_speed"]["gpu"] = run.info["machine"]["gpu"] or platform.processor() or "cpu"
        run.phase("predict_speed", t)
    else:
        run.info["predict_speed"] = {"skipped": f"{run.elapsed():.0f} s gone of GPU_CALL_S={call_s:.0f}"}


def main() -> int:
    out = Path(_env("OUT", str, str(ROOT / "var" / "gpu-out")))
    out.mkdir(parents=True, exist_ok=True)
    kit = Path(_env("GPU_KIT", str, str(KIT)))
    work = Path(_env("GPU_WORK", str, "/tmp/wardrobe-gpu"))
    os.environ.setdefault("YOLO_CONFIG_DIR", str(work / "ultralytics-config"))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "True")  # the epochs' lines in the log
    from segmentation.runtime import prepare_ultralytics

    prepare_ultralytics()  # offline, and matplotlib's font as Ultralytics' Arial.ttf
    run = Run(out)
    cfg = _settings(run)
    data_yaml = _unpack(run, kit, work)
    hours = _budget(run, cfg)
    run_dir = _train(run, cfg, data_yaml, work, out, hours)
    shipped = _convert(run, run_dir, work, out)
    _evaluate(run, cfg, shipped, data_yaml, out)
    _speed(run, cfg, shipped, work)
    run.save()
    print(f"[gpu-train] done in {run.elapsed():.0f} s: {json.dumps(run.info['phases_s'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
