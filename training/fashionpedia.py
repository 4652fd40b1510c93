"""Fashionpedia-format COCO instances -> a YOLO-seg dataset of the 23 catalogue classes.

Categories map by name (the release's ids 0-45 are not the catalogue's ids);
every category outside the taxonomy (garment parts, closures, decorations,
sock, glove, tie, umbrella, ...) is dropped. One label line per instance: an
instance in several pieces is joined into one ring by zero-width bridges, the
way YOLO-seg labels carry multi-part objects.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core import exif
from core.taxonomy import BY_NAME, NAMES

log = logging.getLogger("wardrobe.training")

MIN_PIECE_AREA_PX = 4.0  # pieces smaller than this (in pixels) are noise

# The Fashionpedia release's 46 categories (id, name, supercategory), for writing files it can read.
FASHIONPEDIA_CATEGORIES = (
    (0, 'shirt, blouse', 'upperbody'),
    (1, 'top, t-shirt, sweatshirt', 'upperbody'),
    (2, 'sweater', 'upperbody'),
    (3, 'cardigan', 'upperbody'),
    (4, 'jacket', 'upperbody'),
    (5, 'vest', 'upperbody'),
    (6, 'pants', 'lowerbody'),
    (7, 'shorts', 'lowerbody'),
    (8, 'skirt', 'lowerbody'),
    (9, 'coat', 'wholebody'),
    (10, 'dress', 'wholebody'),
    (11, 'jumpsuit', 'wholebody'),
    (12, 'cape', 'wholebody'),
    (13, 'glasses', 'head'),
    (14, 'hat', 'head'),
    (15, 'headband, head covering, hair accessory', 'head'),
    (16, 'tie', 'neck'),
    (17, 'glove', 'arms and hands'),
    (18, 'watch', 'arms and hands'),
    (19, 'belt', 'waist'),
    (20, 'leg warmer', 'legs and feet'),
    (21, 'tights, stockings', 'legs and feet'),
    (22, 'sock', 'legs and feet'),
    (23, 'shoe', 'legs and feet'),
    (24, 'bag, wallet', 'others'),
    (25, 'scarf', 'others'),
    (26, 'umbrella', 'others'),
    (27, 'hood', 'garment parts'),
    (28, 'collar', 'garment parts'),
    (29, 'lapel', 'garment parts'),
    (30, 'epaulette', 'garment parts'),
    (31, 'sleeve', 'garment parts'),
    (32, 'pocket', 'garment parts'),
    (33, 'neckline', 'garment parts'),
    (34, 'buckle', 'closures'),
    (35, 'zipper', 'closures'),
    (36, 'applique', 'decorations'),
    (37, 'bead', 'decorations'),
    (38, 'bow', 'decorations'),
    (39, 'flower', 'decorations'),
    (40, 'fringe', 'decorations'),
    (41, 'ribbon', 'decorations'),
    (42, 'rivet', 'decorations'),
    (43, 'ruffle', 'decorations'),
    (44, 'sequin', 'decorations'),
    (45, 'tassel', 'decorations'),
)



@dataclass
class ImportStats:
    images: int = 0
    background_images: int = 0
    dropped_images: int = 0
    instances: int = 0
    dropped_categories: Counter = field(default_factory=Counter)
    degenerate: int = 0
    crowd_rle: int = 0
    multi_piece: int = 0
    per_class: Counter = field(default_factory=Counter)
    reoriented: int = 0  # photos whose labels were drawn on the stored pixels (see label_orientation)
    mismatched_images: int = 0  # photos skipped: their labels are for a photo of another shape

    def as_dict(self) -> dict:
        return {
            "images": self.images,
            "background_images": self.background_images,
            "dropped_images": self.dropped_images,
            "instances": self.instances,
            "dropped_categories": dict(self.dropped_categories),
            "degenerate": self.degenerate,
            "crowd_rle": self.crowd_rle,
            "multi_piece": self.multi_piece,
            "reoriented": self.reoriented,
            "mismatched_images": self.mismatched_images,
            "per_class": {NAMES[k]: v for k, v in sorted(self.per_class.items())},
        }


# --- RLE ----------------------------------------------------------------------

def _rle_string_to_counts(s: str) -> list[int]:
    """COCO's compressed RLE string (pycocotools' LEB128-like variant) -> run lengths."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x = 0
        k = 0
        more = True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_to_mask(rle: dict) -> np.ndarray:
    """Decode a COCO RLE (compressed or list counts) to an HxW uint8 mask."""
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, (bytes, str)):
        counts = _rle_string_to_counts(counts.decode() if isinstance(counts, bytes) else counts)
    flat = np.zeros(h * w, dtype=np.uint8)
    pos = 0
    val = 0
    for run in counts:
        if val:
            flat[pos : pos + run] = 1
        pos += run
        val ^= 1
    # COCO RLE runs down columns (Fortran order).
    return flat.reshape((w, h)).T.copy()


