"""The catalogue as a user sees it, scored against labelled garments.

Per photo, the catalogue's items are matched to the labelled garments greedily by mask IoU
(highest first, one item per garment, IoU >= 0.5), both rasterised at the stored photo's size.
From the matches:

- found: garments with a matched item (any class), over all garments;
- right class: garments whose matched item has the garment's class;
- extra items: items that match no garment and overlap none that was found (IoU < 0.5);
- second items: unmatched items with IoU >= 0.5 on a garment another item already matched;
- mask IoU and boundary F of the matched pairs.

One deviation from strict one-to-one matching, for a fault of the labels: CCP marks pixels, not
objects, so two shoes that touch are one labelled region, while the product rightly gives a left
and a right shoe as two items. Shoe items lying mostly (half their area or more) on the same
labelled shoe region are joined into one before matching; `joined` counts them. Without this a
correct pair scores as one found shoe and one "second item" (or, when each half has IoU < 0.5,
as two extra items and a missed shoe). Boundary F (Perazzi et al., DAVIS 2016) is the
  F-score of the two masks' boundary pixels, each counted as hit when the other boundary lies
  within `tolerance` pixels: how closely the cut-out's edge follows the garment's.

Pure NumPy/OpenCV: no model, no services, so the figures can be checked by hand in tests.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.taxonomy import BY_NAME, NAMES
from segmentation.masks import rasterize

MATCH_IOU = 0.5
BOUNDARY_TOLERANCE_PX = 2
JOIN_CLASSES = (0,)  # shoe: labelled per connected region, so a touching pair is one garment in the labels
JOIN_INSIDE = 0.5
# Items of one region overlapping each other this much are one shoe found twice, not a left and a
# right: they are not joined, so the second counts as a second item
JOIN_APART = 0.3


@dataclass
class Garment:
    class_id: int
    mask: np.ndarray  # bool, the stored photo's height x width


@dataclass
class Found:
    class_id: int
    confidence: float
    mask: np.ndarray


@dataclass
class PhotoScore:
    garments: int
    items: int
    matches: list[tuple[int, int, float, float]] = field(default_factory=list)  # garment, item, IoU, boundary F
    extra: int = 0
    second: int = 0
    joined: int = 0  # items joined with another on one labelled region (JOIN_CLASSES) before matching
    garment_classes: list[int] = field(default_factory=list)
    item_classes: list[int] = field(default_factory=list)
    # per item: confidence, right|wrong_class|second|extra, its class
    outcomes: list[tuple[float, str, int]] = field(default_factory=list)


def rasterize_polygons(polygons, width: int, height: int, scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Polygons ([[x, y], ...] or flat [x1, y1, x2, ...] rings) -> bool mask, scaled by `scale`:
    drawn exactly as the worker draws a cut-out's alpha (segmentation.masks.rasterize)."""
    rings = [np.asarray(ring, dtype=np.float64).reshape(-1, 2) for ring in polygons]
    return rasterize(rings, width, height, scale=scale) > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.count_nonzero(a & b)
    if not inter:
        return 0.0
    return inter / float(np.count_nonzero(a | b))


def boundary(mask: np.ndarray) -> np.ndarray:
    """The mask's own edge pixels: in the mask, with a 4-neighbour outside it (or the image edge)."""
    m = mask.astype(np.uint8)
    eroded = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m & (1 - eroded)).astype(bool)


