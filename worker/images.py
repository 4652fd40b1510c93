"""Decode one uploaded image into the upright, 8-bit RGB working photo.

Everything a phone or a script may send ends up the same: EXIF orientation
applied, colour converted, alpha flattened, first frame only, and no larger
than the working size. The pixel cap is checked on the header, before decode.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image, UnidentifiedImageError

from core import exif
from worker.rejections import ImageRejected

try:  # HEIC/HEIF from phones
    import pillow_heif

    pillow_heif.register_heif_opener()
except Exception:  # noqa: BLE001 - optional; HEIC entries then fail as not_an_image
    pass

def _pillow_open():
    """Pillow's own Image.open. Ultralytics replaces PIL.Image.open when imported (the segment worker
    imports it) with a wrapper that, on a file Pillow cannot identify, tries to install and import
    `pi_heif` and so turns "not an image" into an ImportError. What an entry is must not depend on
    which libraries the process has loaded: this module decodes with Pillow's function, kept aside
    by the wrapper when it was installed first."""
    op = Image.open
    if getattr(op, "__module__", None) == Image.__name__:
        return op
    import sys

    original = getattr(sys.modules.get(getattr(op, "__module__", "") or ""), "_image_open", None)
    if callable(original) and getattr(original, "__module__", None) == Image.__name__:
        return original
    raise RuntimeError(f"PIL.Image.open was replaced by {op!r} and Pillow's own is not to be found")


pil_open = _pillow_open()

ALLOWED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF"}


@dataclass
class WorkingPhoto:
    rgb: np.ndarray | None  # H x W x 3, uint8, upright; None when the bytes were stored as they came
    jpeg: bytes  # what is stored
    width: int
    height: int
    original_width: int
    original_height: int
    source_format: str


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        # 16-bit modes span 0-65535 whatever this photo's values; a 32-bit "I" says nothing of its
        # range, so one whose values fit in 8 bits is taken as 8-bit
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        im = Image.fromarray((arr / hi * 255.0).clip(0, 255).astype(np.uint8), "L")
    if im.mode in ("P", "L", "RGB") and "transparency" in im.info:
        im = im.convert("RGBA")  # a palette index or a key colour (PNG tRNS) that is transparent
    elif im.mode == "P":
        im = im.convert("RGB")
    if im.mode in ("LA", "RGBA", "PA", "RGBa"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")  # L, CMYK, YCbCr, F, 1 ...
    return im


_WORKERS_TROUBLE = (SoftTimeLimitExceeded, MemoryError)


def decode_photo(data: bytes, max_pixels: int, work_max_side: int, jpeg_quality: int = 90) -> WorkingPhoto:
    """The photo at working size, or ImageRejected. Whatever a decoder or encoder raises on these
    bytes is this photo's error, never the job's; the task's time running out and memory running
    short are the worker's, and go up to the task (which retries from this entry)."""
    try:
        return _decode_photo(data, max_pixels, work_max_side, jpeg_quality)
    except (ImageRejected, *_WORKERS_TROUBLE):
        raise
    except Exception as e:  # noqa: BLE001
        raise ImageRejected("unreadable_image", f"cannot decode image: {type(e).__name__}: {e}") from e


def _decode_photo(data: bytes, max_pixels: int, work_max_side: int, jpeg_quality: int) -> WorkingPhoto:
    try:
        im = pil_open(io.BytesIO(data))
    except UnidentifiedImageError as e:
        raise ImageRejected("not_an_image", "the file is not an image in a supported format") from e
    except Image.DecompressionBombError as e:
        raise ImageRejected("too_many_pixels", str(e)) from e
    except Exception as e:  # noqa: BLE001 - truncated headers and friends
        raise ImageRejected("unreadable_image", f"cannot read image header: {e}") from e
    fmt = (im.format or "").upper()
    if fmt not in ALLOWED_FORMATS:
        raise ImageRejected("unsupported_format", f"image format {fmt or 'unknown'} is not supported")
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageRejected("unreadable_image", "image has no pixels")
    if w * h > max_pixels:
        raise ImageRejected("too_many_pixels", f"{w}x{h} exceeds the limit of {max_pixels} pixels")
    orientation = exif.orientation(im)
    if (fmt == "JPEG" and im.mode == "RGB" and max(w, h) <= work_max_side
            and orientation == 1 and not getattr(im, "is_animated", False)):
        # Already an upright, 8-bit RGB JPEG of working size: store the bytes as they are, so the
        # photo is decoded once (by the segment worker, which marks it failed if the body is broken).
        return WorkingPhoto(rgb=None, jpeg=data, width=w, height=h, original_width=w, original_height=h,
                            source_format=fmt)
    try:
        if getattr(im, "is_animated", False):
            im.seek(0)
        if fmt in ("JPEG", "MPO") and max(w, h) > 2 * work_max_side:
            # let libjpeg decode at 1/2, 1/4 or 1/8 scale: far cheaper than full decode + resize
            im.draft("RGB", (work_max_side, work_max_side))
        im.load()
        im = exif.upright(im)
        im = _to_rgb(im)
        im.info.pop("comment", None)  # the JPEG writer would copy it (and refuses one over 64 KiB)
    except (ImageRejected, *_WORKERS_TROUBLE):
        raise
    except Exception as e:  # noqa: BLE001
        raise ImageRejected("unreadable_image", f"cannot decode image: {e}") from e
    if max(im.size) > work_max_side:
        im.thumbnail((work_max_side, work_max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=jpeg_quality, optimize=False)
    ow, oh = (h, w) if orientation in exif.SWAPS_AXES else (w, h)
    return WorkingPhoto(
        rgb=np.asarray(im),
        jpeg=buf.getvalue(),
        width=im.width,
        height=im.height,
        original_width=ow,
        original_height=oh,
        source_format=fmt,
    )


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
