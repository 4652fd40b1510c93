"""Train YOLOv8s-seg for the 23 catalogue classes, fully offline."""
from __future__ import annotations

import os
from pathlib import Path

from segmentation.runtime import prepare_ultralytics
from training.presets import PRESETS, Preset

ARCH = "yolov8s-seg.yaml"


def pick_device() -> str:
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def _preset_options(preset: str | Preset, val_every: int, repeat_threshold: float | None):
    """The preset, its Ultralytics hyperparameters, and our own two options (the caller's unless left at
    their defaults): these are ours, not Ultralytics arguments, and never passed on."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    hyp = dict(p.hyp)
    preset_val_every = hyp.pop("val_every", 1)
    preset_threshold = hyp.pop("repeat_threshold", 0.0)
    return (p, hyp, val_every if val_every != 1 else preset_val_every,
            preset_threshold if repeat_threshold is None else repeat_threshold)


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
    bf16: bool | None = None,
    val_every: int = 1,
    repeat_threshold: float | None = None,
    time_hours: float | None = None,
    callbacks: dict | None = None,
    extra: dict | None = None,
):
    """Train and return the Ultralytics trainer's results directory.

    `weights` starts from earlier weights (fine-tune, e.g. the shipped model);
    without it the network starts from the architecture yaml and random weights,
    since no pretrained checkpoint can be fetched here. `resume` continues the
    interrupted run at project/name/weights/last.pt with its optimizer state.
    `bf16` trains under bfloat16 autocast on the CPU (default: where the CPU has native bf16);
    `val_every` validates every N epochs (the last one always); `repeat_threshold` > 0 draws photos
    with rare classes more often (repeat-factor sampling, training/sampling.py; default: the preset's,
    0 = off); `time_hours` is a wall-clock
    budget that sets the epoch count (and so the learning-rate schedule) to fit.
    """
    p, hyp, val_every, repeat_threshold = _preset_options(preset, val_every, repeat_threshold)
    prepare_ultralytics(threads=threads or os.cpu_count())
    from ultralytics import YOLO

    from core.cpu import has_native_bf16
    from training.trainer import WardrobeSegmentationTrainer

    trainer = WardrobeSegmentationTrainer.configured(val_every=val_every, repeat_threshold=repeat_threshold)
    run_dir = Path(project) / name
    if resume:
        last = run_dir / "weights" / "last.pt"
        model = YOLO(str(last))
        model.train(resume=True, trainer=trainer)
        return run_dir
    model = YOLO(str(weights) if weights else ARCH, task="segment")
    for event, fn in (callbacks or {}).items():
        model.add_callback(event, fn)
    dev = device or pick_device()
    args = _train_args(p, data_yaml, dev, project, name, epochs, imgsz, batch, weights, seed, workers, cache,
                       _amp(dev, bf16, has_native_bf16), time_hours)
    args.update(hyp)
    args.update(extra or {})
    model.train(trainer=trainer, **args)
    return run_dir


def _train_args(p: Preset, data_yaml, dev: str, project, name: str, epochs, imgsz, batch, weights, seed: int, workers,
                cache, amp, time_hours) -> dict:
    """Ultralytics' train arguments: the call's, else the preset's."""
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
        amp=amp,
        plots=True,
        verbose=False,
    )
    if time_hours:
        args["time"] = time_hours
    elif p.time_hours and not epochs:
        args["time"] = p.time_hours
    return args


def _amp(device: str, bf16: bool | None, cpu_has_bf16) -> bool | str:
    """Ultralytics' `amp`: fp16 AMP on a GPU; on the CPU bf16 where asked for (default: where native), else fp32."""
    if device != "cpu":
        return "bf16" if bf16 else True
    if bf16 is None:
        bf16 = cpu_has_bf16()
    return "bf16" if bf16 else False
