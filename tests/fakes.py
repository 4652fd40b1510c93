"""Test doubles. The workers the tests start load one by name: WARDROBE_SEGMENTER=tests.fakes:FakeSegmenter
(FAKE_SEGMENTER), its time per photo and load time from WARDROBE_FAKE_DELAY_MS and WARDROBE_FAKE_LOAD_MS
(the fault tests: a slow model, a model slower to load than Celery's 4 s wait for a new pool process)."""
from __future__ import annotations

import os
import time

import numpy as np

from segmentation.segmenter import Detection

FAKE_SEGMENTER = "tests.fakes:FakeSegmenter"


def _env_ms(name: str) -> int:
    return int(os.environ.get(name) or 0)


class FakeSegmenter:
    """Deterministic shapes, no model: for tests of everything around the model."""

    version = "fake-1"

    def __init__(self, delay_ms: int | None = None, load_ms: int | None = None):
        delay_ms = _env_ms("WARDROBE_FAKE_DELAY_MS") if delay_ms is None else delay_ms
        load_ms = _env_ms("WARDROBE_FAKE_LOAD_MS") if load_ms is None else load_ms
        self.delay = delay_ms / 1000.0
        if load_ms:
            time.sleep(load_ms / 1000.0)  # a model's load time (fault tests only)

    def segment(self, photos: list[np.ndarray]) -> list[list[Detection]]:
        out = []
        for p in photos:
            if self.delay:
                time.sleep(self.delay)
            h, w = p.shape[:2]
            t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
            cx, cy, rx, ry = w / 2, h * 0.4, w * 0.25, h * 0.2
            ellipse = np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1).astype(np.float32)
            shoe = np.array([[w * 0.3, h * 0.85], [w * 0.45, h * 0.85], [w * 0.45, h * 0.95], [w * 0.3, h * 0.95]], np.float32)
            out.append(
                [
                    Detection(2, 0.9, (cx - rx, cy - ry, cx + rx, cy + ry), [ellipse]),
                    Detection(0, 0.6, (w * 0.3, h * 0.85, w * 0.45, h * 0.95), [shoe]),
                ]
            )
        return out
