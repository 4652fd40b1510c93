"""Evaluate weights on a split: the seed's table (seg_loss, cls_loss, Precision(M),
Recall(M), mAP50(M)) plus mAP50-95(M), box metrics and per-class rows."""
from __future__ import annotations

import json
import math
from pathlib import Path

from segmentation.card import serve_imgsz
from segmentation.runtime import prepare_ultralytics


def _card_imgsz(weights: str | Path) -> int | None:
    from segmentation.card import read_card

    return serve_imgsz(weights) if read_card(weights) else None


def _count_images(data: str | Path, split: str) -> int | None:
    from ultralytics.data.utils import check_det_dataset

    try:
        folder = Path(check_det_dataset(str(data))[split])
        return sum(1 for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".bmp"})
    except Exception:  # noqa: BLE001 - a list file or an odd layout: leave the count out
        return None


def val_losses(weights: str | Path, data: str | Path, imgsz: int, split: str, batch: int, device: str) -> dict:
    """Mean validation losses per image, computed as training's validation does (model in eval mode)."""
    import torch
    from ultralytics import YOLO
    from ultralytics.cfg import get_cfg
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.models.yolo.segment import SegmentationValidator

    model = YOLO(str(weights)).model.float().eval().to(device)
    model.args = get_cfg(overrides={k: v for k, v in (model.args or {}).items() if k in ("box", "cls", "dfl")})
    model.criterion = None
    v = SegmentationValidator(args=dict(data=str(data), imgsz=imgsz, batch=batch, split=split, device=device, plots=False))
    v.data = check_det_dataset(str(data))
    v.device = torch.device(device)
    v.args.half = False
    loader = v.get_dataloader(v.data.get(split), batch)
    totals: dict[str, float] = {}
    n = 0
    with torch.inference_mode():
        for b in loader:
            b = v.preprocess(b)
            _, items = model.loss(b)
            if not isinstance(items, dict):
                names = ("box_loss", "seg_loss", "cls_loss", "dfl_loss", "sem_loss")
                items = dict(zip(names, items.tolist()))
            for k, val in items.items():
                key = k if k.endswith("_loss") else f"{k}_loss"
                totals[key] = totals.get(key, 0.0) + float(val)
            n += 1
    return {k: round(v / max(1, n), 5) for k, v in totals.items()}


def evaluate(weights: str | Path, data: str | Path, imgsz: int | None = None, split: str = "val",
             device: str | None = None, batch: int = 8, with_losses: bool = True) -> dict:
    prepare_ultralytics()
    from ultralytics import YOLO

    from training.train import pick_device

    device = device or pick_device()
    device = "cuda:0" if device == "0" else device
    imgsz = imgsz or _card_imgsz(weights) or 640
    model = YOLO(str(weights), task="segment")
    m = model.val(data=str(data), imgsz=imgsz, split=split, batch=batch, device=device, plots=False, verbose=False,
                  half=device.startswith("cuda"), conf=0.001, iou=0.7)
    names = model.names
    seg, box = m.seg, m.box
    per_class = []
    for i, c in enumerate(m.ap_class_index):
        per_class.append({
            "class_id": int(c), "name": names[int(c)],
            "instances": int(m.nt_per_class[int(c)]) if getattr(m, "nt_per_class", None) is not None else None,
            "precision_m": round(float(seg.p[i]), 4), "recall_m": round(float(seg.r[i]), 4),
            "map50_m": round(float(seg.ap50[i]), 4), "map50_95_m": round(float(seg.ap[i]), 4),
        })
    report = {
        "weights": str(weights),
        "data": str(data),
        "split": split,
        "imgsz": imgsz,
        "device": device,
        "images": _count_images(data, split),
        "precision_m": round(float(seg.mp), 4),
        "recall_m": round(float(seg.mr), 4),
        "map50_m": round(float(seg.map50), 4),
        "map50_95_m": round(float(seg.map), 4),
        "precision_b": round(float(box.mp), 4),
        "recall_b": round(float(box.mr), 4),
        "map50_b": round(float(box.map50), 4),
        "map50_95_b": round(float(box.map), 4),
        "per_class": per_class,
    }
    if with_losses:
        report.update(val_losses(weights, data, imgsz, split, batch, device))
    return report


def print_table(r: dict) -> None:
    def f(v):
        return "   n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.3f}"

    print(f"{r['weights']} on {r['split']} ({r.get('images')} images, imgsz {r['imgsz']}, {r['device']})")
    print(f"{'seg_loss':>8} {'cls_loss':>8} {'P(M)':>6} {'R(M)':>6} {'mAP50(M)':>8} {'mAP50-95(M)':>11}")
    print(f"{f(r.get('seg_loss')):>8} {f(r.get('cls_loss')):>8} {f(r['precision_m'])} {f(r['recall_m'])} "
          f"{f(r['map50_m']):>8} {f(r['map50_95_m']):>11}")
    print(f"\n{'class':<40} {'inst':>5} {'P(M)':>6} {'R(M)':>6} {'mAP50(M)':>8} {'mAP50-95(M)':>11}")
    for c in r["per_class"]:
        print(f"{c['name']:<40} {c['instances'] if c['instances'] is not None else '':>5} {f(c['precision_m'])} "
              f"{f(c['recall_m'])} {f(c['map50_m']):>8} {f(c['map50_95_m']):>11}")
