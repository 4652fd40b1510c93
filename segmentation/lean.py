"""The lean CPU segmenter: the shipped OpenVINO model run by the OpenVINO runtime, its outputs
decoded with NumPy and OpenCV (segmentation.yolo_decode). No torch, no Ultralytics: the CPU
worker's install and memory are OpenVINO's and OpenCV's. It gives the same `Candidates` as the
Ultralytics path (`YoloSegmenter`), so both share the post-processing (`outline`).

Kept libraries that decode YOLOv8-seg without torch were looked at first: `openvino-model-api`'s
`YOLOSeg` wrapper crops the masks at the prototypes' resolution and then resizes them to the
photo (Ultralytics upsamples, then crops), rounds the boxes to whole pixels, letterboxes to a
fixed square only, and pins opencv-python-headless 4, which cannot sit beside the opencv-python
that Ultralytics needs; `supervision` brings SciPy, Matplotlib and PyAV for an NMS that
OpenCV already has. What is left is a few lines of arithmetic, in `yolo_decode`.

A model that is not what the decoder expects (folder or file missing, another input or output
layout, an output of the wrong size) raises `ModelError`, one line that names the file: the
worker checks the files before it starts its processes (`check_model`) and stops on it.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import Settings
from segmentation import yolo_decode as yd
from segmentation.backends import openvino_cpu_config, process_threads
from segmentation.segmenter import Candidates, Detection, outline, predict_conf

log = logging.getLogger("wardrobe.segmenter")

STRIDES = (8, 16, 32)  # YOLOv8's detection heads: one anchor per cell of each
PROTO_STRIDE = 4  # the mask prototypes' cell, in input pixels


class ModelError(RuntimeError):
    """The model's files are not what the lean decoder reads; the message is one line naming the file."""


@dataclass(frozen=True)
class IrModel:
    """An Ultralytics OpenVINO export of a YOLOv8-seg model, as its files describe it."""

    xml: Path
    imgsz: tuple[int, int]
    stride: int
    names: dict[int, str]
    masks: int  # mask coefficients per detection (= prototypes)
    dynamic: bool  # takes any input size (a multiple of the stride)

    @property
    def classes(self) -> int:
        return len(self.names)


def _dims(port) -> list[int]:
    return [int(d.text) for d in port.findall("dim")]


def read_ir(folder: str | os.PathLike) -> IrModel:
    """The model folder's metadata and the IR's input and outputs, checked without loading OpenVINO
    (the worker's parent process checks before it forks its pool)."""
    import yaml

    folder = Path(folder)
    meta_path = folder / "metadata.yaml"
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such model folder")
    xmls = sorted(folder.glob("*.xml"))
    if len(xmls) != 1:
        raise ModelError(f"{folder}: expected one OpenVINO .xml model in the folder, found {len(xmls)}")
    xml = xmls[0]
    if not xml.with_suffix(".bin").is_file():
        raise ModelError(f"{xml.with_suffix('.bin')}: missing (the weights of {xml.name})")
    try:
        meta = yaml.safe_load(meta_path.read_text())
        imgsz = meta["imgsz"]
        imgsz = (int(imgsz), int(imgsz)) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
        names = {int(k): str(v) for k, v in meta["names"].items()}
        stride = int(meta.get("stride", 32))
    except FileNotFoundError:
        raise ModelError(f"{meta_path}: missing (Ultralytics' export writes it beside the model)") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as e:
        raise ModelError(f"{meta_path}: unreadable ({type(e).__name__}: {e})") from None
    if meta.get("task", "segment") != "segment":
        raise ModelError(f"{meta_path}: a {meta.get('task')} model, not a segmentation model")
    try:
        layers = ET.parse(xml).getroot().find("layers")
        params = [_dims(layer.find("output/port")) for layer in layers if layer.get("type") == "Parameter"]
        results = [_dims(layer.find("input/port")) for layer in layers if layer.get("type") == "Result"]
    except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
        raise ModelError(f"{xml}: not an OpenVINO IR ({type(e).__name__}: {e})") from None
    if len(params) != 1 or len(params[0]) != 4 or params[0][1] != 3:
        raise ModelError(f"{xml}: input shapes {params}, expected one image input [batch, 3, height, width]")
    ranks = sorted(len(r) for r in results)
    if ranks != [3, 4]:
        raise ModelError(f"{xml}: output shapes {results}, expected YOLOv8-seg's two: "
                         "[batch, 4 + classes + masks, anchors] and [batch, masks, height / 4, width / 4]")
    det = next(r for r in results if len(r) == 3)
    proto = next(r for r in results if len(r) == 4)
    masks = proto[1]
    if masks <= 0 or det[1] != 4 + len(names) + masks:
        raise ModelError(f"{xml}: detection output has {det[1]} channels, expected 4 + {len(names)} classes "
                         f"(metadata.yaml) + {masks} mask coefficients")
    return IrModel(xml, imgsz, stride, names, masks, dynamic=params[0][2] < 0 or params[0][3] < 0)


def _amx_int8() -> bool:
    from core.cpu import cpu_flags

    return "amx_int8" in cpu_flags()