def mask_to_pieces(mask: np.ndarray) -> list[np.ndarray]:
    """Outer contours of a binary mask as float (N, 2) arrays in pixel x, y."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(np.float64) for c in contours]


def rle_pieces(rle: dict, width: int, height: int) -> list[np.ndarray]:
    """A COCO RLE's outer contours in the image's pixels (width x height; the RLE may be at another size)."""
    h, w = rle["size"]
    return [piece * (width / w, height / h) for piece in mask_to_pieces(rle_to_mask(rle))]


# --- polygons -------------------------------------------------------------------

def _ring_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def clean_piece(flat_or_points, width: int, height: int) -> np.ndarray | None:
    """A polygon clipped to the image, or None when it is degenerate."""
    p = np.asarray(flat_or_points, dtype=np.float64)
    if p.ndim == 1:
        if p.size < 6 or p.size % 2:
            return None
        p = p.reshape(-1, 2)
    if not np.isfinite(p).all():
        return None
    p[:, 0] = p[:, 0].clip(0, width)
    p[:, 1] = p[:, 1].clip(0, height)
    # drop consecutive duplicates left by clipping
    keep = np.ones(len(p), dtype=bool)
    keep[1:] = np.any(np.diff(p, axis=0) != 0, axis=1)
    p = p[keep]
    if len(p) >= 2 and np.all(p[0] == p[-1]):
        p = p[:-1]
    if len(p) < 3 or _ring_area(p) < MIN_PIECE_AREA_PX:
        return None
    return p


def join_pieces(pieces: list[np.ndarray]) -> np.ndarray:
    """Join rings into one ring with zero-width bridges between nearest points.

    Rings are chained greedily by nearest points. The walk goes out along the
    chain (each middle ring from its entry to its exit), fully around the last
    ring, and back along the same hops (each middle ring from its exit to its
    entry), so every ring is traced once and the bridges enclose no area.
    """
    if len(pieces) == 1:
        return pieces[0]
    order = [0]
    remaining = list(range(1, len(pieces)))
    links: list[tuple[int, int]] = []  # (exit index on order[i], entry index on order[i+1])
    while remaining:
        cur = pieces[order[-1]]
        best = None
        for j in remaining:
            d = ((cur[:, None, :] - pieces[j][None, :, :]) ** 2).sum(-1)
            a, b = np.unravel_index(np.argmin(d), d.shape)
            if best is None or d[a, b] < best[0]:
                best = (d[a, b], j, int(a), int(b))
        _, j, a, b = best
        links.append((a, b))
        order.append(j)
        remaining.remove(j)

    def arc(ring: np.ndarray, a: int, b: int, full: bool = False) -> np.ndarray:
        n = len(ring)
        steps = n if full else (b - a) % n
        return ring[[(a + t) % n for t in range(steps + 1)]]

    fwd = [arc(pieces[order[0]], links[0][0], 0, full=True)]
    back = []
    for i in range(1, len(order) - 1):
        ring, e, x = pieces[order[i]], links[i - 1][1], links[i][0]
        if e == x:
            fwd.append(arc(ring, e, e, full=True))
            back.append(ring[[x]])
        else:
            fwd.append(arc(ring, e, x))
            back.append(arc(ring, x, e))
    fwd.append(arc(pieces[order[-1]], links[-1][1], 0, full=True))
    return np.vstack(fwd + back[::-1])


@dataclass
class Instance:
    class_id: int
    ring: np.ndarray  # (N, 2) pixels


def annotation_to_instance(ann: dict, cat_name: str, width: int, height: int, stats: ImportStats) -> Instance | None:
    cls = BY_NAME.get(cat_name)
    if cls is None:
        stats.dropped_categories[cat_name] += 1
        return None
    seg = ann.get("segmentation")
    pieces: list[np.ndarray] = []
    if isinstance(seg, dict):  # RLE, as Fashionpedia stores crowd regions
        stats.crowd_rle += 1
        raw = rle_pieces(seg, width, height)
    elif isinstance(seg, list):
        raw = seg
    else:
        raw = []
    for r in raw:
        p = clean_piece(r, width, height)
        if p is not None:
            pieces.append(p)
    if not pieces:
        stats.degenerate += 1
        return None
    if len(pieces) > 1:
        stats.multi_piece += 1
        pieces.sort(key=_ring_area, reverse=True)
    return Instance(cls.id, join_pieces(pieces))


# --- EXIF orientation ------------------------------------------------------------------------------
# Training reads photos with cv2, which turns them as their EXIF orientation tag says (so does the
# worker, with Pillow's exif_transpose); a label must be on the photo as shown. Most tools label
# the photo as shown, some label the stored pixels. The label's width and height tell the two apart
# when the tag swaps the axes (orientations 5-8); for the others (mirror, 180°) they cannot, and
# the labels are taken as drawn on the photo as shown.


def orient_points(points: np.ndarray, orientation: int, width: float, height: float) -> np.ndarray:
    """Points (x, y) on a photo's stored pixels (width x height), moved to where they are on the photo
    as shown, as Pillow's exif_transpose turns it (orientation is the EXIF tag's value, 1-8)."""
    x, y = points[:, 0], points[:, 1]
    moved = {
        1: (x, y),
        2: (width - x, y),  # mirrored left to right
        3: (width - x, height - y),  # turned 180°
        4: (x, height - y),  # mirrored top to bottom
        5: (y, x),  # transposed
        6: (height - y, x),  # turned 90° clockwise
        7: (height - y, width - x),  # transversed
        8: (y, width - x),  # turned 90° counter-clockwise
    }[orientation]
    return np.stack(moved, axis=1).astype(points.dtype, copy=False)


def _same_shape(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(a[0] * b[1] - a[1] * b[0]) <= 0.01 * max(a[0] * b[1], a[1] * b[0])


class LabelShapeMismatch(ValueError):
    """Labels whose width:height is neither the photo's as shown nor as stored: they belong to
    another photo or another crop of it."""


def label_orientation(photo: Path, width: int, height: int) -> int:
    """The EXIF orientation to apply to labels sized width x height so that they land on `photo` as
    shown: 1 when they were drawn on it as shown, its tag when drawn on its stored pixels.

    Labels may be for a scaled copy of the photo (only the shape must agree, within 1 %); exact
    sizes are matched first, so a nearly square photo's labels are told apart all the same.
    LabelShapeMismatch for labels of neither shape."""
    with Image.open(photo) as im:
        stored = im.size
        orientation = exif.orientation(im)
    shown = stored[::-1] if orientation in exif.SWAPS_AXES else stored
    for same in (tuple.__eq__, _same_shape):
        if same(shown, (width, height)):
            return 1
        if same(stored, (width, height)):
            return orientation
    raise LabelShapeMismatch(f"{Path(photo).name}: its labels are for a {width}x{height} photo, "
                             f"but the photo is {shown[0]}x{shown[1]}")


def labels_as_shown(photo: Path, rings: list[np.ndarray], width: int, height: int
                    ) -> tuple[list[np.ndarray], int, int, int]:
    """Label rings ((N, 2) points for labels sized width x height) on `photo` as shown: the rings,
    the labels' size as shown, and the orientation applied (1: none). LabelShapeMismatch as
    label_orientation."""
    orientation = label_orientation(photo, width, height)
    if orientation == 1:
        return rings, width, height, 1
    rings = [orient_points(r, orientation, width, height) for r in rings]
    if orientation in exif.SWAPS_AXES:
        width, height = height, width
    return rings, width, height, orientation


def label_lines(instances: list[Instance], width: int, height: int) -> list[str]:
    lines = []
    for inst in instances:
        norm = inst.ring / (width, height)
        norm = norm.clip(0.0, 1.0)
        coords = " ".join(f"{v:.6f}" for v in norm.reshape(-1))
        lines.append(f"{inst.class_id} {coords}")
    return lines


def import_split(
    coco_json: Path,
    images_dir: Path,
    out_dir: Path,
    split: str,
    keep_background: bool = True,
    link: bool = True,
) -> ImportStats:
    """Write out_dir/images/<split>/ and out_dir/labels/<split>/ from one COCO file."""
    data = json.loads(Path(coco_json).read_text())
    cats = {c["id"]: c["name"] for c in data["categories"]}
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)

    img_out = out_dir / "images" / split
    lbl_out = out_dir / "labels" / split
    img_out.mkdir(parents=True, exist_ok=True)
    lbl_out.mkdir(parents=True, exist_ok=True)
    stats = ImportStats()
    for img in data["images"]:
        w, h = int(img["width"]), int(img["height"])
        instances = []
        for ann in by_image.get(img["id"], []):
            inst = annotation_to_instance(ann, cats.get(ann["category_id"], "?"), w, h, stats)
            if inst is not None:
                instances.append(inst)
        if not instances and not keep_background:
            stats.dropped_images += 1
            continue
        src = Path(images_dir) / img["file_name"]
        if not src.exists():
            raise FileNotFoundError(f"{src} is named in {coco_json} but missing")
        try:
            rings, w, h, orientation = labels_as_shown(src, [i.ring for i in instances], w, h)
        except LabelShapeMismatch as e:
            log.warning("skipped: %s", e)
            stats.mismatched_images += 1
            continue
        if orientation != 1:
            stats.reoriented += 1
            instances = [Instance(i.class_id, ring) for i, ring in zip(instances, rings)]
        dst = img_out / Path(img["file_name"]).name
        if not dst.exists():
            if link:
                os.symlink(src.resolve(), dst)
            else:
                shutil.copy2(src, dst)
        (lbl_out / (dst.stem + ".txt")).write_text("\n".join(label_lines(instances, w, h)) + ("\n" if instances else ""))
        stats.images += 1
        stats.instances += len(instances)
        stats.per_class.update(i.class_id for i in instances)
        if not instances:
            stats.background_images += 1
    return stats


def write_data_yaml(out_dir: Path) -> Path:
    lines = [f"path: {Path(out_dir).resolve()}", "train: images/train", "val: images/val", f"nc: {len(NAMES)}", "names:"]
    lines += [f"  {i}: {json.dumps(n)}" for i, n in enumerate(NAMES)]
    path = Path(out_dir) / "data.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def import_dataset(
    train_json: Path,
    val_json: Path,
    images_dir: Path,
    out_dir: Path,
    val_images_dir: Path | None = None,
    keep_background: bool = True,
    link: bool = True,
) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "train": import_split(train_json, images_dir, out_dir, "train", keep_background, link).as_dict(),
        "val": import_split(val_json, val_images_dir or images_dir, out_dir, "val", keep_background, link).as_dict(),
        "data_yaml": str(write_data_yaml(out_dir)),
    }
    (out_dir / "import_report.json").write_text(json.dumps(report, indent=2))
    return report
