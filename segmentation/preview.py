"""`wardrobe predict`: one photo through the worker's own segmenter, drawn.

The same model, input size, confidence, merging and edge refinement as the catalogue (the
model card's served settings unless the environment or the flags set others), so what this
draws is what an upload of the photo would add.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from core import exif
from core.config import Settings
from core.taxonomy import by_id
from segmentation.serving import load_segmenter

COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def predict_and_draw(weights: str | Path, photo: Path, save: Path | None, imgsz: int | None = None,
                     conf: float | None = None) -> list[dict]:
    settings = Settings.from_env(model=str(weights), segmenter="yolo", **({"imgsz": imgsz} if imgsz else {}),
                                 **({"conf": conf} if conf else {}))
    with Image.open(photo) as im:
        rgb = np.ascontiguousarray(np.asarray(exif.upright(im).convert("RGB")))
    dets = load_segmenter(settings).segment([rgb])[0]
    if save:
        canvas = rgb.copy()
        overlay = rgb.copy()
        for k, d in enumerate(dets):
            pts = [np.rint(p).astype(np.int32) for p in d.polygons]
            colour = COLOURS[k % len(COLOURS)]
            cv2.fillPoly(overlay, pts, colour)
            cv2.polylines(canvas, pts, True, colour, 2)
        canvas = cv2.addWeighted(overlay, 0.35, canvas, 0.65, 0)
        for k, d in enumerate(dets):
            x, y = int(d.bbox[0]), max(12, int(d.bbox[1]))
            label = f"{by_id(d.class_id).name.split(',')[0]} {d.confidence:.2f}"
            cv2.putText(canvas, label, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(canvas, label, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, COLOURS[k % len(COLOURS)], 1, cv2.LINE_AA)
        save.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(save), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    return [{"class_id": d.class_id, "category": by_id(d.class_id).name, "confidence": round(d.confidence, 3),
             "bbox": [round(v, 1) for v in d.bbox],
             "alternatives": [{"class_id": c, "category": by_id(c).name, "confidence": round(p, 3)} for c, p in d.alternatives]}
            for d in dets]