class LeanSegmenter:
    """YOLOv8-seg on OpenVINO's CPU runtime; the same interface and items as `YoloSegmenter`."""

    def __init__(self, settings: Settings, folder: str | os.PathLike, imgsz: int, version: str, conf: float,
                 class_conf: dict[int, float] | None = None):
        import openvino as ov

        t0 = time.perf_counter()
        self.settings = dataclasses.replace(settings, conf=conf)
        self.class_conf = dict(class_conf or {})  # per-class item thresholds, as YoloSegmenter's
        self.ir = read_ir(folder)
        if self.ir.imgsz != (imgsz, imgsz):
            raise ModelError(f"{Path(folder) / 'metadata.yaml'}: imgsz {list(self.ir.imgsz)}, the worker serves {imgsz}")
        self.version, self.imgsz, self.device, self.backend = version, imgsz, "cpu", "openvino-int8"
        self.batch = settings.batch_size or 1  # on the CPU one photo a pass is fastest (segmenter.auto_batch)
        self.threads = process_threads(settings)
        from threadpoolctl import threadpool_limits

        # NumPy's BLAS does one small product a photo (the masks); left at a thread a core, its
        # threads spin beside OpenVINO's for the same cores (4 ms where one thread takes 0.2)
        threadpool_limits(1, user_api="blas")
        core = ov.Core()
        cache = settings.data_path / "model-cache" / "openvino"
        try:
            # compiled models kept on disk: the worker's next processes (and restarts) skip most of the compile
            cache.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache)})
        except (OSError, RuntimeError) as e:
            log.warning("no OpenVINO compile cache at %s (%s): every process compiles the model", cache, e)
        try:
            self._model = core.read_model(model=str(self.ir.xml), weights=str(self.ir.xml.with_suffix(".bin")))
        except RuntimeError as e:
            raise ModelError(f"{self.ir.xml}: OpenVINO cannot read it ({str(e).splitlines()[0]})") from None
        self._compile = lambda m: core.compile_model(m, "CPU", openvino_cpu_config(self.threads))
        # As Ultralytics does: OpenVINO's CPU plugin crashes running an int8 model with dynamic shapes on
        # AMX CPUs, so there it runs compiled for each input shape, and every photo is letterboxed to imgsz.
        self._per_shape = self.ir.dynamic and _amx_int8() and any(
            op.get_type_name() == "FakeQuantize" for op in self._model.get_ops())
        self.auto = self.ir.dynamic and not self._per_shape  # the minimum rectangle around the photo
        self._compiled: dict[tuple, object] = {}
        self._local = threading.local()
        self.candidates([np.zeros((64, 64, 3), np.uint8)])  # compiles, and checks the outputs' sizes
        log.info("model ready: %s (%s) on cpu with openvino-int8 (lean: OpenVINO + NumPy, no torch), imgsz %d, "
                 "batch %d, %d thread(s), %.1fs", self.ir.xml.name, version, imgsz, self.batch, self.threads,
                 time.perf_counter() - t0)

    def _request(self, shape: tuple[int, ...]):
        key = shape if self._per_shape else ()
        requests = self._local.__dict__.setdefault("requests", {})  # infer requests are one thread's each
        if key not in requests:
            compiled = self._compiled.get(key)
            if compiled is None:
                model = self._model
                if self._per_shape:
                    model = self._model.clone()
                    model.reshape(list(shape))
                compiled = self._compiled[key] = self._compile(model)
            requests[key] = compiled.create_infer_request()
        return requests[key]

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's two outputs for an input batch, checked against what the decoder reads."""
        req = self._request(x.shape)
        req.infer({0: x})
        outs = [req.get_output_tensor(i).data for i in range(2)]
        det, protos = sorted(outs, key=lambda o: o.ndim)
        n, _, h, w = x.shape
        ir = self.ir
        want_det = (n, 4 + ir.classes + ir.masks, sum((h // s) * (w // s) for s in STRIDES))
        want_protos = (n, ir.masks, h // PROTO_STRIDE, w // PROTO_STRIDE)
        if det.shape != want_det or protos.shape != want_protos:
            raise ModelError(f"{ir.xml}: outputs {list(det.shape)} and {list(protos.shape)} for an input of "
                             f"{list(x.shape)}, expected {list(want_det)} and {list(want_protos)}")
        return det, protos

    def candidates(self, photos: list[np.ndarray]) -> list[Candidates | None]:
        """The model's raw detections per photo (None: nothing found), as `YoloSegmenter.candidates`."""
        if not photos:
            return []
        s, ir = self.settings, self.ir
        # Ultralytics letterboxes a batch to the minimum rectangle only when its photos are all one size
        auto = self.auto and len({p.shape for p in photos}) == 1
        x = yd.to_tensor([yd.letterbox(p, ir.imgsz, ir.stride, auto) for p in photos])
        det, protos = self.infer(x)
        input_hw = x.shape[2:]
        out: list[Candidates | None] = []
        for i, photo in enumerate(photos):
            # below the item threshold only to offer other classes for the items found (alternatives)
            rows = yd.non_max_suppression(det[i], ir.classes, predict_conf(s, self.class_conf),
                                          s.iou, s.max_det)
            if not len(rows):
                out.append(None)
                continue
            masks = yd.process_masks(protos[i], rows[:, 6:], rows[:, :4], input_hw)
            keep = masks.reshape(len(masks), -1).any(1)  # Ultralytics drops detections whose mask is empty
            if not keep.any():
                out.append(None)
                continue
            rows, masks = rows[keep], masks[keep]
            out.append(Candidates(yd.scale_boxes(input_hw, rows[:, :4], photo.shape[:2]), rows[:, 4].copy(),
                                  rows[:, 5].astype(int), masks, photo.shape[:2]))
        return out

    def segment(self, photos: list[np.ndarray]) -> list[list[Detection]]:
        return [outline(photo, c, self.settings, self.class_conf) if c is not None else []
                for photo, c in zip(photos, self.candidates(photos))]

