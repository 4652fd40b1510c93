"""Segment one photo and draw masks, boxes and labels (no font download: see runtime)."""
from __future__ import annotations

from pathlib import Path

from training.runtime import prepare_ultralytics


def predict_and_draw(weights: str | Path, photo: Path, save: Path | None, imgsz: int = 640, conf: float = 0.25) -> list[dict]:
    prepare_ultralytics()
    import cv2
    from PIL import Image, ImageOps
    import numpy as np
    from ultralytics import YOLO

    from db.taxonomy import by_id

    model = YOLO(str(weights), task="segment")
    with Image.open(photo) as im:
        rgb = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    r = model.predict(rgb[..., ::-1].copy(), imgsz=imgsz, conf=conf, verbose=False)[0]
    if save:
        save.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(save), r.plot(masks=True, boxes=True, labels=True, conf=True))
    out = []
    for b in r.boxes:
        cls = by_id(int(b.cls))
        out.append({"class_id": cls.id, "category": cls.name, "confidence": round(float(b.conf), 3),
                    "bbox": [round(float(v), 1) for v in b.xyxy[0].tolist()]})
    return out
