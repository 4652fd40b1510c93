"""What Ultralytics does around a YOLOv8-seg network at predict time, in NumPy and OpenCV: the
letterbox in, and out of the two outputs (boxes, class scores and 32 mask coefficients per
anchor; the mask prototypes) the detections after NMS, their masks at the model's input size and
their boxes in the photo's pixels. The lean CPU worker (segmentation.lean) runs it without torch.

It follows Ultralytics 8.4.190 step for step, so the two paths give the same items:
`LetterBox` (minimum rectangle when the model takes any size), `nms.non_max_suppression` (best
class only, per-class unless agnostic, at most `max_nms` boxes into NMS, classes kept apart by a
`max_wh` offset), `ops.process_mask` with upsample (masks made at the prototypes' resolution,
upsampled bilinearly to the input size, thresholded, then zeroed outside their box),
`ops.scale_boxes` (boxes back to the photo, clipped), and the predictor dropping detections whose
mask came out empty. NMS is OpenCV's `cv2.dnn.NMSBoxes` (greedy, by descending score, a box
suppressed by a kept one it overlaps above the IoU threshold: torchvision's rule). Not copied:
Ultralytics' NMS time limit (2 s a photo), which a photo at this size never reaches.
"""
from __future__ import annotations

import cv2
import numpy as np

MAX_NMS = 30000  # boxes into NMS at most, the most confident (Ultralytics' default)
MAX_WH = 7680  # offset per class, in pixels, that keeps the classes apart in one NMS call (Ultralytics')
CHANNELS = 128  # masks upsampled per cv2.resize call (OpenCV takes up to 512 channels)


def input_shape(photo_hw: tuple[int, int], imgsz: tuple[int, int], stride: int, auto: bool) -> tuple[int, int]:
    """The network's input (h, w) for a photo: `imgsz`, or with `auto` (a model that takes any
    size) the smallest multiple of `stride` around the resized photo, as LetterBox pads."""
    if not auto:
        return imgsz
    r = min(imgsz[0] / photo_hw[0], imgsz[1] / photo_hw[1])
    new_h, new_w = max(round(photo_hw[0] * r), 1), max(round(photo_hw[1] * r), 1)
    return new_h + (imgsz[0] - new_h) % stride, new_w + (imgsz[1] - new_w) % stride


def letterbox(photo: np.ndarray, imgsz: tuple[int, int], stride: int, auto: bool) -> np.ndarray:
    """The photo resized to fit, keeping its aspect, and centred on grey (114): Ultralytics' LetterBox."""
    h, w = photo.shape[:2]
    r = min(imgsz[0] / h, imgsz[1] / w)
    new_h, new_w = max(round(h * r), 1), max(round(w * r), 1)
    out_h, out_w = input_shape((h, w), imgsz, stride, auto)
    dh, dw = (out_h - new_h) / 2, (out_w - new_w) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    if (w, h) != (new_w, new_h):
        photo = cv2.resize(photo, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(photo, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))


def to_tensor(images: list[np.ndarray]) -> np.ndarray:
    """Letterboxed RGB uint8 images (same size) as the network's float32 NCHW input in [0, 1]."""
    batch = np.stack(images) if len(images) > 1 else images[0][None]
    x = np.empty((batch.shape[0], 3, batch.shape[1], batch.shape[2]), np.float32)
    np.multiply(batch.transpose(0, 3, 1, 2), np.float32(1 / 255), out=x, casting="unsafe")
    return x


def non_max_suppression(pred: np.ndarray, nc: int, conf: float, iou: float, max_det: int, agnostic: bool = False,
                        max_nms: int = MAX_NMS, max_wh: int = MAX_WH) -> np.ndarray:
    """One photo's raw detections (4 + nc + nm, anchors) to rows (x1, y1, x2, y2, score, class,
    coefficients...) in input pixels, most confident first: each anchor's best class only (above
    `conf`), per-class NMS at `iou` unless `agnostic`, at most `max_det`."""
    scores = pred[4:4 + nc]
    best = scores.max(0)
    candidates = np.flatnonzero(best > conf)
    if not len(candidates):
        return np.zeros((0, pred.shape[0] + 2), np.float32)
    x = pred[:, candidates].T  # (n, 4 + nc + nm)
    cls = x[:, 4:4 + nc].argmax(1)
    score = x[np.arange(len(x)), 4 + cls]
    xy, half = x[:, :2], x[:, 2:4] / 2
    rows = np.concatenate([xy - half, xy + half, score[:, None], cls[:, None].astype(np.float32), x[:, 4 + nc:]], 1)
    if len(rows) > max_nms:
        rows = rows[np.argsort(-rows[:, 4], kind="stable")[:max_nms]]
    offset = rows[:, 5:6] * np.float32(0 if agnostic else max_wh)
    boxes = rows[:, :4] + offset  # float32, as Ultralytics offsets them
    keep = cv2.dnn.NMSBoxes(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).astype(np.float64),
                            rows[:, 4].astype(np.float64), float(conf), float(iou))
    keep = np.asarray(keep, dtype=np.intp).reshape(-1)[:max_det]
    return rows[keep]


def process_masks(protos: np.ndarray, coeffs: np.ndarray, boxes: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
    """Binary masks (n, h, w) uint8 at the input size: coefficients x prototypes, upsampled
    bilinearly (half-pixel centres, as torch's interpolate without align_corners), > 0 (sigmoid >
    0.5), then zeroed outside each box (input pixels)."""
    c, mh, mw = protos.shape
    n = len(coeffs)
    h, w = input_hw
    if n == 0:
        return np.zeros((0, h, w), np.uint8)
    logits = (coeffs.astype(np.float32) @ protos.reshape(c, -1)).T.reshape(mh, mw, n)  # channels last: one resize
    out = np.empty((n, h, w), np.uint8)
    for start in range(0, n, CHANNELS):  # OpenCV resizes up to this many channels in one call
        up = cv2.resize(logits[..., start:start + CHANNELS], (w, h), interpolation=cv2.INTER_LINEAR)
        up = up.reshape(h, w, -1)  # one channel comes back 2-D
        out[start:start + up.shape[2]] = (up > 0).transpose(2, 0, 1)
    # zero outside the box: for a whole pixel index r, r >= x1 is r >= ceil(x1) and r < x2 is r < ceil(x2)
    edges = np.ceil(boxes[:, :4]).clip(0, [w, h, w, h]).astype(np.intp)
    for m, (x1, y1, x2, y2) in zip(out, edges):
        m[:y1] = 0
        m[y2:] = 0
        m[:, :x1] = 0
        m[:, x2:] = 0
    return out


def scale_boxes(input_hw: tuple[int, int], boxes: np.ndarray, photo_hw: tuple[int, int]) -> np.ndarray:
    """Boxes (n, 4) from input pixels to the photo's, clipped to it: Ultralytics' scale_boxes."""
    gain = min(input_hw[0] / photo_hw[0], input_hw[1] / photo_hw[1])
    new_h, new_w = (max(round(side * gain), 1) for side in photo_hw)
    gain_y, gain_x = new_h / photo_hw[0], new_w / photo_hw[1]
    pad_x, pad_y = round((input_hw[1] - new_w) / 2 - 0.1), round((input_hw[0] - new_h) / 2 - 0.1)
    out = boxes.astype(np.float32, copy=True)
    out[:, [0, 2]] = ((out[:, [0, 2]] - pad_x) / gain_x).clip(0, photo_hw[1])
    out[:, [1, 3]] = ((out[:, [1, 3]] - pad_y) / gain_y).clip(0, photo_hw[0])
    return out
