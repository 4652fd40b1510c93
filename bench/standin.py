"""A benchmark-only stand-in for the model: instant, with fixed, realistic detections.

`make bench-scale` measures everything but the model: on a GPU the model costs a couple of
milliseconds a photo, and the rest (ingest, the queue, cut-outs, the catalogue's writes,
storage) sets the ceiling. This segmenter answers at once with five garments a photo (about the
4.4 items the shipped model finds on the val photos, before merging), each an irregular outline
of 60-140 vertices with one or two alternative classes, in the photo's own pixels. Everything
after it runs as in production: masks rasterised, cut-outs cropped and encoded as WebP, colours,
hashes, near-duplicate checks, rows and uploads.

It lives in bench/ and is installed by bench/scale_worker.py, or named by WARDROBE_SEGMENTER
(`bench.standin:TimedSegmenter`, with a fixed time per photo: make chaos): the product never loads it.
"""
from __future__ import annotations

import os
import time

import numpy as np

from segmentation.segmenter import Detection

# (class id, confidence, box as fractions of the photo: x1, y1, x2, y2, alternatives)
GARMENTS = (
    (2, 0.91, (0.28, 0.12, 0.72, 0.48), [(7, 0.12)]),               # top (or a shirt)
    (3, 0.84, (0.30, 0.45, 0.70, 0.86), [(8, 0.2), (14, 0.06)]),     # pants (skirt, shorts)
    (0, 0.77, (0.30, 0.86, 0.46, 0.97), []),                          # shoe
    (0, 0.74, (0.52, 0.86, 0.68, 0.97), []),                          # shoe
    (5, 0.58, (0.05, 0.40, 0.26, 0.66), [(17, 0.31)]),               # bag (scarf)
)


def outline(x1: float, y1: float, x2: float, y2: float, seed: int, n: int) -> np.ndarray:
    """An irregular closed outline inside the box: an ellipse with a few harmonics of noise,
    like a traced garment mask (many vertices, concave in places)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1.0
    for k in (2, 3, 5, 7):
        r = r + rng.uniform(0.02, 0.08) * np.sin(k * t + rng.uniform(0, 2 * np.pi))
    r = r / r.max()
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    return np.stack([cx + rx * r * np.cos(t), cy + ry * r * np.sin(t)], 1).astype(np.float32)


class InstantSegmenter:
    """The same five garments on every photo, scaled to its size; no model, no time."""

    version = "bench-standin-1"

    def __init__(self, batch: int = 32):
        self.batch = batch  # photos per "forward pass": a GPU worker's batches
        self._cache: dict[tuple[int, int], list[Detection]] = {}

    def _for(self, w: int, h: int) -> list[Detection]:
        if (w, h) not in self._cache:
            dets = []
            for i, (cls, conf, (fx1, fy1, fx2, fy2), alts) in enumerate(GARMENTS):
                box = (fx1 * w, fy1 * h, fx2 * w, fy2 * h)
                dets.append(Detection(cls, conf, box, [outline(*box, seed=i, n=60 + 20 * i)], list(alts)))
            self._cache[(w, h)] = dets
        return self._cache[(w, h)]

    def segment(self, photos: list[np.ndarray]) -> list[list[Detection]]:
        return [self._for(p.shape[1], p.shape[0]) for p in photos]


class TimedSegmenter(InstantSegmenter):
    """The same garments after a fixed time per photo (BENCH_STANDIN_DELAY_MS): a model as slow on
    every machine, so a fault lands mid-batch."""

    def __init__(self, batch: int = 4):
        super().__init__(batch)
        self.delay = int(os.environ.get("BENCH_STANDIN_DELAY_MS") or 0) / 1000.0

    def segment(self, photos: list[np.ndarray]) -> list[list[Detection]]:
        time.sleep(self.delay * len(photos))
        return super().segment(photos)
