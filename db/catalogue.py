"""The catalogue page's SQL (GET /v1/items): one statement for each combination of filters, built
once per process and kept, with the request's values as bound parameters.

Building a select of an item's columns and working out its cache key (how SQLAlchemy finds the
compiled SQL) cost more CPU than encoding the page's JSON; a kept statement has both done once.
The user's review threshold is a scalar subquery of the same statement, so a page is one round
trip to the database.
"""
from __future__ import annotations

import functools

import uuid

from sqlalchemy import Float, Integer, bindparam, func, select, tuple_
from sqlalchemy.orm import Session

from db.models import Item, ItemStatus, User
from db.session import read_all

# the columns api.serializers.item_body reads: all a catalogue page selects
ITEM_BODY_COLUMNS = ("id", "photo_id", "job_id", "class_id", "category", "supercategory", "confidence", "bbox",
                     "polygons", "area_fraction", "model_version", "cutout_content_type", "cutout_width",
                     "cutout_height", "color", "colors", "duplicate_of", "status", "original_class_id",
                     "corrected_at", "alternatives", "created_at")

_c = Item.__table__.c

# filter name -> the condition, its value (if any) bound as the parameter of the same name
FILTERS = {
    "category": lambda: _c.category == bindparam("category"),
    "supercategory": lambda: _c.supercategory == bindparam("supercategory"),
    "job_id": lambda: _c.job_id == bindparam("job_id"),
    "photo_id": lambda: _c.photo_id == bindparam("photo_id"),
    "color": lambda: _c.color == bindparam("color"),
    "hide_duplicates": lambda: _c.duplicate_of.is_(None),
    "garments_only": lambda: _c.status == ItemStatus.OK.value,
    "min_confidence": lambda: _c.confidence >= bindparam("min_confidence"),
}


def needs_review_filter(review_below):
    """SQL for api.serializers.needs_review: kept, never corrected or confirmed, below the threshold
    (a number, or SQL such as the page's threshold)."""
    return (Item.status == ItemStatus.OK.value) & Item.corrected_at.is_(None) & (Item.confidence < review_below)


@functools.lru_cache(maxsize=256)
def page_statement(filters: tuple[str, ...], review: bool | None, after_cursor: bool):
    """Items of :user_id passing `filters` (names in FILTERS), newest first; with `review` True,
    only those needing review, least certain first (False: only those not needing it). With
    `after_cursor`, the rows after :after_key/:after_id in that order. At most :limit rows, each
    with the user's threshold as review_below (:review_default when they set none)."""
    own = select(User.review_below).where(User.id == bindparam("user_id")).scalar_subquery()
    threshold = func.coalesce(own, bindparam("review_default", type_=Float))
    q = select(*(_c[name] for name in ITEM_BODY_COLUMNS), threshold.label("review_below"))
    q = q.where(_c.user_id == bindparam("user_id"), *(FILTERS[name]() for name in filters))
    if review is not None:
        q = q.where(needs_review_filter(threshold) if review else ~needs_review_filter(threshold))
    # keyset paging as one row comparison, which the index on (user_id, key, id) answers directly
    # (the same rows as "key < k OR (key = k AND id < i)", which it can only filter: a deep page
    # read every row before it)
    if review:  # the review list: least certain first, then by id
        if after_cursor:
            q = q.where(tuple_(_c.confidence, _c.id) > tuple_(bindparam("after_key", type_=Float),
                                                             bindparam("after_id", type_=_c.id.type)))
        q = q.order_by(_c.confidence.asc(), _c.id.asc())
    else:
        if after_cursor:
            q = q.where(tuple_(_c.created_at, _c.id) < tuple_(bindparam("after_key", type_=_c.created_at.type),
                                                             bindparam("after_id", type_=_c.id.type)))
        q = q.order_by(_c.created_at.desc(), _c.id.desc())
    return q.limit(bindparam("limit", type_=Integer))


def page(filters: tuple[str, ...], review: bool | None, after_cursor: bool, params: dict) -> list:
    """One catalogue page (page_statement with the request's values) as plain rows, on a connection of
    its own: a page of 50 items is read-only, and skipping the identity map and instrumentation roughly
    halves the time spent per request."""
    return read_all(page_statement(filters, review, after_cursor), params)


def needing_review(s: Session, user_id: uuid.UUID, review_below: float) -> int:
    """How many of the user's items need review at their threshold."""
    return s.scalar(select(func.count()).select_from(Item).where(Item.user_id == user_id,
                                                                 needs_review_filter(review_below)))
