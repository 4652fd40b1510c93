"""Dominant colours of a garment, from its masked pixels only, with human names."""
from __future__ import annotations

import numpy as np

from db.palette import COLOR_NAMES, PALETTE



def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) sRGB 0-255 -> CIE Lab (D65)."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


_PALETTE_LAB = srgb_to_lab(np.array(list(PALETTE.values())))


def name_of(rgb) -> str:
    lab = srgb_to_lab(np.asarray(rgb, dtype=np.float64).reshape(1, 3))
    return COLOR_NAMES[int(np.argmin(((_PALETTE_LAB - lab) ** 2).sum(1)))]


def small_rgba(rgba: np.ndarray, side: int = 64) -> np.ndarray:
    """A nearest-neighbour thumbnail: real pixel values (no blending with the transparent
    background), a few thousand of them, which is all colours and hashes need."""
    from PIL import Image

    h, w = rgba.shape[:2]
    if max(h, w) <= side:
        return rgba
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgba, "RGBA").resize(size, Image.Resampling.NEAREST))


def dominant_colors(rgba: np.ndarray, k: int = 3, max_pixels: int = 4000, seed: int = 0) -> list[dict]:
    """k-means in Lab over the opaque pixels; clusters by share, largest first."""
    rgba = small_rgba(rgba)
    px = rgba[..., :3][rgba[..., 3] > 127]
    if len(px) == 0:
        return []
    rng = np.random.default_rng(seed)
    if len(px) > max_pixels:
        px = px[rng.choice(len(px), max_pixels, replace=False)]
    lab = srgb_to_lab(px)
    k = min(k, len(px))
    # k-means++ seeding, then a few Lloyd steps: cheap at a few thousand points
    centres = [lab[rng.integers(len(lab))]]
    for _ in range(1, k):
        d = np.min([((lab - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(lab[rng.choice(len(lab), p=d / d.sum())] if d.sum() > 0 else lab[rng.integers(len(lab))])
    centres = np.array(centres)
    for _ in range(10):
        assign = np.argmin(((lab[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        new = np.array([lab[assign == j].mean(0) if np.any(assign == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres, atol=0.5):
            break
        centres = new
    out = []
    for j in range(k):
        members = px[assign == j]
        if len(members) == 0:
            continue
        rgb = np.median(members, axis=0).round().astype(int)
        out.append({"hex": "#{:02x}{:02x}{:02x}".format(*rgb), "name": name_of(rgb),
                    "fraction": round(len(members) / len(px), 3)})
    out.sort(key=lambda c: -c["fraction"])
    return out


def dhash(rgba: np.ndarray, size: int = 8) -> int:
    """64-bit difference hash of the cut-out over neutral grey: near-identical cut-outs land close."""
    from PIL import Image

    rgba = small_rgba(rgba, 4 * size)
    rgb = rgba[..., :3].astype(np.float64)
    a = rgba[..., 3:4].astype(np.float64) / 255.0
    grey = (rgb * a + 128.0 * (1 - a)).mean(axis=2)
    small = np.asarray(Image.fromarray(grey.astype(np.uint8), "L").resize((size + 1, size), Image.Resampling.BILINEAR),
                       dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hamming(a: int, b: int) -> int:
    return bin(a ^ b).count("1")
