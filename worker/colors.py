"""Dominant colours of a garment, from its masked pixels only, with human names.

Runs once per garment on the worker's post-processing thread, beside the model on the
same cores, so it is kept to about a millisecond: a small nearest-neighbour thumbnail
(real pixel values), a lookup table for the sRGB curve, and OpenCV's k-means.
"""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from core.palette import COLOR_NAMES, PALETTE

# sRGB 0-255 -> linear light, for every byte value: the power curve once, not per pixel
_LINEAR = np.array([(v / 255.0) / 12.92 if v / 255.0 <= 0.04045 else ((v / 255.0 + 0.055) / 1.055) ** 2.4
                    for v in range(256)], dtype=np.float32)
_XYZ = (np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
        / np.array([[0.95047], [1.0], [1.08883]])).T.astype(np.float32)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) sRGB 0-255 -> CIE Lab (D65), float32."""
    idx = np.clip(np.rint(np.asarray(rgb, dtype=np.float64)), 0, 255).astype(np.intp)
    xyz = _LINEAR[idx] @ _XYZ
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116).astype(np.float32)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


_PALETTE_LAB = srgb_to_lab(np.array(list(PALETTE.values())))


def _nearest_names(rgb: np.ndarray) -> list[str]:
    lab = srgb_to_lab(np.asarray(rgb).reshape(-1, 3))
    d = ((lab[:, None, :] - _PALETTE_LAB[None]) ** 2).sum(-1)
    return [COLOR_NAMES[int(i)] for i in d.argmin(1)]


def name_of(rgb) -> str:
    return _nearest_names(np.asarray(rgb))[0]


def small_rgba(rgba: np.ndarray, side: int = 32) -> np.ndarray:
    """A nearest-neighbour thumbnail: real pixel values (no blending with the transparent
    background), at most side x side of them, which is all colours and hashes need."""
    h, w = rgba.shape[:2]
    if max(h, w) <= side:
        return rgba
    scale = side / max(h, w)
    ys = ((np.arange(max(1, round(h * scale))) + 0.5) / scale).astype(np.intp).clip(0, h - 1)
    xs = ((np.arange(max(1, round(w * scale))) + 0.5) / scale).astype(np.intp).clip(0, w - 1)
    return rgba[ys[:, None], xs[None, :]]


def dominant_colors(rgba: np.ndarray, k: int = 3, max_pixels: int = 1024, seed: int = 0) -> list[dict]:
    """k-means in Lab over the opaque pixels; clusters by share, largest first. Deterministic:
    OpenCV's k-means++ draws from its thread's RNG, which is seeded for every call."""
    rgba = small_rgba(rgba)
    px = rgba[..., :3][rgba[..., 3] > 127]
    if len(px) == 0:
        return []
    if len(px) > max_pixels:
        px = px[np.random.default_rng(seed).choice(len(px), max_pixels, replace=False)]
    lab = np.ascontiguousarray(srgb_to_lab(px), dtype=np.float32)
    k = min(k, len(px))
    cv2.setRNGSeed(seed)
    _, labels, _ = cv2.kmeans(lab, k, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 0.5), 1,
                              cv2.KMEANS_PP_CENTERS)
    assign = labels.reshape(-1)
    counts = np.bincount(assign, minlength=k)
    found = [j for j in range(k) if counts[j]]
    medians = np.array([np.median(px[assign == j], axis=0) for j in found]).round().astype(int)
    names = _nearest_names(medians)
    shares: dict[str, list] = {}  # fewer distinct colours than k: clusters that came out the same merge
    for j, rgb, name in zip(found, medians, names):
        key = "#{:02x}{:02x}{:02x}".format(*rgb)
        shares.setdefault(key, [name, 0])[1] += int(counts[j])
    out = [{"hex": key, "name": name, "fraction": round(n / len(px), 3)} for key, (name, n) in shares.items()]
    out.sort(key=lambda c: -c["fraction"])
    return out


def dhash(rgba: np.ndarray, size: int = 8) -> int:
    """64-bit difference hash of the cut-out over neutral grey: near-identical cut-outs land close."""
    rgba = small_rgba(rgba, 4 * size)
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    grey = (rgba[..., :3].astype(np.float32) * a + 128.0 * (1 - a)).mean(axis=2)
    small = np.asarray(Image.fromarray(grey.astype(np.uint8), "L").resize((size + 1, size), Image.Resampling.BILINEAR),
                       dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int((bits.astype(np.uint64) << np.arange(bits.size, dtype=np.uint64)).sum())


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")
