"""Train YOLOv8s-seg for the 23 catalogue classes, fully offline."""
from __future__ import annotations

import os
from pathlib import Path

from training.presets import PRESETS, Preset
from training.runtime import prepare_ultralytics

ARCH = "yolov8s-seg.yaml"


def pick_device() -> str:
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def train(
    data_yaml: str | Path,
    preset: str | Preset = "shared-cpu",
    project: str | Path = "runs/train",
    name: str = "wardrobe",
    epochs: int | None = None,
    imgsz: int | None = None,
    batch: int | None = None,
    weights: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
    device: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    cache: str | bool = "ram",
    extra: dict | None = None,
):
    """Train and return the Ultralytics trainer's results directory.

    `weights` starts from earlier weights (fine-tune, e.g. the shipped model);
    without it the network starts from the architecture yaml and random weights,
    since no pretrained checkpoint can be fetched here. `resume` continues the
    interrupted run at project/name/weights/last.pt with its optimizer state.
    """
    p = PRESETS[preset] if isinstance(preset, str) else preset
    prepare_ultralytics(threads=threads or os.cpu_count())
    from ultralytics import YOLO

    run_dir = Path(project) / name
    if resume:
        last = run_dir / "weights" / "last.pt"
        model = YOLO(str(last))
        model.train(resume=True)
        return run_dir
    model = YOLO(str(weights) if weights else ARCH, task="segment")
    dev = device or pick_device()
    args = dict(
        data=str(data_yaml),
        imgsz=imgsz or p.imgsz,
        epochs=epochs or p.epochs,
        batch=batch or p.batch,
        seed=seed,
        deterministic=True,
        device=dev,
        project=str(Path(project).resolve()),
        name=name,
        exist_ok=True,
        pretrained=bool(weights),
        workers=workers if workers is not None else (min(16, os.cpu_count() or 1) if dev != "cpu" else 2),
        cache=cache,
        amp=dev != "cpu",
        plots=True,
        verbose=False,
    )
    if p.time_hours and not epochs:
        args["time"] = p.time_hours
    args.update(extra or {})
    model.train(**args)
    return run_dir
