"""The segmenter: YOLOv8s-seg, or one of your own named by WARDROBE_SEGMENTER (`module:Class`).

A segmenter takes upright RGB photos and returns, per photo, the garments
found with polygons in the photo's own pixels. The model is loaded once per
worker process (`segmentation.serving.get_segmenter`, which picks this module's
Ultralytics path or the lean OpenVINO one) and says when it is ready.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from core.config import Settings

log = logging.getLogger("wardrobe.segmenter")

MIN_CONTOUR_AREA = 6.0  # mask pixels; smaller islands are noise


@dataclass
class Detection:
    class_id: int
    confidence: float
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in photo pixels
    polygons: list[np.ndarray] = field(default_factory=list)  # each (N, 2) float, photo pixels
    alternatives: list[tuple[int, float]] = field(default_factory=list)  # other classes for the garment, best first


class Segmenter(Protocol):
    version: str

    def segment(self, photos: list[np.ndarray]) -> list[list[Detection]]: ...


def weights_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_card(path: str | os.PathLike) -> dict:
    from segmentation.card import read_card

    return read_card(path)


def weights_digest(path: str | os.PathLike) -> str:
    """The weights' sha256: from the model card when it records one, else hashed from the file."""
    return model_card(path).get("sha256") or weights_sha256(path)


def model_version(path: str | os.PathLike) -> str:
    """The model card's version when there is one, else the weights' short hash."""
    version = model_card(path).get("version")
    return str(version) if version else "sha256:" + weights_sha256(path)[:12]


