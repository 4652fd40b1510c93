"""The catalogue: items, their cut-outs, and the stored photos."""
from __future__ import annotations

import math

from flask import Blueprint, Response, g, jsonify, request

from api import deps
from api.bodies import item_body
from api.errors import ApiError, json_object
from api.formats import whole_number
from api.paging import (decode_confidence_cursor, decode_cursor, encode_confidence_cursor, encode_cursor,
                        page_limit)
from api.serializers import item_body as _item_body
from core.palette import COLOR_NAMES
from core.storage import ObjectNotFound, StorageError
from core.taxonomy import CLASSES, SUPERCATEGORIES, find_class
from db import catalogue as pages, owned
from db.models import Item, Photo
from services import catalogue


def _flag(args, name: str) -> bool:
    raw = args.get(name)
    if raw is None:
        return False
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, "invalid_parameter", f"{name} must be true or false")


def _tristate(args, name: str) -> bool | None:
    """An optional boolean filter: absent is None (no filter)."""
    return _flag(args, name) if args.get(name) is not None else None


bp = Blueprint("items", __name__)


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
    # the statement for this combination of filters is built once (db/catalogue.py); the
    # request's values go in as parameters
    limit = page_limit(args, deps.settings())
    params = {"user_id": g.user_id, "review_default": deps.settings().review_below, "limit": limit + 1}
    filters = []
    if (cat := args.get("category")) is not None:
        # any of a class's names, in any case: "bag", "Wallet" and "bag, wallet" are one class
        if (cls := find_class(cat)) is None:
            raise ApiError(400, "invalid_parameter", f"unknown category {cat!r}; see /v1/categories")
        filters.append("category")
        params["category"] = cls.name
    if (sup := args.get("supercategory")) is not None:
        if sup not in SUPERCATEGORIES:
            raise ApiError(400, "invalid_parameter", f"unknown supercategory {sup!r}; see /v1/categories")
        filters.append("supercategory")
        params["supercategory"] = sup
    if (jid := args.get("job_id")) is not None:
        filters.append("job_id")
        params["job_id"] = deps.parse_uuid(jid, "job_id", not_found=False)
    if (pid := args.get("photo_id")) is not None:
        filters.append("photo_id")
        params["photo_id"] = deps.parse_uuid(pid, "photo_id", not_found=False)
    if (color := args.get("color")) is not None:
        if color not in COLOR_NAMES:
            raise ApiError(400, "invalid_parameter", f"unknown color {color!r}; see /v1/categories")
        filters.append("color")
        params["color"] = color
    if _flag(args, "hide_duplicates"):
        filters.append("hide_duplicates")
    if not _flag(args, "include_not_garment"):
        filters.append("garments_only")
    if (mc := args.get("min_confidence")) is not None:
        try:
            v = float(mc)
        except ValueError:
            v = math.nan
        if not 0.0 <= v <= 1.0:
            raise ApiError(400, "invalid_parameter", "min_confidence must be a number from 0 to 1")
        filters.append("min_confidence")
        params["min_confidence"] = v
    review = _tristate(args, "needs_review")
    if (cursor := args.get("cursor")) is not None:
        # the review list is paged on (confidence, id), the others on (created_at, id)
        params["after_key"], params["after_id"] = (decode_confidence_cursor if review else decode_cursor)(cursor)
    # plain rows, not ORM objects (db.catalogue.page); a token not yet cached was looked up on the request's session: its connection goes back to
    # the pool first, or the request would hold two (one idle in a transaction beside the page's)
    deps.close_db()
    rows = pages.page(tuple(filters), review, cursor is not None, params)
    more = len(rows) > limit
    rows = rows[:limit]
    next_key = (lambda r: encode_confidence_cursor(r.confidence, r.id)) if review else \
        (lambda r: encode_cursor(r.created_at, r.id))
    sign = deps.signer()  # once per page: the key and expiry do not change between items
    return {"items": [_item_body(r, sign, review_below=r.review_below) for r in rows],
            "next_cursor": next_key(rows[-1]) if more else None}


@bp.get("/v1/items/<item_id>")
@deps.require_user
def get_item(item_id: str):
    return jsonify(item_body(deps.own(Item, item_id, "item")))


@bp.get("/v1/items/<item_id>/cutout")
def get_cutout(item_id: str):
    if deps.signature_instead_of_header():
        item = deps.signed_row(Item, deps.parse_uuid(item_id, "item"), "item")
        return _stream(item.cutout_key, item.cutout_content_type)
    return _get_cutout_authed(item_id)


@deps.require_user
def _get_cutout_authed(item_id: str):
    item = deps.own(Item, item_id, "item")
    return _stream(item.cutout_key, item.cutout_content_type)


@bp.patch("/v1/items/<item_id>")
@deps.require_user
def correct_item(item_id: str):
    """Correct the model: a new category (by name or class_id), or "not a garment". Sending the
    item's current class confirms it. Any of these marks the item reviewed (it no longer needs review)."""
    item = deps.own(Item, item_id, "item")
    body = json_object('{"category": NAME} or {"class_id": N} or {"not_garment": true}',
                       {"category", "class_id", "not_garment"}, nonempty=True)
    new_class = None
    if "category" in body:
        new_class = find_class(body["category"])
        if new_class is None:
            raise ApiError(422, "unknown_category", f"unknown category {body['category']!r}; see /v1/categories")
    if "class_id" in body:
        cid = whole_number(body["class_id"])  # 3.0 is 3, as JSON Schema counts integers
        if cid is None or not 0 <= cid < len(CLASSES):
            raise ApiError(422, "unknown_category", "class_id must be an integer from 0 to 22")
        if new_class is not None and new_class.id != cid:
            raise ApiError(422, "conflicting_fields", "category and class_id name different classes")
        new_class = CLASSES[cid]
    if "not_garment" in body and not isinstance(body["not_garment"], bool):
        raise ApiError(400, "invalid_body", "not_garment must be true or false")
    catalogue.correct_item(deps.ctx(), item, new_class, body.get("not_garment"))
    return jsonify(item_body(item))


@bp.delete("/v1/items/<item_id>")
@deps.require_user
def delete_item(item_id: str):
    catalogue.delete_item(deps.ctx(), deps.own(Item, item_id, "item"))
    return "", 204


@bp.get("/v1/photos/<photo_id>")
def get_photo(photo_id: str):
    pid = deps.parse_uuid(photo_id, "photo")
    if deps.signature_instead_of_header():
        photo = deps.signed_row(Photo, pid, "photo")
        if not photo.storage_key:
            raise ApiError(404, "not_found", "no such photo, or the link expired")
        return _stream(photo.storage_key, "image/jpeg")
    return _get_photo_authed(pid)


@deps.require_user
def _get_photo_authed(pid):
    photo = owned.owned(deps.db(), Photo, pid, g.user_id)
    if photo is None or not photo.storage_key:
        raise ApiError(404, "not_found", "no such photo")
    return _stream(photo.storage_key, "image/jpeg")


@bp.delete("/v1/photos/<photo_id>")
@deps.require_user
def delete_photo(photo_id: str):
    """Delete a photo of an ended job with its items and their cut-outs (204). 409 while its job is going."""
    catalogue.purge_photo(deps.ctx(), deps.parse_uuid(photo_id, "photo"))
    return "", 204


@bp.get("/v1/categories")
def categories():
    return jsonify({"categories": [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in CLASSES],
                    "supercategories": list(SUPERCATEGORIES), "colors": list(COLOR_NAMES)})
