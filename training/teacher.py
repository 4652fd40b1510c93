"""The teacher that labels the tagged photos: the served segmenter under test-time augmentation.

Each photo is segmented several times (the input sizes of `SIZES`, each as it is and mirrored) by
the same code the worker serves, so masks are edge-refined as a user's would be. The views'
garments are fused: detections of one class whose masks overlap by IoU >= `FUSE_IOU` are one
garment, its score the sum of its confidences over the number of views (a garment only one view
of four saw scores a quarter of that view's confidence, as in weighted box fusion), its mask the
pixels at least half of its detections cover. A fused garment is kept when its score clears its
class's threshold (`choose_thresholds`, measured on the labelled val photos).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZES = (384, 480)
FUSE_IOU = 0.5
LOW_CONF = 0.1  # what each view keeps; the per-class thresholds decide what is a label


@dataclass
class Garment:
    class_id: int
    score: float
    mask: np.ndarray  # bool, the photo's height x width


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return float(inter / union) if union else 0.0


class Teacher:
    """The shipped weights at each size of `sizes`, through the worker's own segmenter."""

    def __init__(self, weights: str | Path, sizes=SIZES, threads: int = 2):
        from core.config import Settings
        from segmentation.segmenter import YoloSegmenter

        base = Settings.from_env(model=str(weights), segmenter="yolo", backend="pytorch", device="cpu",
                                 conf=LOW_CONF, alternatives_conf=LOW_CONF, threads=threads)
        self.views = [YoloSegmenter(dataclasses.replace(base, imgsz=s)) for s in sizes]
        self.n_views = 2 * len(self.views)

    def detections(self, photo: np.ndarray) -> list[list[tuple[int, float, np.ndarray]]]:
        """Per view: (class, confidence, bool mask at the photo's size)."""
        from segmentation.masks import rasterize

        h, w = photo.shape[:2]
        mirrored = np.ascontiguousarray(photo[:, ::-1])
        out = []
        for seg in self.views:
            for flip, img in ((False, photo), (True, mirrored)):
                dets = seg.segment([img])[0]
                view = []
                for d in dets:
                    m = rasterize(d.polygons, w, h) > 0
                    view.append((d.class_id, d.confidence, m[:, ::-1] if flip else m))
                out.append(view)
        return out

    def garments(self, photo: np.ndarray) -> list[Garment]:
        return fuse(self.detections(photo), self.n_views)


def fuse(views: list[list[tuple[int, float, np.ndarray]]], n_views: int) -> list[Garment]:
    """Cluster the views' detections by class and mask IoU; most confident first."""
    dets = sorted(((c, s, m) for v in views for c, s, m in v), key=lambda d: -d[1])
    clusters: list[dict] = []
    for c, s, m in dets:
        home = next((k for k in clusters if k["cls"] == c and mask_iou(k["seed"], m) >= FUSE_IOU), None)
        if home is None:
            clusters.append({"cls": c, "seed": m, "confs": [s], "votes": m.astype(np.uint16)})
        else:
            home["confs"].append(s)
            home["votes"] += m
    out = []
    for k in clusters:
        mask = k["votes"] * 2 >= len(k["confs"])
        if mask.any():
            out.append(Garment(k["cls"], float(sum(k["confs"]) / n_views), mask))
    return sorted(out, key=lambda g: -g.score)


def match(garments: list[Garment], truth: list[tuple[int, np.ndarray]], iou: float = 0.5,
          pieces: frozenset[int] = frozenset({0}), inside: float = 0.7) -> list[bool]:
    """Whether each garment (most confident first) is a true positive: the same class as an
    unclaimed labelled garment whose mask it overlaps by `iou` or more. Classes in `pieces`
    (footwear: labelled one instance per connected region, so two touching shoes are one label
    while the model finds each) are right when `inside` of the garment lies on that class's labels."""
    claimed = [False] * len(truth)
    hits = []
    for g in garments:
        if g.class_id in pieces:
            union = np.zeros_like(g.mask)
            for c, m in truth:
                if c == g.class_id:
                    union |= m
            area = g.mask.sum()
            hits.append(bool(area) and float(np.logical_and(g.mask, union).sum()) / area >= inside)
            continue
        best, best_j = iou, None
        for j, (c, m) in enumerate(truth):
            if claimed[j] or c != g.class_id:
                continue
            v = mask_iou(g.mask, m)
            if v >= best:
                best, best_j = v, j
        if best_j is not None:
            claimed[best_j] = True
        hits.append(best_j is not None)
    return hits


def choose_thresholds(scored: list[tuple[int, float, bool]], precision: float, min_support: int = 5,
                      floor: float = 0.1) -> dict:
    """Per class, the lowest score at which the garments kept are at least `precision` correct.

    `scored` holds (class, score, correct) for every fused garment on the val photos whose class the
    photo's own labels name (the tag filter, simulated). A class with fewer than `min_support` such
    garments takes the threshold chosen the same way on all classes pooled. A class whose garments
    never reach `precision` gets None (no pseudo-labels of it)."""

    def lowest(rows) -> float | None:
        rows = sorted(rows, key=lambda r: -r[1])
        best = None
        hits = 0
        for i, (_, s, ok) in enumerate(rows, 1):
            hits += ok
            if i < len(rows) and rows[i][1] == s:
                continue  # a threshold at s keeps every garment of score s: judge them together
            if hits / i >= precision and s >= floor:
                best = s
        return best

    pooled = lowest(scored)
    out = {"precision_target": precision, "pooled": pooled, "per_class": {}}
    for c in sorted({r[0] for r in scored}):
        rows = [r for r in scored if r[0] == c]
        t = lowest(rows) if len(rows) >= min_support else pooled
        kept = [r for r in rows if t is not None and r[1] >= t]
        out["per_class"][c] = {
            "threshold": None if t is None else round(float(t), 4),
            "val_garments": len(rows),
            "val_kept": len(kept),
            "val_precision": round(sum(r[2] for r in kept) / len(kept), 4) if kept else None,
            "from": "class" if len(rows) >= min_support else "pooled",
        }
    return out
