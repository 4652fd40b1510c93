"""Synthesized photos of garments on their own: laid on a bed, on a hanger, against a wall.

Every labelled photo shows garments worn by a person, so a garment photographed alone looks like
nothing the model has seen. Each synthesized photo takes one garment (sometimes two or three, as
on a bed) cut out of a labelled photo with its own mask and pastes it on a background, at a
random scale, rotation and perspective, with a soft shadow; its mask, moved the same way, is its
label (a garment pasted over another hides that part of it).

Backgrounds are of three kinds: plain (a wall or a sheet: one colour, a gentle gradient, noise),
textured (wood-like grain or a woven pattern, drawn here) and indoor-like (the part of a labelled
photo beside the person, with no garment in it, blurred and stretched). A split's garments come
only from that split's photos, so a validation set made from val never shares a garment with
training.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from core.taxonomy import BY_NAME

# garments people photograph alone; accessories worn on the body (glasses, watch, belt) rarely are
ALONE_WEIGHTS = {c.name: 1.0 for c in BY_NAME.values()}
ALONE_WEIGHTS.update({"glasses": 0.2, "watch": 0.2, "belt": 0.4, "tights, stockings": 0.3,
                      "headband, head covering, hair accessory": 0.3, "shoe": 0.6})
MIN_AREA_SHARE = 0.02  # of the source photo: smaller garments are too few pixels to paste large
CANVAS = ((480, 640), (640, 480), (512, 512))  # (w, h): portrait, landscape, square


def _garments(labelled: Path, split: str) -> list[tuple[Path, int, np.ndarray]]:
    """(photo, class, ring in pixels) for every labelled garment of the split big enough to paste."""
    from PIL import Image

    from training.yolo_labels import read_yolo_rings

    out = []
    for img in sorted((labelled / "images" / split).iterdir()):
        label = labelled / "labels" / split / (img.stem + ".txt")
        if not label.exists():
            continue
        with Image.open(img) as im:
            w, h = im.size
        for cls, ring in read_yolo_rings(label, w, h):
            x, y = ring[:, 0], ring[:, 1]
            area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
            if area >= MIN_AREA_SHARE * w * h:
                out.append((img, cls, ring))
    return out


def _plain(rng, w: int, h: int) -> np.ndarray:
    # walls, sheets and floors: mostly light and nearly grey, a few dark or coloured
    grey = rng.uniform(110, 250) if rng.random() < 0.8 else rng.uniform(25, 110)
    base = grey + rng.normal(0, 12 if rng.random() < 0.8 else 45, 3)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (np.cos(angle) * gx / w + np.sin(angle) * gy / h)[..., None] * rng.uniform(-40, 40)
    noise = rng.normal(0, rng.uniform(1, 6), (h, w, 1))
    return np.clip(base + ramp + noise, 0, 255).astype(np.uint8)


def _textured(rng, w: int, h: int) -> np.ndarray:
    import cv2

    base = rng.uniform(70, 220) + rng.normal(0, 25, 3)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    if rng.random() < 0.5:  # wood-like grain: wavy stripes along one axis
        period = rng.uniform(6, 30)
        wave = np.sin((gy + 8 * np.sin(gx / rng.uniform(20, 80))) / period * 2 * math.pi)
        pattern = wave * rng.uniform(8, 25)
    else:  # woven: two crossing fine patterns
        period = rng.uniform(2.5, 8)
        pattern = (np.sin(gx / period * 2 * math.pi) * np.sin(gy / period * 2 * math.pi)) * rng.uniform(5, 18)
    noise = cv2.GaussianBlur(rng.normal(0, 12, (h, w)).astype(np.float32), (0, 0), rng.uniform(1, 6))
    img = base + (pattern + noise)[..., None] * rng.uniform(0.6, 1.0, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def _indoor(rng, w: int, h: int, sources: list[tuple[Path, np.ndarray]]) -> np.ndarray | None:
    """A strip of a labelled photo beside its person (outside every garment's box, widened), stretched."""
    import cv2

    from training.yolo_labels import load_rgb

    path, box = sources[int(rng.integers(len(sources)))]
    rgb = load_rgb(path)
    ph, pw = rgb.shape[:2]
    x1, x2 = max(0, int(box[0] - 0.15 * pw)), min(pw, int(box[2] + 0.15 * pw))
    strips = [(0, x1), (x2, pw)]
    a, b = max(strips, key=lambda s: s[1] - s[0])
    if b - a < 0.12 * pw:
        return None
    crop = rgb[: int(ph * 0.8), a:b]
    crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(crop, (0, 0), rng.uniform(1.5, 4))


def _background(rng, w: int, h: int, sources) -> np.ndarray:
    r = rng.random()
    if r < 0.3 and sources:
        img = _indoor(rng, w, h, sources)
        if img is not None:
            return img
    return _textured(rng, w, h) if r < 0.6 else _plain(rng, w, h)


def _warp(rng, cw: int, ch: int, gw: float, gh: float, scale: float, crowd: int) -> np.ndarray:
    """A 3x3 map from the garment crop's pixels to the canvas: scale, rotation, a little
    perspective, placed so the garment stays mostly in view."""
    import cv2

    angle = rng.uniform(-20, 20) if rng.random() < 0.8 else rng.choice([-90, 90]) + rng.uniform(-10, 10)
    src = np.float32([[0, 0], [gw, 0], [gw, gh], [0, gh]])
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    pts = (src - (gw / 2, gh / 2)) * scale
    pts = pts @ np.float32([[c, s], [-s, c]])
    pts += rng.normal(0, 0.04 * scale * max(gw, gh), pts.shape)  # perspective: corners moved a little
    span = pts.max(0) - pts.min(0)
    room = np.maximum(np.float32([cw, ch]) - span, 1)
    centre = pts.min(0) * -1 + rng.uniform(0, 1, 2) * room if crowd == 1 else \
        rng.uniform(0.25, 0.75, 2) * (cw, ch) - (pts.max(0) + pts.min(0)) / 2
    return cv2.getPerspectiveTransform(src, (pts + centre).astype(np.float32))


def synthesize(rng, garments, sources, canvas: tuple[int, int]) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One photo: (RGB, [(class, bool mask)]) with 1-3 garments pasted on a background."""
    import cv2

    from segmentation.masks import rasterize
    from training.yolo_labels import load_rgb

    cw, ch = canvas
    img = _background(rng, cw, ch, sources).astype(np.float32)
    crowd = min(len(garments), 1 if rng.random() < 0.7 else int(rng.integers(2, 4)))
    weights = np.array([ALONE_WEIGHTS[c.name] for c in BY_NAME.values()])
    p = np.array([weights[g[1]] for g in garments])
    placed: list[tuple[int, np.ndarray]] = []
    for k in rng.choice(len(garments), size=crowd, replace=False, p=p / p.sum()):
        path, cls, ring = garments[int(k)]
        photo = load_rgb(path)
        x1, y1 = np.floor(ring.min(0)).astype(int)
        x2, y2 = np.ceil(ring.max(0)).astype(int)
        crop = photo[y1:y2, x1:x2]
        gh, gw = crop.shape[:2]
        if gh < 8 or gw < 8:
            continue
        alpha = rasterize([ring], gw, gh, offset=(x1, y1)).astype(np.float32) / 255
        target = rng.uniform(0.45, 0.85) if crowd == 1 else rng.uniform(0.3, 0.55)
        scale = target * min(cw, ch) / max(gw, gh)
        m = _warp(rng, cw, ch, gw, gh, scale, crowd)
        a = cv2.warpPerspective(alpha, m, (cw, ch), flags=cv2.INTER_LINEAR)
        g = cv2.warpPerspective(crop.astype(np.float32), m, (cw, ch), flags=cv2.INTER_LINEAR)
        shadow = cv2.GaussianBlur(np.roll(a, (int(rng.integers(3, 12)), int(rng.integers(-6, 7))), (0, 1)), (0, 0), 6)
        img *= 1 - 0.35 * shadow[..., None]
        soft = cv2.GaussianBlur(a, (3, 3), 0)[..., None]
        img = img * (1 - soft) + g * soft
        hard = a > 0.5
        placed = [(c, mk & ~hard) for c, mk in placed]  # what the new garment covers is hidden
        placed.append((cls, hard))
    img = img * rng.uniform(0.85, 1.15) + rng.normal(0, 2, img.shape)  # exposure and sensor noise
    return np.clip(img, 0, 255).astype(np.uint8), [(c, mk) for c, mk in placed if mk.sum() >= 64]


def synthesize_split(labelled: Path, split: str, out_images: Path, out_labels: Path, count: int, seed: int = 0) -> dict:
    """`count` synthesized photos from the split's garments, as JPEGs with YOLO-seg labels."""
    from collections import Counter

    from PIL import Image

    from training.yolo_labels import label_lines_of

    rng = np.random.default_rng(seed)
    garments = _garments(labelled, split)
    boxes: dict[Path, list] = {}
    for path, _c, ring in garments:
        b = boxes.setdefault(path, [math.inf, math.inf, -math.inf, -math.inf])
        b[0], b[1] = min(b[0], ring[:, 0].min()), min(b[1], ring[:, 1].min())
        b[2], b[3] = max(b[2], ring[:, 0].max()), max(b[3], ring[:, 1].max())
    sources = list(boxes.items())
    out_images.mkdir(parents=True, exist_ok=True)
    out_labels.mkdir(parents=True, exist_ok=True)
    per_class: Counter = Counter()
    written = 0
    for i in range(count if garments else 0):
        canvas = CANVAS[int(rng.integers(len(CANVAS)))]
        rgb, instances = synthesize(rng, garments, sources, canvas)
        if not instances:
            continue
        name = f"alone-{split}-{i:04d}"
        Image.fromarray(rgb).save(out_images / f"{name}.jpg", quality=90)
        lines = label_lines_of(instances, canvas[0], canvas[1])
        (out_labels / f"{name}.txt").write_text("\n".join(lines) + "\n")
        per_class.update(c for c, _ in instances)
        written += 1
    from core.taxonomy import NAMES

    return {"photos": written, "garments_available": len(garments),
            "instances_per_class": {NAMES[c]: n for c, n in sorted(per_class.items())}}
