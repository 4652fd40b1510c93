"""A photo's EXIF orientation, read the one way every reader here uses (the worker's decoder, the
training importer, `make quality`, the preview): a block that cannot be read counts as no tag, as it
says nothing about the pixels, which are then taken as they are stored."""
from __future__ import annotations

from PIL import Image, ImageOps

ORIENTATION_TAG = 0x0112
SWAPS_AXES = frozenset({5, 6, 7, 8})  # the orientations that turn a photo by 90 degrees


def orientation(im: Image.Image) -> int:
    """The EXIF orientation, 1-8; 1 when there is none, it is out of range or the block is broken."""
    try:
        value = im.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - Pillow raises SyntaxError, struct.error, ... on broken blocks
        return 1
    return value if value in range(1, 9) else 1


def upright(im: Image.Image) -> Image.Image:
    """The photo turned as its orientation says (Pillow's exif_transpose), or as it is."""
    return ImageOps.exif_transpose(im) if orientation(im) != 1 else im
