"""The catalogue as COCO instances: one image per stored photo, one annotation per item, masks as
polygons in the stored photo's pixels.

Written once for both of its readers' writers: `wardrobe export-training` (training/export.py, with
Fashionpedia's 46 category ids) and the user's export (worker/export.py, the catalogue's 23 classes
by their own ids). `wardrobe import-fashionpedia` reads either: it maps categories by name, and the
23 classes carry Fashionpedia's names (core/taxonomy.py).
"""
from __future__ import annotations

import json
import uuid
from typing import IO, Iterable, Iterator

from sqlalchemy import select

from core.taxonomy import CLASSES
from db.models import Item, Photo, PhotoStatus
from db.session import session_scope

# the catalogue's own categories: the model's class ids, Fashionpedia's names and supercategories
CATEGORIES: tuple[dict, ...] = tuple({"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in CLASSES)
PAGE = 200  # photos read per query


def segmentation(polygons) -> list[list[float]]:
    """COCO polygons, [[x1, y1, x2, y2, ...], ...]: each ring of three points or more, flattened."""
    return [[c for x, y in ring for c in (x, y)] for ring in polygons or [] if len(ring) >= 3]


def bbox_xywh(bbox) -> list:
    """The catalogue's [x1, y1, x2, y2] as COCO's [x, y, width, height]."""
    x1, y1, x2, y2 = bbox
    return [x1, y1, x2 - x1, y2 - y1]


def image(photo: Photo, image_id: int, file_name: str) -> dict:
    return {"id": image_id, "file_name": file_name, "width": photo.width, "height": photo.height}


def annotation(item: Item, photo: Photo, ann_id: int, image_id: int, category_id: int,
               keep_empty: bool = False) -> dict | None:
    """The item as a COCO annotation. When none of its rings has three points (nothing to draw): None,
    or with keep_empty an annotation with no polygons (an importer drops it as degenerate)."""
    seg = segmentation(item.polygons)
    if not seg and not keep_empty:
        return None
    return {
        "id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": seg,
        "bbox": bbox_xywh(item.bbox), "area": round(item.area_fraction * photo.width * photo.height, 1), "iscrowd": 0,
    }


def photo_pages(user_id: uuid.UUID | None, size: int = PAGE) -> Iterator[tuple[list[Photo], dict[uuid.UUID, list[Item]]]]:
    """The segmented photos (of one user, or everyone's), oldest first, a page at a time, each with its
    items in detection order. Each page is read in a session of its own (keyset paging), so a large
    catalogue is never in memory at once and no transaction stays open while the caller works."""
    after = None
    while True:
        with session_scope() as s:
            q = select(Photo).where(Photo.status == PhotoStatus.DONE.value)
            if user_id is not None:
                q = q.where(Photo.user_id == user_id)
            if after is not None:
                q = q.where((Photo.created_at > after[0]) | ((Photo.created_at == after[0]) & (Photo.id > after[1])))
            photos = list(s.scalars(q.order_by(Photo.created_at, Photo.id).limit(size)))
            if not photos:
                return
            items: dict[uuid.UUID, list[Item]] = {}
            for it in s.scalars(select(Item).where(Item.photo_id.in_([p.id for p in photos]))
                                .order_by(Item.photo_id, Item.instance_index)):
                items.setdefault(it.photo_id, []).append(it)
            s.expunge_all()
        yield photos, items
        after = (photos[-1].created_at, photos[-1].id)


def info(description: str, **extra) -> dict:
    return {"description": description, "version": "1", **extra}


def write(out: IO[str], info_: dict, images: Iterable[dict], annotations: Iterable[dict],
          categories: Iterable[dict] = CATEGORIES, **more: Iterable[dict]) -> None:
    """One COCO instances document to `out`, the arrays drawn from iterables as they are written, so
    neither they nor the document are ever whole in memory. `more`: further top-level arrays (COCO
    readers ignore keys they do not know)."""
    out.write('{"info": ' + json.dumps(info_) + ', "licenses": []')
    arrays = {"images": images, "annotations": annotations, "categories": categories, **more}
    for key, rows in arrays.items():
        out.write(f', "{key}": [')
        for n, row in enumerate(rows):
            out.write((", " if n else "") + json.dumps(row))
        out.write("]")
    out.write("}")
