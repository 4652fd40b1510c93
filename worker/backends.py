"""Inference backends for the segment worker.

On the CPU the default is OpenVINO: the shipped PyTorch weights are exported once
(`wardrobe export`, or on a worker's first start) into a cache keyed by the weights'
hash and the input size, and loaded through Ultralytics like any other model. On CPUs
with AMX, OpenVINO runs in bf16 by default. PyTorch is the fallback, and the backend
on CUDA (in half precision).
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("wardrobe.backends")


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401

        return True
    except Exception:  # noqa: BLE001 - not installed, or a broken install: either way, not usable
        return False


def resolve_backend(setting: str, device: str) -> str:
    if setting in ("pytorch", "openvino"):
        return setting
    return "openvino" if device == "cpu" and openvino_available() else "pytorch"


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # two worker processes starting together export once
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def openvino_model(weights: Path, imgsz: int, cache_dir: Path, digest: str) -> Path:
    """The OpenVINO export of `weights` at `imgsz`, made once and cached by the weights' hash."""
    target = cache_dir / f"{weights.stem}-{digest[:16]}-{imgsz}_openvino_model"
    if (target / "metadata.yaml").exists():
        return target
    with _locked(cache_dir / f".{target.name}.lock"):
        if (target / "metadata.yaml").exists():
            return target
        from ultralytics import YOLO

        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            src = Path(tmp) / weights.name
            shutil.copyfile(weights, src)
            log.info("exporting %s to OpenVINO at imgsz %d (once per weights)", weights.name, imgsz)
            out = Path(YOLO(str(src), task="segment").export(format="openvino", imgsz=imgsz, half=False, dynamic=True,
                                                              verbose=False))
            os.replace(out, target)
    return target


def limit_openvino_threads(yolo, model_dir: Path, threads: int) -> bool:
    """Recompile a loaded OpenVINO model to use `threads` inference threads (Ultralytics leaves it
    at all cores, which makes two worker processes on two cores fight)."""
    backend = getattr(getattr(getattr(yolo, "predictor", None), "model", None), "backend", None)
    if backend is None or not hasattr(backend, "ov_compiled_model"):
        return False
    core = backend.ov.Core()
    xml = next(Path(model_dir).glob("*.xml"))
    ov_model = core.read_model(model=str(xml), weights=xml.with_suffix(".bin"))
    backend.ov_compiled_model = backend.compile_model(
        ov_model, config={"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads)})
    return True
