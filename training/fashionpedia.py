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
from training.rings import (MIN_PIECE_AREA_PX, _ring_area, clean_piece, join_pieces,  # noqa: F401 - importers' names
                            mask_to_pieces, rle_pieces, rle_to_mask)

log = logging.getLogger("wardrobe.training")


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
