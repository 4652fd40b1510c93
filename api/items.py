"""The catalogue: items, their cut-outs, and the stored photos."""
from __future__ import annotations

import math

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import select

from api import deps
from api.errors import ApiError
from api.paging import decode_cursor, encode_cursor, page_limit
from api.serializers import item_body
from db.models import Item, Photo
from db.storage import ObjectNotFound, StorageError
from db.taxonomy import BY_NAME, SUPERCATEGORIES

bp = Blueprint("items", __name__)


def _own_item(item_id: str) -> Item:
    iid = deps.parse_uuid(item_id, "item")
    item = deps.db().scalar(select(Item).where(Item.id == iid, Item.user_id == g.user_id))
    if item is None:
        raise ApiError(404, "not_found", "no such item")
    return item


def _stream(key: str, content_type: str) -> Response:
    try:
        chunks = deps.storage().iter_chunks(key)
    except ObjectNotFound:
        raise ApiError(404, "not_found", "the file is gone from storage") from None
    except StorageError:
        raise ApiError(503, "storage_unavailable", "storage is unavailable; try again shortly") from None
    resp = Response(chunks, content_type=content_type)
    resp.headers["Cache-Control"] = "private, max-age=3600"
    return resp


@bp.get("/v1/items")
@deps.require_user
def list_items():
    args = request.args
    limit = page_limit(args, deps.settings())
    q = select(Item).where(Item.user_id == g.user_id)
    if (cat := args.get("category")) is not None:
        if cat not in BY_NAME:
            raise ApiError(400, "invalid_parameter", f"unknown category {cat!r}; see /v1/categories")
        q = q.where(Item.category == cat)
    if (sup := args.get("supercategory")) is not None:
        if sup not in SUPERCATEGORIES:
            raise ApiError(400, "invalid_parameter", f"unknown supercategory {sup!r}; see /v1/categories")
        q = q.where(Item.supercategory == sup)
    if (jid := args.get("job_id")) is not None:
        q = q.where(Item.job_id == deps.parse_uuid(jid, "job_id", not_found=False))
    if (pid := args.get("photo_id")) is not None:
        q = q.where(Item.photo_id == deps.parse_uuid(pid, "photo_id", not_found=False))
    if (mc := args.get("min_confidence")) is not None:
        try:
            v = float(mc)
        except ValueError:
            v = math.nan
        if not 0.0 <= v <= 1.0:
            raise ApiError(400, "invalid_parameter", "min_confidence must be a number from 0 to 1")
        q = q.where(Item.confidence >= v)
    if cursor := args.get("cursor"):
        ts, last_id = decode_cursor(cursor)
        q = q.where((Item.created_at < ts) | ((Item.created_at == ts) & (Item.id < last_id)))
    rows = list(deps.db().scalars(q.order_by(Item.created_at.desc(), Item.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return jsonify({"items": [item_body(i) for i in rows],
                    "next_cursor": encode_cursor(rows[-1].created_at, rows[-1].id) if more else None})


@bp.get("/v1/items/<item_id>")
@deps.require_user
def get_item(item_id: str):
    return jsonify(item_body(_own_item(item_id)))


@bp.get("/v1/items/<item_id>/cutout")
@deps.require_user
def get_cutout(item_id: str):
    item = _own_item(item_id)
    return _stream(item.cutout_key, item.cutout_content_type)


@bp.delete("/v1/items/<item_id>")
@deps.require_user
def delete_item(item_id: str):
    item = _own_item(item_id)
    key = item.cutout_key
    s = deps.db()
    s.delete(item)
    s.commit()
    try:
        deps.storage().delete(key)
    except StorageError:
        pass  # the row is gone; an orphaned cut-out is harmless and unreachable
    return "", 204


@bp.get("/v1/photos/<photo_id>")
@deps.require_user
def get_photo(photo_id: str):
    pid = deps.parse_uuid(photo_id, "photo")
    photo = deps.db().scalar(select(Photo).where(Photo.id == pid, Photo.user_id == g.user_id))
    if photo is None or not photo.storage_key:
        raise ApiError(404, "not_found", "no such photo")
    return _stream(photo.storage_key, "image/jpeg")


@bp.get("/v1/categories")
def categories():
    from db.taxonomy import CLASSES

    return jsonify({"categories": [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in CLASSES]})
