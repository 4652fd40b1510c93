"""`wardrobe export-training`: the catalogue, with users' corrections, as a Fashionpedia-format
dataset that `wardrobe import-fashionpedia` reads unchanged. Closes the loop from what users
fix to what the model learns. The COCO shapes are db/coco.py's, shared with the user's own export
(worker/export.py); this one writes the Fashionpedia release's 46 categories and ids."""
from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from sqlalchemy import select

from core.storage import ObjectNotFound
from db import coco
from core.runtime import Runtime
from db.models import ItemStatus, User
from db.session import session_scope
from training.fashionpedia import FASHIONPEDIA_CATEGORIES

FP_ID = {name: cid for cid, name, _ in FASHIONPEDIA_CATEGORIES}


def _split_of(photo_id: uuid.UUID, val_fraction: float) -> str:
    # stable per photo: re-exports put each photo in the same split
    h = int(hashlib.sha256(photo_id.bytes).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_fraction else "train"


def _user_id(user_name: str | None) -> uuid.UUID | None:
    if not user_name:
        return None
    with session_scope() as s:
        uid = s.scalar(select(User.id).where(User.name == user_name))
    if uid is None:
        raise ValueError(f"no user {user_name!r}")
    return uid


def export_training(rt: Runtime, out: Path, user_name: str | None = None, corrected_only: bool = False,
                    val_fraction: float = 0.1) -> dict:
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    uid = _user_id(user_name)
    splits = {"train": {"images": [], "annotations": []}, "val": {"images": [], "annotations": []}}
    counts = {"photos": 0, "annotations": 0, "corrected": 0, "not_garment_dropped": 0, "photos_missing": 0}
    ann_id = 1
    img_id = 0
    for photos, items_by_photo in coco.photo_pages(uid):
        for photo in photos:
            img_id += 1
            items = items_by_photo.get(photo.id, [])
            if corrected_only and not any(i.corrected_at for i in items):
                continue
            name = f"{photo.id}.jpg"
            try:
                rt.storage.download_to(photo.storage_key, out / "images" / name)
            except ObjectNotFound:  # deleted by its user since the page was read, or lost: the rest still goes
                (out / "images" / name).unlink(missing_ok=True)
                counts["photos_missing"] += 1
                continue
            kept = [i for i in items if i.status == ItemStatus.OK.value]
            counts["not_garment_dropped"] += len(items) - len(kept)
            counts["corrected"] += sum(1 for i in items if i.corrected_at)
            split = splits[_split_of(photo.id, val_fraction)]
            split["images"].append(coco.image(photo, img_id, name))
            for it in kept:
                ann = coco.annotation(it, photo, ann_id, img_id, FP_ID[it.category])
                if ann is None:
                    continue
                split["annotations"].append(ann | {"attribute_ids": []})
                ann_id += 1
            counts["photos"] += 1
    categories = [{"id": cid, "name": name, "supercategory": sup} for cid, name, sup in FASHIONPEDIA_CATEGORIES]
    info = coco.info("wardrobe catalogue export, with user corrections")
    for split, data in splits.items():
        with open(out / f"instances_{split}.json", "w") as f:
            coco.write(f, info, data["images"], data["annotations"], categories)
    counts["annotations"] = ann_id - 1
    counts["train_images"] = len(splits["train"]["images"])
    counts["val_images"] = len(splits["val"]["images"])
    return counts
