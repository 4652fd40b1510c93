"""A user's corrections to the catalogue (PATCH and DELETE /v1/items/<id>): the item's class or
"not a garment" set, the item deleted with its job's count kept right."""
from __future__ import annotations

from sqlalchemy.orm import Session

from core.taxonomy import GarmentClass
from db import jobcounts
from db.models import Item, ItemStatus, utcnow


def correct(item: Item, new_class: GarmentClass | None, not_garment: bool | None) -> None:
    """The user's verdict, which marks the item reviewed: a class (the item's own again confirms it:
    the model was right, or the user's earlier choice was), and/or whether it is a garment at all."""
    if new_class is not None and new_class.id != item.class_id:
        if item.original_class_id is None:
            item.original_class_id = item.class_id
        elif new_class.id == item.original_class_id:
            item.original_class_id = None  # back to the model's class: no longer a correction
        item.class_id, item.category, item.supercategory = new_class.id, new_class.name, new_class.supercategory
    if not_garment is not None:
        item.status = ItemStatus.NOT_GARMENT.value if not_garment else ItemStatus.OK.value
    elif new_class is not None:
        item.status = ItemStatus.OK.value  # naming its class says it is a garment after all
    item.corrected_at = utcnow()


def delete_item(s: Session, item: Item) -> str:
    """The item's row gone, one fewer found in its job; returns its cut-out's key (deleted after the commit)."""
    key = item.cutout_key
    jobcounts.item_deleted(s, item.job_id)
    s.delete(item)
    return key
