"""Inference backends for the segment worker.

On the CPU the default is OpenVINO. Best is the int8 model shipped beside the weights
(`models/<stem>-int8-<imgsz>_openvino_model/`, quantised with NNCF (`training/quantize.py`) on training photos
by `wardrobe export-model --int8`, accuracy checked by `make bench`): it is used only when its
record names the very weights being served. Otherwise the PyTorch weights are exported
once to OpenVINO fp32 (`wardrobe export-model`, or on a worker's first start) into a cache keyed
by the weights' hash and the input size; OpenVINO runs that in bf16 where the CPU has it.
On CPUs with AMX the plain export is the default even when the int8 model is there: `make bench`
timed it faster than int8 on such a CPU (bf16 on the matrix units), with the same accuracy.
PyTorch is the fallback, and the backend on CUDA (in half precision).
The int8 model is served by the lean path (segmentation.lean: OpenVINO and NumPy, no torch); the
others by Ultralytics (segmentation.serving picks).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from core.cpu import has_amx, usable_cores

log = logging.getLogger("wardrobe.backends")


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401

        return True
    except Exception:  # noqa: BLE001 - not installed, or a broken install: either way, not usable
        return False


BACKENDS = ("auto", "pytorch", "openvino", "openvino-int8")
INT8_RECORD = "wardrobe.json"  # inside a quantised model's folder: what it was made from


def resolve_backend(setting: str, device: str, int8_model: Path | None = None, amx: bool | None = None,
                    exportable: bool = True) -> str:
    """The backend `setting` means here; `amx` defaults to whether this CPU has AMX. `exportable`:
    whether this install can export the weights to OpenVINO (torch and Ultralytics are there); the
    lean worker's cannot, and serves the int8 model on an AMX CPU too."""
    if setting not in BACKENDS:
        raise ValueError(f"WARDROBE_BACKEND={setting!r}: expected one of {', '.join(BACKENDS)}")
    if setting != "auto":
        return setting
    if device != "cpu" or not openvino_available():
        return "pytorch"
    if amx is None:
        amx = has_amx()
    return "openvino-int8" if int8_model is not None and (not amx or not exportable) else "openvino"


def int8_model_dir(weights: Path, imgsz: int) -> Path:
    return weights.parent / f"{weights.stem}-int8-{imgsz}_openvino_model"


def shipped_int8_model(weights: Path, imgsz: int, digest: str) -> Path | None:
    """The quantised model beside `weights`, if it was made from exactly these weights at this size."""
    folder = int8_model_dir(weights, imgsz)
    try:
        record = json.loads((folder / INT8_RECORD).read_text())
    except (OSError, ValueError):
        return None
    if record.get("source_sha256") != digest or int(record.get("imgsz", 0)) != imgsz:
        log.warning("%s was made from other weights or another size; not using it", folder.name)
        return None
    return folder if (folder / "metadata.yaml").exists() else None


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


def process_threads(settings) -> int:
    """One worker process's inference threads: WARDROBE_THREADS, else its share of the usable cores."""
    cores = usable_cores()
    return settings.threads or max(1, cores // max(1, settings.worker_concurrency or cores))


def openvino_cpu_config(threads: int) -> dict:
    """How a worker process compiles its model for OpenVINO's CPU plugin: one request at a time on
    `threads` threads. OpenVINO pins its threads to cores by default, choosing them as if its process
    were alone: the worker's processes of one thread each were all pinned to the first core, and two
    of them ran the model no faster than one. Pinned only where this process's threads cover every
    core it may run on."""
    return {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads),
            "ENABLE_CPU_PINNING": int(threads) >= usable_cores()}


def limit_openvino_threads(yolo, model_dir: Path, threads: int) -> bool:
    """Recompile a loaded OpenVINO model to use `threads` inference threads (Ultralytics leaves it
    at all cores, which makes two worker processes on two cores fight)."""
    backend = getattr(getattr(getattr(yolo, "predictor", None), "model", None), "backend", None)
    if backend is None or not hasattr(backend, "ov_compiled_model"):
        return False
    core = backend.ov.Core()
    xml = next(Path(model_dir).glob("*.xml"))
    ov_model = core.read_model(model=str(xml), weights=xml.with_suffix(".bin"))
    backend.ov_compiled_model = backend.compile_model(ov_model, config=openvino_cpu_config(threads))
    return True
