"""From the model's masks to garment outlines in photo pixels: edge refinement and one item per garment.

The model predicts masks at a quarter of its input size (80 x 80 prototypes at imgsz 320), so
traced as they come their edges are blocky at a photo's resolution. Each mask is instead
resampled into the photo's pixels around its garment and refined there with a guided filter
(He, Sun and Tang, "Guided Image Filtering", ECCV 2010), which snaps the soft edge to the
photo's own edges; the polygons are traced from that refined mask, so the API's outline and the
cut-out's alpha (drawn from the polygons) agree.

The guided filter is written here with OpenCV box filters (a few lines): the kept implementation,
`cv2.ximgproc.guidedFilter`, is in opencv-contrib, whose wheel installs the same `cv2` package as
the opencv-python that Ultralytics requires, and the two cannot be installed side by side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How the photo sits in the model's input: input = photo * gain + pad on each axis. Ultralytics'
    LetterBox resizes the photo to whole pixels, each side rounded, and centres it; its scale_boxes
    maps boxes back the same way, so masks and boxes agree."""

    gain_x: float
    gain_y: float
    pad_x: int
    pad_y: int

    @classmethod
    def of(cls, input_hw: tuple[int, int], photo_hw: tuple[int, int]) -> "Letterbox":
        gain = min(input_hw[0] / photo_hw[0], input_hw[1] / photo_hw[1])
        new_h, new_w = (max(round(side * gain), 1) for side in photo_hw)
        return cls(new_w / photo_hw[1], new_h / photo_hw[0],
                   round((input_hw[1] - new_w) / 2 - 0.1), round((input_hw[0] - new_h) / 2 - 0.1))


def resample(mask: np.ndarray, box: Letterbox, x1: int, y1: int, w: int, h: int) -> np.ndarray:
    """The model-input-resolution mask (float) sampled bilinearly at the centres of the photo's
    pixels x1..x1+w, y1..y1+h: a soft mask in [0, 1] at photo resolution."""
    gx, gy = box.gain_x, box.gain_y
    m = np.float32([[gx, 0, gx * (x1 + 0.5) + box.pad_x - 0.5], [0, gy, gy * (y1 + 0.5) + box.pad_y - 0.5]])
    return cv2.warpAffine(mask.astype(np.float32, copy=False), m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Grey-level guided filter: `src` smoothed so that its edges follow `guide`'s (both float32
    in [0, 1], same shape)."""
    k = (2 * radius + 1, 2 * radius + 1)

    def box(x):
        return cv2.boxFilter(x, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(src)
    cov_ip = box(guide * src) - mean_i * mean_p
    var_i = box(guide * guide) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def refined_mask(photo_grey: np.ndarray, mask: np.ndarray, box: Letterbox, bbox, radius: int, eps: float,
                 ) -> tuple[np.ndarray, int, int]:
    """The garment's mask in photo pixels, edge-refined, over the region around its box.
    Returns (bool mask, x1, y1): the region's mask and its top-left corner in the photo."""
    ph, pw = photo_grey.shape[:2]
    margin = 2 * radius + 2
    x1 = max(0, math.floor(bbox[0]) - margin)
    y1 = max(0, math.floor(bbox[1]) - margin)
    x2 = min(pw, math.ceil(bbox[2]) + margin)
    y2 = min(ph, math.ceil(bbox[3]) + margin)
    soft = resample(mask, box, x1, y1, x2 - x1, y2 - y1)
    if radius > 0:
        guide = photo_grey[y1:y2, x1:x2]
        soft = guided_filter(guide, soft, radius, eps)
    return soft > 0.5, x1, y1


def trace(mask: np.ndarray, x1: int, y1: int, min_area: float, epsilon: float = 1.0) -> list[np.ndarray]:
    """Outer contours of a bool mask as polygons in photo pixels (the region starts at x1, y1), in
    the convention the cut-outs and the API draw them with: a vertex (i, j) is pixel (i, j)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        if cv2.contourArea(c) < min_area:
            continue
        c = cv2.approxPolyDP(c, epsilon, True).reshape(-1, 2).astype(np.float32)
        if len(c) >= 3:
            out.append(c + np.float32([x1, y1]))
    return out


def mask_polygons(mask: np.ndarray, box: Letterbox, photo_hw: tuple[int, int], min_area: float = 6.0,
                  epsilon: float = 0.7) -> list[np.ndarray]:
    """Outer contours of one model-resolution mask, unrefined, mapped into photo pixels as Ultralytics'
    scale_coords maps them (the letterbox undone, clipped to the photo)."""
    out = []
    for c in trace(mask, 0, 0, min_area, epsilon):
        c[:, 0] = ((c[:, 0] - box.pad_x) / np.float32(box.gain_x)).clip(0, photo_hw[1])
        c[:, 1] = ((c[:, 1] - box.pad_y) / np.float32(box.gain_y)).clip(0, photo_hw[0])
        out.append(c)
    return out


def rasterize(polygons: list[np.ndarray], width: int, height: int, offset: tuple[int, int] = (0, 0),
              scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Polygons -> uint8 mask (0/255) of width x height, shifted by -offset, then scaled. OpenCV's
    filler with 4 fractional bits keeps the sub-pixel vertices and is ~10x faster than PIL's ImageDraw."""
    mask = np.zeros((height, width), np.uint8)
    ox, oy = offset
    sx, sy = scale
    pts = [np.rint((np.asarray(p, dtype=np.float64) - (ox, oy)) * (sx * 16, sy * 16)).astype(np.int32)
           for p in polygons if len(p) >= 3]
    if pts:
        cv2.fillPoly(mask, pts, 255, lineType=cv2.LINE_8, shift=4)
    return mask
