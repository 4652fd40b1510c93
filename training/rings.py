"""Masks and rings for YOLO-seg labels: COCO RLE decoded to a mask, a mask traced to polygon pieces,
a piece cleaned (clipped, closed, de-duplicated), and an instance's pieces joined into one ring by
zero-width bridges, the way YOLO-seg labels carry multi-part objects (training.fashionpedia)."""
from __future__ import annotations

import numpy as np

MIN_PIECE_AREA_PX = 4.0  # pieces smaller than this (in pixels) are noise


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
