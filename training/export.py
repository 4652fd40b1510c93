"""`wardrobe export-training`: the catalogue, with users' corrections, as a Fashionpedia-format
dataset that `wardrobe import-fashionpedia` reads unchanged. Closes the loop from what users
fix to what the model learns."""
from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

from sqlalchemy import select

from db.bootup import Runtime
from db.models import Item, ItemStatus, Photo, PhotoStatus, User
from db.session import session_scope
from training.fashionpedia import FASHIONPEDIA_CATEGORIES

FP_ID = {name: cid for cid, name, _ in FASHIONPEDIA_CATEGORIES}


def _split_of(photo_id: uuid.UUID, val_fraction: float) -> str:
    # stable per photo: re-exports put each photo in the same split
    h = int(hashlib.sha256(photo_id.bytes).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_fraction else "train"


def export_training(rt: Runtime, out: Path, user_name: str | None = None, corrected_only: bool = False,
                    val_fraction: float = 0.1) -> dict:
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    with session_scope() as s:
        q = select(Photo).where(Photo.status == PhotoStatus.DONE.value)
        if user_name:
            uid = s.scalar(select(User.id).where(User.name == user_name))
            if uid is None:
                raise ValueError(f"no user {user_name!r}")
            q = q.where(Photo.user_id == uid)
        photos = list(s.scalars(q.order_by(Photo.created_at, Photo.id)))
        items_by_photo: dict[uuid.UUID, list[Item]] = {}
        for it in s.scalars(select(Item).where(Item.photo_id.in_([p.id for p in photos]))):
            items_by_photo.setdefault(it.photo_id, []).append(it)
    splits = {"train": {"images": [], "annotations": []}, "val": {"images": [], "annotations": []}}
    counts = {"photos": 0, "annotations": 0, "corrected": 0, "not_garment_dropped": 0}
    ann_id = 1
    for img_id, photo in enumerate(photos, start=1):
        items = items_by_photo.get(photo.id, [])
        if corrected_only and not any(i.corrected_at for i in items):
            continue
        kept = [i for i in items if i.status == ItemStatus.OK.value]
        counts["not_garment_dropped"] += len(items) - len(kept)
        counts["corrected"] += sum(1 for i in items if i.corrected_at)
        name = f"{photo.id}.jpg"
        rt.storage.download_to(photo.storage_key, out / "images" / name)
        split = splits[_split_of(photo.id, val_fraction)]
        split["images"].append({"id": img_id, "file_name": name, "width": photo.width, "height": photo.height})
        for it in sorted(kept, key=lambda i: i.instance_index):
            seg = [[c for x, y in poly for c in (x, y)] for poly in it.polygons if len(poly) >= 3]
            if not seg:
                continue
            x1, y1, x2, y2 = it.bbox
            split["annotations"].append({
                "id": ann_id, "image_id": img_id, "category_id": FP_ID[it.category], "segmentation": seg,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": round(it.area_fraction * photo.width * photo.height, 1),
                "iscrowd": 0, "attribute_ids": [],
            })
            ann_id += 1
        counts["photos"] += 1
    categories = [{"id": cid, "name": name, "supercategory": sup} for cid, name, sup in FASHIONPEDIA_CATEGORIES]
    info = {"description": "wardrobe catalogue export, with user corrections", "version": "1"}
    for split, data in splits.items():
        (out / f"instances_{split}.json").write_text(json.dumps(
            {"info": info, "licenses": [], "images": data["images"], "annotations": data["annotations"],
             "categories": categories}))
    counts["annotations"] = ann_id - 1
    counts["train_images"] = len(splits["train"]["images"])
    counts["val_images"] = len(splits["val"]["images"])
    return counts
