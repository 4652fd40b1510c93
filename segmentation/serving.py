"""Which segmenter a worker process serves with, loaded once per process.

On the CPU with the int8 model shipped beside the weights (the default backend there, see
segmentation.backends), the lean path: OpenVINO's runtime and NumPy (segmentation.lean), with
no torch or Ultralytics imported. Everything else, the Ultralytics path (segmentation.segmenter's
`YoloSegmenter`): a GPU, WARDROBE_BACKEND=pytorch, and the OpenVINO export of weights that have
no int8 model (exporting needs torch; on AMX CPUs the export is the faster default where
Ultralytics is installed). The lean worker never exports: without Ultralytics it serves the
shipped int8 model or stops with a line saying what is missing.
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

from core.config import Settings
from segmentation.lean import LeanSegmenter, ModelError, read_ir

_segmenter = None
_seg_lock = threading.Lock()


def ultralytics_installed() -> bool:
    return importlib.util.find_spec("ultralytics") is not None and importlib.util.find_spec("torch") is not None


def lean_plan(settings: Settings) -> tuple[Path, int, str, float, dict[int, float]] | None:
    """(int8 model folder, imgsz, model version, conf, per-class thresholds) when this worker serves
    the lean path, else None: the served settings as `YoloSegmenter` takes them from the card. Raises
    ModelError where neither path can serve (no Ultralytics, and no int8 model to run)."""
    from segmentation.backends import int8_model_dir, openvino_available, resolve_backend, shipped_int8_model
    from segmentation.card import served_thresholds, serve_imgsz
    from segmentation.segmenter import model_version, pick_device, weights_digest

    if settings.segmenter != "yolo":
        return None
    weights = Path(settings.model)
    device = pick_device(settings.device)
    full = ultralytics_installed()
    if not weights.exists() and not weights.with_suffix(".json").exists():
        raise ModelError(f"{weights}: model weights not found, nor their card {weights.with_suffix('.json').name} "
                         "(set WARDROBE_MODEL)")
    imgsz = settings.imgsz or serve_imgsz(weights)
    int8 = shipped_int8_model(weights, imgsz, weights_digest(weights)) if device == "cpu" else None
    backend = resolve_backend(settings.backend, device, int8, exportable=full)
    if backend == "openvino-int8" and openvino_available():
        if int8 is None:
            raise ModelError(f"{int8_model_dir(weights, imgsz)}: no int8 model made from {weights.name} at imgsz {imgsz} "
                             "(make one: wardrobe export-model --int8)")
        return (int8, imgsz, model_version(weights), *served_thresholds(weights, settings.conf))
    if not full:
        raise ModelError(f"{weights}: backend {backend} on {device} needs torch and Ultralytics (pip install "
                         f"'wardrobe[worker,gpu]'); this install serves only the int8 model at "
                         f"{int8_model_dir(weights, imgsz)}")
    return None


def load_segmenter(settings: Settings):
    if settings.segmenter != "yolo":
        from segmentation.segmenter import named_segmenter

        return named_segmenter(settings.segmenter)()
    plan = lean_plan(settings)
    if plan is not None:
        return LeanSegmenter(settings, *plan)
    from segmentation.segmenter import YoloSegmenter

    return YoloSegmenter(settings)


def check_model(settings: Settings) -> None:
    """Before a worker starts its processes: the lean path's model files, read as the decoder
    will read them (OpenVINO itself is not loaded here: its threads do not survive a fork).
    Raises ModelError, one line naming the file. A worker that may be a GPU's is left to its
    processes: asking torch about CUDA here, before the fork, would break CUDA in them."""
    from segmentation.segmenter import nvidia_gpu_present

    if settings.device != "cpu" and (settings.device != "auto" or nvidia_gpu_present()):
        return
    plan = lean_plan(settings)
    if plan is not None:
        read_ir(plan[0])


def get_segmenter(settings: Settings):
    """The process's one segmenter, loaded on first use."""
    global _segmenter
    with _seg_lock:
        if _segmenter is None:
            _segmenter = load_segmenter(settings)
        return _segmenter
