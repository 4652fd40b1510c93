"""YOLO-seg label files as masks and back, and photos as the model sees them (upright RGB)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def read_yolo_rings(label_file: Path, width: int, height: int) -> list[tuple[int, np.ndarray]]:
    """A YOLO-seg label file's instances as (class, polygon in pixels); none where there is no file."""
    out = []
    if not label_file.exists():
        return out
    for line in label_file.read_text().splitlines():
        parts = line.split()
        if len(parts) < 7:  # a class and at least three points
            continue
        out.append((int(parts[0]), np.asarray(parts[1:], dtype=np.float64).reshape(-1, 2) * (width, height)))
    return out


def read_yolo_masks(label_file: Path, width: int, height: int) -> list[tuple[int, np.ndarray]]:
    """A YOLO-seg label file's instances as (class, bool mask)."""
    from segmentation.masks import rasterize

    return [(c, rasterize([ring], width, height) > 0) for c, ring in read_yolo_rings(label_file, width, height)]


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def label_lines_of(instances: list[tuple[int, np.ndarray]], width: int, height: int) -> list[str]:
    from training.fashionpedia import Instance, clean_piece, join_pieces, label_lines, mask_to_pieces

    kept = []
    for c, m in instances:
        pieces = [p for p in (clean_piece(p, width, height) for p in mask_to_pieces(m)) if p is not None]
        if pieces:
            kept.append(Instance(c, join_pieces(pieces)))
    return label_lines(kept, width, height)
