"""Explicit JSON shapes for jobs and items: what clients see, decoupled from the tables."""
from __future__ import annotations

from datetime import datetime, timezone

from core.taxonomy import CLASSES
from db.jobview import iso, job_links, job_summary, processed, utc
from db.models import Item, ItemStatus, Job, JobStatus, Photo



def _pace(job: Job, processed: int, now: datetime | None = None) -> tuple[float | None, int | None]:
    """Photos per second since the job started, and, while it runs, the seconds left at that pace.
    Neither before there is a pace to speak of: a photo processed and a second gone."""
    if job.started_at is None or processed == 0:
        return None, None
    end = utc(job.finished_at) if job.finished_at else (now or datetime.now(timezone.utc))
    elapsed = (end - utc(job.started_at)).total_seconds()
    if elapsed < 1.0:
        return None, None
    rate = processed / elapsed
    eta = None
    if job.status == JobStatus.RUNNING.value and job.photos_total >= processed:
        eta = round((job.photos_total - processed) / rate)
    return round(rate, 2), eta


def job_body(job: Job, failed_photos: list[Photo] | None = None, duplicates: list[Photo] | None = None) -> dict:
    """The job (db.jobview, as the webhooks send it too) with its pace, its errors and its duplicates."""
    body = job_summary(job)
    body["progress"]["photos_per_second"], body["progress"]["eta_seconds"] = _pace(job, processed(job))
    errors = []
    if job.error_code:
        errors.append({"entry": None, "code": job.error_code, "message": job.error_message or ""})
    for p in failed_photos or []:
        if p.error_code == "cancelled":
            continue  # not the photo's fault; the job's status says it
        errors.append({"entry": p.entry_name, "code": p.error_code or "failed", "message": p.error_message or ""})
    body["errors"] = errors
    body["duplicates"] = [{"entry": p.entry_name, "photo_id": str(p.duplicate_of) if p.duplicate_of else None}
                          for p in duplicates or []]
    body["links"] = job_links(job)
    return body


def _cutout_size(item: Item) -> list[int]:
    """[width, height] of the cut-out image: the bbox's, unless the worker scaled it down."""
    if item.cutout_width and item.cutout_height:
        return [item.cutout_width, item.cutout_height]
    x1, y1, x2, y2 = item.bbox
    return [x2 - x1, y2 - y1]


def needs_review(item: Item, review_below: float) -> bool:
    """Kept in the catalogue, never corrected or confirmed by a user, and less certain than the
    user's threshold. The list route's SQL filter says the same (db/catalogue.py: needs_review_filter)."""
    return item.status == ItemStatus.OK.value and item.corrected_at is None and item.confidence < review_below


def alternatives_body(item: Item) -> list[dict]:
    """The model's other classes for the garment, best first, at most 3, never the item's current
    class (after a correction the chosen alternative is the item's class). The category is named
    here from the class id, so what the worker stores only has to be right about the id."""
    out = []
    for alt in item.alternatives or []:
        cid = alt.get("class_id") if isinstance(alt, dict) else None
        if not isinstance(cid, int) or isinstance(cid, bool) or not 0 <= cid < len(CLASSES) or cid == item.class_id:
            continue
        if any(a["class_id"] == cid for a in out):
            continue
        conf = alt.get("confidence")
        if not isinstance(conf, (int, float)) or isinstance(conf, bool):
            continue
        out.append({"class_id": cid, "category": CLASSES[cid].name, "confidence": float(conf)})
        if len(out) == 3:
            break
    return out


def item_body(item: Item, sign=None, *, review_below: float) -> dict:
    """`sign(path)` -> an expiring URL that needs no Authorization header (for <img> tags);
    `review_below`: the user's review threshold (needs_review). A catalogue page makes fifty of
    these: each id is turned into text once."""
    item_id, photo_id = str(item.id), str(item.photo_id)
    cutout_url, photo_url = f"/v1/items/{item_id}/cutout", f"/v1/photos/{photo_id}"
    body = {
        "id": item_id,
        "photo_id": photo_id,
        "job_id": str(item.job_id),
        "class_id": item.class_id,
        "category": item.category,
        "supercategory": item.supercategory,
        "confidence": item.confidence,
        "bbox": item.bbox,
        "mask": {"format": "polygons", "coordinates": "photo_pixels", "polygons": item.polygons},
        "area_fraction": item.area_fraction,
        "model_version": item.model_version,
        "cutout_url": cutout_url,
        "cutout_content_type": item.cutout_content_type,
        "cutout_size": _cutout_size(item),
        "photo_url": photo_url,
        "color": item.color,
        "colors": item.colors or [],
        "duplicate_of": str(item.duplicate_of) if item.duplicate_of else None,
        "status": item.status,
        "corrected": item.original_class_id is not None or item.status != "ok",
        "original_class_id": item.original_class_id,
        "reviewed": item.corrected_at is not None,
        "needs_review": needs_review(item, review_below),
        "alternatives": alternatives_body(item),
        "created_at": iso(item.created_at),
    }
    if sign is not None:
        body["cutout_signed_url"] = sign(cutout_url)
        body["photo_signed_url"] = sign(photo_url)
    return body


def photo_body(photo: Photo) -> dict:
    """One photo of a job: where it was in the zip, what became of it, and the stored photo's size
    (the pixels item polygons are in)."""
    return {
        "id": str(photo.id),
        "entry": photo.entry_name,
        "entry_index": photo.entry_index,
        "status": photo.status,
        "width": photo.width,
        "height": photo.height,
        "original_size": [photo.original_width, photo.original_height] if photo.original_width else None,
        "error": {"code": photo.error_code, "message": photo.error_message or ""} if photo.error_code else None,
        "duplicate_of": str(photo.duplicate_of) if photo.duplicate_of else None,
        "photo_url": f"/v1/photos/{photo.id}" if photo.storage_key else None,
        "items_url": f"/v1/items?photo_id={photo.id}",
    }
