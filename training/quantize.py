"""Quantisation, a training-time step: the int8 OpenVINO model the CPU worker prefers (`wardrobe export-model --int8`)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from segmentation.backends import INT8_RECORD, int8_model_dir


def quantize_openvino(weights: Path, imgsz: int, data_yaml: Path, digest: str, fraction: float = 0.4,
                      out: Path | None = None) -> Path:
    """Quantise `weights` to an int8 OpenVINO model with NNCF, calibrated on `fraction` of the
    dataset's *train* split (the val split stays unseen for the accuracy check), and write it
    beside the weights with a record of its source."""
    from ultralytics import YOLO

    target = out or int8_model_dir(weights, imgsz)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / weights.name
        shutil.copyfile(weights, src)
        made = Path(YOLO(str(src), task="segment").export(format="openvino", imgsz=imgsz, int8=True, dynamic=True,
                                                           data=str(data_yaml), split="train", fraction=fraction,
                                                           verbose=False))
        (made / INT8_RECORD).write_text(json.dumps({
            "source": weights.name, "source_sha256": digest, "imgsz": imgsz, "precision": "int8 (NNCF post-training)",
            "calibration": f"{fraction:.0%} of the train split of {Path(data_yaml).parent.name}",
        }, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(made, target)
    return target