def boundary_f(pred: np.ndarray, gt: np.ndarray, tolerance: float = BOUNDARY_TOLERANCE_PX) -> float:
    bp, bg = boundary(pred), boundary(gt)
    n_p, n_g = np.count_nonzero(bp), np.count_nonzero(bg)
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    # distance from every pixel to the nearest boundary pixel of the other mask
    to_gt = cv2.distanceTransform((~bg).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    to_pred = cv2.distanceTransform((~bp).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    precision = np.count_nonzero(to_gt[bp] <= tolerance) / n_p
    recall = np.count_nonzero(to_pred[bg] <= tolerance) / n_g
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def join_on_labels(garments: list[Garment], items: list[Found]) -> tuple[list[Found], int]:
    """Items of JOIN_CLASSES that lie mostly on one labelled region of their class, and apart from
    each other, become one item (union mask, best confidence); returns the items and how many were
    folded into others."""
    items = list(items)
    joined = 0
    for g in garments:
        if g.class_id not in JOIN_CLASSES:
            continue
        lying = [k for k, it in enumerate(items) if it.class_id == g.class_id
                 and np.count_nonzero(it.mask) and np.count_nonzero(it.mask & g.mask) >= JOIN_INSIDE * np.count_nonzero(it.mask)]
        on: list[int] = []
        for k in sorted(lying, key=lambda k: -items[k].confidence):
            if all(iou(items[k].mask, items[j].mask) < JOIN_APART for j in on):
                on.append(k)
        if len(on) < 2:
            continue
        union = np.logical_or.reduce([items[k].mask for k in on])
        merged = Found(g.class_id, max(items[k].confidence for k in on), union)
        items = [it for k, it in enumerate(items) if k not in on] + [merged]
        joined += len(on) - 1
    return items, joined


def score_photo(garments: list[Garment], items: list[Found], tolerance: float = BOUNDARY_TOLERANCE_PX) -> PhotoScore:
    n_items = len(items)
    items, joined = join_on_labels(garments, items)
    ious = np.array([[iou(g.mask, it.mask) for it in items] for g in garments]).reshape(len(garments), len(items))
    score = PhotoScore(len(garments), n_items, joined=joined, garment_classes=[g.class_id for g in garments],
                       item_classes=[it.class_id for it in items])
    taken_g: set[int] = set()
    taken_i: set[int] = set()
    # greedy by IoU, highest first; ties broken by the item's confidence, then order
    pairs = sorted(((ious[gi, ii], items[ii].confidence, -gi, -ii) for gi in range(len(garments))
                    for ii in range(len(items)) if ious[gi, ii] >= MATCH_IOU), reverse=True)
    for value, _conf, ngi, nii in pairs:
        gi, ii = -ngi, -nii
        if gi in taken_g or ii in taken_i:
            continue
        taken_g.add(gi)
        taken_i.add(ii)
        score.matches.append((gi, ii, float(value), boundary_f(items[ii].mask, garments[gi].mask, tolerance)))
    matched = {ii: gi for gi, ii, _, _ in score.matches}
    for ii in range(len(items)):
        if ii in matched:
            right = garments[matched[ii]].class_id == items[ii].class_id
            score.outcomes.append((items[ii].confidence, "right" if right else "wrong_class", items[ii].class_id))
            continue
        if any(ious[gi, ii] >= MATCH_IOU for gi in taken_g):
            score.second += 1
            score.outcomes.append((items[ii].confidence, "second", items[ii].class_id))
        else:
            score.extra += 1
            score.outcomes.append((items[ii].confidence, "extra", items[ii].class_id))
    return score


CONFIDENCE_BANDS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.01)


def by_confidence(scores: list[PhotoScore]) -> list[dict]:
    """How often an item is right (found garment, right class) by its confidence: what a review
    threshold should be drawn from."""
    rows = []
    for lo, hi in zip(CONFIDENCE_BANDS, CONFIDENCE_BANDS[1:]):
        band = [o for s in scores for c, o, _cls in s.outcomes if lo <= c < hi]
        if band:
            rows.append({"from": lo, "to": min(hi, 1.0), "items": len(band),
                         "right": round(sum(o == "right" for o in band) / len(band), 4)})
    return rows


def summarise(scores: list[PhotoScore]) -> dict:
    """The six figures, per-class found and right class, and items per photo."""
    n_photos = len(scores)
    garments = sum(s.garments for s in scores)
    items = sum(s.items for s in scores)
    matches = [(s, m) for s in scores for m in s.matches]
    right = sum(1 for s, (gi, ii, _, _) in matches if s.garment_classes[gi] == s.item_classes[ii])
    per_class = {}
    for cid, name in enumerate(NAMES):
        n = sum(c == cid for s in scores for c in s.garment_classes)
        if not n:
            continue
        f = sum(1 for s, (gi, _ii, _, _) in matches if s.garment_classes[gi] == cid)
        r = sum(1 for s, (gi, ii, _, _) in matches if s.garment_classes[gi] == cid and s.item_classes[ii] == cid)
        bf = [m[3] for s, m in matches if s.garment_classes[m[0]] == cid]
        per_class[name] = {"class_id": cid, "garments": n, "found": round(f / n, 4), "right_class": round(r / n, 4),
                           "boundary_f": round(float(np.mean(bf)), 4) if bf else None}
    for cid, name in enumerate(NAMES):  # items of a class matching no garment, per 100 photos
        extra = sum(1 for s in scores for _c, o, k in s.outcomes if o == "extra" and k == cid)
        if extra:
            per_class.setdefault(name, {"class_id": cid, "garments": 0, "found": None, "right_class": None,
                                        "boundary_f": None})["extra_per_100_photos"] = round(100 * extra / n_photos, 1)

    def ratio(a, b):
        return round(a / b, 4) if b else None

    return {
        "photos": n_photos,
        "garments": garments,
        "items": items,
        "found": ratio(len(matches), garments),
        "right_class": ratio(right, garments),
        "extra_items_per_photo": ratio(sum(s.extra for s in scores), n_photos),
        "second_items_per_photo": ratio(sum(s.second for s in scores), n_photos),
        "mask_iou": round(float(np.mean([m[2] for _, m in matches])), 4) if matches else None,
        "boundary_f": round(float(np.mean([m[3] for _, m in matches])), 4) if matches else None,
        "items_per_photo": ratio(items, n_photos),
        "joined_items": sum(s.joined for s in scores),
        "right_by_confidence": by_confidence(scores),
        "per_class": per_class,
    }


FIGURES = (
    ("found", "garments found (an item with mask IoU >= 0.5, any class)"),
    ("right_class", "garments found with the right class"),
    ("extra_items_per_photo", "items matching no garment, per photo"),
    ("second_items_per_photo", "second items on a garment already found, per photo"),
    ("mask_iou", "mask IoU of found garments"),
    ("boundary_f", f"boundary F-score of found garments ({BOUNDARY_TOLERANCE_PX} px tolerance)"),
    ("items_per_photo", "items per photo"),
)


def print_report(report: dict, out=None) -> None:
    import sys

    out = out or sys.stdout
    print(f"{report['photos']} photos, {report['garments']} labelled garments, {report['items']} catalogue items", file=out)
    for key, label in FIGURES:
        v = report.get(key)
        shown = "-" if v is None else (f"{100 * v:.1f} %" if key in ("found", "right_class") else f"{v:.3f}")
        print(f"  {label:<62} {shown:>8}", file=out)
    if report.get("joined_items"):
        print(f"  {'shoe items joined on one labelled region (touching pair)':<62} {report['joined_items']:>8}", file=out)
    if report.get("seconds") is not None:
        print(f"  {'seconds, upload to last item':<62} {report['seconds']:>8.1f}", file=out)
    if report.get("right_by_confidence"):
        print("\n  items right (found garment, right class) by confidence:", file=out)
        print("  " + "  ".join(f"{b['from']:.1f}-{b['to']:.1f}: {100 * b['right']:.0f}% of {b['items']}"
                               for b in report["right_by_confidence"]), file=out)
    print(f"\n  {'class':<40} {'garments':>8} {'found':>7} {'right':>7} {'edge F':>7} {'extra/100':>9}", file=out)

    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    for name, c in report["per_class"].items():
        bf = "-" if c.get("boundary_f") is None else f"{c['boundary_f']:.3f}"
        print(f"  {name:<40} {c['garments']:>8} {pct(c['found']):>7} {pct(c['right_class']):>7} {bf:>7} "
              f"{c.get('extra_per_100_photos', 0):>9}", file=out)
    alone = report.get("alone")
    if alone:
        print(f"\n  garments photographed alone ({alone['photos']} synthesized from val): most confident item of the "
              f"right kind {pct(alone['top_right_kind'])}, no item {pct(alone['no_item'])}, "
              f"extra items {alone['extra_items_per_photo']:.2f} a photo", file=out)


def summarise_alone(scores: list[PhotoScore], items: list[list[Found]], garments: list[list[Garment]]) -> dict:
    """Photos of garments on their own: is the most confident item of the right kind (the
    supercategory of the garment it lies on most, IoU >= 0.3), how often is there no item at all,
    and extra items a photo."""
    from core.taxonomy import CLASSES

    right = none = 0
    for found, truth in zip(items, garments):
        if not found:
            none += 1
            continue
        top = max(found, key=lambda f: f.confidence)
        overlap = [(iou(top.mask, g.mask), g) for g in truth]
        best = max(overlap, key=lambda t: t[0], default=(0.0, None))
        if best[1] is not None and best[0] >= 0.3 and \
                CLASSES[best[1].class_id].supercategory == CLASSES[top.class_id].supercategory:
            right += 1
    n = max(1, len(items))
    return {"photos": len(items), "top_right_kind": round(right / n, 4), "no_item": round(none / n, 4),
            "extra_items_per_photo": round(sum(s.extra for s in scores) / n, 3)}


# --- labels in Fashionpedia (COCO instances) format ------------------------------------------------


@dataclass
class LabelledPhoto:
    file_name: str
    width: int
    height: int
    garments: list[tuple[int, list]]  # (class id, polygons as flat rings) in the label's pixels


def load_labels(path: str | Path, images_dir: str | Path | None = None) -> dict[str, LabelledPhoto]:
    """Labelled photos by file name, with only the 23 catalogue classes (other categories dropped).

    With `images_dir`, labels drawn on a photo's stored pixels are turned as its EXIF tag turns the
    photo (the worker's items are on the photo as shown), as the importer does for training."""
    data = json.loads(Path(path).read_text())
    cats = {c["id"]: c["name"] for c in data["categories"]}
    photos = {im["id"]: LabelledPhoto(Path(im["file_name"]).name, im["width"], im["height"], []) for im in data["images"]}
    for ann in data["annotations"]:
        cls = BY_NAME.get(cats.get(ann["category_id"], ""))
        seg = ann.get("segmentation")
        if cls is None:
            continue
        photo = photos[ann["image_id"]]
        if isinstance(seg, dict):  # RLE (Fashionpedia's crowd regions): a garment the model is trained on too
            seg = _rle_rings(seg, photo.width, photo.height)
        if isinstance(seg, list) and seg:
            photo.garments.append((cls.id, seg))
    if images_dir is not None:
        for photo in photos.values():
            _as_shown(photo, Path(images_dir) / photo.file_name)
    return {p.file_name: p for p in photos.values()}


def _as_shown(photo: LabelledPhoto, path: Path) -> None:
    from training.fashionpedia import labels_as_shown

    if not path.exists():
        return  # not among the photos measured
    rings = [np.asarray(ring, float).reshape(-1, 2) for _, polys in photo.garments for ring in polys]
    rings, photo.width, photo.height, orientation = labels_as_shown(path, rings, photo.width, photo.height)
    if orientation == 1:
        return
    shown = iter(rings)  # in the order they were taken: garment by garment
    photo.garments = [(cid, [next(shown).ravel().tolist() for _ in polys]) for cid, polys in photo.garments]


def _rle_rings(rle: dict, width: int, height: int) -> list[list[float]]:
    """A COCO RLE as flat rings in the label's pixels, as the importer turns it into training labels."""
    from training.rings import rle_pieces

    return [piece.ravel().tolist() for piece in rle_pieces(rle, width, height) if len(piece) >= 3]


def garments_at(photo: LabelledPhoto, width: int, height: int) -> list[Garment]:
    """The photo's labelled garments rasterised at (width, height): the stored photo's size."""
    scale = (width / photo.width, height / photo.height)
    return [Garment(cid, rasterize_polygons(polys, width, height, scale)) for cid, polys in photo.garments]