def auto_batch(device: str, imgsz: int) -> int:
    """Photos per forward pass. On the CPU, one: `make bench` measured batches of 4 and 8 slower
    per photo than single photos on a 2-core EPYC (the activations of one photo stay in cache),
    with PyTorch and OpenVINO alike. On a GPU, as many as about half the free memory holds
    (YOLOv8s-seg at 640 in fp16 needs roughly 60 MB a photo, activations and masks included),
    between 8 and 256."""
    if not device.startswith("cuda"):
        return 1
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    per_photo = 60e6 * (imgsz / 640) ** 2
    return int(max(8, min(256, free * 0.5 // per_photo)))


def nvidia_gpu_present() -> bool:
    """An NVIDIA driver on this machine (or passed into this container): only then is torch worth importing to ask CUDA."""
    return os.path.exists("/proc/driver/nvidia/version") or any(Path("/dev").glob("nvidia[0-9]*"))


def pick_device(setting: str) -> str:
    """The device `setting` means here. `auto` imports torch only where there is a GPU it could use:
    on a CPU-only machine the lean worker (segmentation.lean) keeps torch out of the process."""
    if setting != "auto":
        return setting
    import importlib.util

    if importlib.util.find_spec("torch") is None or not nvidia_gpu_present():
        return "cpu"
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def _torch_beside_openvino() -> None:
    """With OpenVINO running the model, PyTorch only does Ultralytics' light pre- and post-processing.
    Its OpenMP threads spin for a while after each op and take the cores OpenVINO's threads need:
    on 2 cores `make bench` measured int8 predict at 12.7 ms a photo with torch on 2 threads, 10.0 ms on 1."""
    import torch
    import ultralytics.utils.torch_utils as tu

    torch.set_num_threads(1)
    tu.NUM_THREADS = 1  # Ultralytics resets torch to this when it picks the CPU device


class YoloSegmenter:
    def __init__(self, settings: Settings):
        from segmentation.runtime import prepare_ultralytics
        from segmentation.backends import (limit_openvino_threads, openvino_model, process_threads, resolve_backend,
                                           shipped_int8_model)

        self.settings = settings
        self.device = pick_device(settings.device)
        self.threads = process_threads(settings)
        prepare_ultralytics(threads=self.threads if self.device == "cpu" else None)
        from ultralytics import YOLO

        path = Path(settings.model)
        if not path.exists():
            raise FileNotFoundError(f"model weights not found at {path} (set WARDROBE_MODEL)")
        t0 = time.perf_counter()
        self.version = model_version(path)
        from segmentation.card import served_thresholds, serve_imgsz

        self.imgsz = settings.imgsz or serve_imgsz(path)
        # the thresholds measured for these weights (make quality), unless the deployment sets its own
        conf, self.class_conf = served_thresholds(path, settings.conf)
        self.settings = settings = dataclasses.replace(settings, conf=conf)
        self.half = self.device.startswith("cuda")
        self.batch = settings.batch_size or auto_batch(self.device, self.imgsz)
        digest = weights_digest(path)
        int8 = shipped_int8_model(path, self.imgsz, digest)
        self.backend = resolve_backend(settings.backend, self.device, int8)
        source = path
        if self.backend == "openvino-int8":
            if int8 is None:
                raise FileNotFoundError(f"no int8 model for {path.name} at imgsz {self.imgsz} (make one: wardrobe export-model --int8)")
            source = int8
        elif self.backend == "openvino":
            try:
                source = openvino_model(path, self.imgsz, settings.data_path / "model-cache", digest)
            except Exception as e:  # noqa: BLE001 - export needs openvino + onnx bits; PyTorch always works
                # on an AMX CPU the shipped int8 model is still there, and faster than PyTorch
                self.backend, source = ("openvino-int8", int8) if int8 is not None else ("pytorch", path)
                log.warning("OpenVINO export failed (%s); using %s", e, self.backend)
        if self.backend.startswith("openvino"):
            _torch_beside_openvino()
        self.model = YOLO(str(source), task="segment")
        # One warm-up pass so the first real batch does not pay for lazy initialisation.
        warm = np.zeros((64, 64, 3), np.uint8)
        self.model.predict(warm, imgsz=self.imgsz, device=self.device, half=self.half, verbose=False)
        if self.backend.startswith("openvino"):
            limit_openvino_threads(self.model, source, self.threads)
            self.model.predict(warm, imgsz=self.imgsz, verbose=False)
        log.info("model ready: %s (%s) on %s with %s, imgsz %d, batch %d, %d thread(s), %.1fs", path.name, self.version,
                 self.device, self.backend, self.imgsz, self.batch, self.threads, time.perf_counter() - t0)

    def segment(self, photos: list[np.ndarray]) -> list[list[Detection]]:
        return [outline(photo, c, self.settings, self.class_conf) if c is not None else []
                for photo, c in zip(photos, self.candidates(photos))]

    def candidates(self, photos: list[np.ndarray]) -> list["Candidates | None"]:
        """The model's raw detections per photo (None: nothing found)."""
        if not photos:
            return []
        s = self.settings
        import cv2

        # Ultralytics takes BGR arrays; OpenCV swaps channels ~70x faster than a NumPy reversed copy
        bgr = [cv2.cvtColor(np.ascontiguousarray(p), cv2.COLOR_RGB2BGR) for p in photos]
        results = self.model.predict(
            bgr,
            # below the item threshold only to offer other classes for the items found (alternatives)
            conf=predict_conf(s, self.class_conf),
            imgsz=self.imgsz,
            iou=s.iou,
            max_det=s.max_det,
            device=self.device,
            half=self.half,
            batch=len(bgr),
            retina_masks=False,
            verbose=False,
        )
        out: list[Candidates | None] = []
        for photo, r in zip(photos, results):
            if r.masks is None or not len(r.boxes):
                out.append(None)
                continue
            out.append(Candidates(r.boxes.xyxy.cpu().numpy(), r.boxes.conf.cpu().numpy(),
                                  r.boxes.cls.cpu().numpy().astype(int), r.masks.data.cpu().numpy().astype(np.uint8),
                                  photo.shape[:2]))
        return out


@dataclass
class Candidates:
    """One photo's raw detections after the model's per-class NMS: boxes in photo pixels, masks
    (0/1) at the model's input size."""

    boxes: np.ndarray
    confs: np.ndarray
    classes: np.ndarray
    masks: np.ndarray
    photo_hw: tuple[int, int]


def predict_conf(s: Settings, class_conf: Mapping[int, float]) -> float:
    """The least confidence the model's own filter keeps: below every item threshold, down to where
    a detection can still offer its class as an alternative or be a photo's one item."""
    return min(s.conf, s.alternatives_conf, *class_conf.values(), *([s.keep_one_conf] if s.keep_one_conf > 0 else []))


def refine_radius(bbox, radius: int, share: float = 0.0) -> int:
    """The guided filter's radius for one garment: `radius`, or with `share` > 0 smaller for thin
    garments (`share` of the box's short side, at least 2 pixels). Off by default: on the val
    photos a smaller window for thin garments lowered their boundary F (belts 0.65 -> 0.54 at a
    tenth, 0.57 at three tenths), because the model's coarse mask needs the wide window to find the
    photo's edges at all (docs: the model)."""
    if radius <= 0:
        return 0
    if share <= 0:
        return int(radius)
    short = min(bbox[2] - bbox[0], bbox[3] - bbox[1])
    return int(max(2, min(radius, round(short * share))))


def outline(photo: np.ndarray, c: Candidates, s: Settings, class_conf: Mapping[int, float] | None = None,
            ) -> list[Detection]:
    """One item per garment, edges refined: the Detections for one photo (`class_conf`: the least
    confidence per class, where the model card has them; else `s.conf` for all)."""
    import cv2

    from segmentation.masks import Letterbox, mask_polygons, refined_mask, trace

    groups = one_per_garment(c, s, class_conf)
    box = Letterbox.of(c.masks.shape[1:], c.photo_hw)
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32) * (1 / 255) if s.mask_refine_radius else None
    min_area = MIN_CONTOUR_AREA / (box.gain_x * box.gain_y)
    dets = []
    for i, alternatives in groups:
        if grey is not None:
            mask, x1, y1 = refined_mask(grey, c.masks[i], box, c.boxes[i], refine_radius(c.boxes[i], s.mask_refine_radius, s.mask_refine_share),
                                        s.mask_refine_eps)
            polys = trace(mask, x1, y1, min_area)
        else:
            polys = mask_polygons(c.masks[i], box, c.photo_hw, MIN_CONTOUR_AREA)
        if polys:
            dets.append(Detection(int(c.classes[i]), float(c.confs[i]), tuple(float(v) for v in c.boxes[i]), polys,
                                  alternatives))
    return dets


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def one_per_garment(c: Candidates, s: Settings, class_conf: Mapping[int, float] | None = None,
                    ) -> list[tuple[int, list[tuple[int, float]]]]:
    """Merge detections of one garment across classes. Returns (index, alternatives) per item,
    most confident first: each item is its group's most confident detection at or above its
    class's threshold (`class_conf`, else `s.conf`); the group's other classes (detections merged into it, and less confident ones down
    to `s.alternatives_conf` lying on it) are its alternatives, best first, at most 3. A photo with
    no item at its thresholds keeps its most confident detection from `s.keep_one_conf` up: a garment
    photographed alone on a bed or a hanger is what the street photos the thresholds were chosen
    on taught the model least, and an item to review beats an empty photo."""
    kept = _grouped(c, s, class_conf or {})
    if not kept and s.keep_one_conf > 0 and len(c.confs) and float(c.confs.max()) >= s.keep_one_conf:
        kept = _grouped(c, s, class_conf or {}, force=int(np.argmax(c.confs)))
    return kept


def _grouped(c: Candidates, s: Settings, thresholds: Mapping[int, float], force: int | None = None,
             ) -> list[tuple[int, list[tuple[int, float]]]]:
    """one_per_garment's groups; `force`, a detection kept whatever its class's threshold."""
    order = np.argsort(-c.confs, kind="stable")
    areas = c.masks.reshape(len(c.masks), -1).sum(1)
    kept: list[int] = []
    alts: dict[int, dict[int, float]] = {}

    def same_garment(i: int, k: int) -> bool:
        box_iou = _box_iou(c.boxes[i], c.boxes[k])
        if box_iou >= s.merge_box_iou:
            return True
        if box_iou == 0.0:
            return False
        smaller = min(areas[i], areas[k])
        return bool(smaller) and float(np.logical_and(c.masks[i], c.masks[k]).sum()) / smaller >= s.merge_mask_overlap

    for i in order:
        home = next((k for k in kept if same_garment(i, k)), None)
        if home is None:
            if c.confs[i] >= thresholds.get(int(c.classes[i]), s.conf) or i == force:
                kept.append(i)
                alts[i] = {}
            continue
        cls = int(c.classes[i])
        if cls != int(c.classes[home]):
            alts[home][cls] = max(alts[home].get(cls, 0.0), float(c.confs[i]))
    return [(k, sorted(alts[k].items(), key=lambda a: -a[1])[:3]) for k in kept]


def named_segmenter(spec: str) -> type:
    """The class a WARDROBE_SEGMENTER of `package.module:Class` names (a test double, a stand-in for
    a benchmark): called with no arguments, it must have `version` and `segment` (Segmenter)."""
    import importlib

    from core.config import SettingError

    module, _, name = spec.partition(":")
    if not module or not name:
        raise SettingError(f"WARDROBE_SEGMENTER must be yolo or module:Class, not {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise SettingError(f"WARDROBE_SEGMENTER={spec}: {e}") from None
