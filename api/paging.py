"""Keyset paging: an opaque cursor holding the last row's sort key and id. Newest-first lists
carry (created_at, id); the review list, least certain first, carries ("confidence", value, id),
so a cursor from one order is refused by the other."""
from __future__ import annotations

import base64
import json
import math
import uuid
from datetime import datetime

from api.errors import ApiError
from db import owned


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, rid = json.loads(raw)
        return datetime.fromisoformat(ts), uuid.UUID(rid)
    except Exception:  # noqa: BLE001 - anything undecodable is the client's mistake
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API returned") from None


def encode_confidence_cursor(confidence: float, row_id: uuid.UUID) -> str:
    raw = json.dumps(["confidence", confidence, str(row_id)]).encode()  # repr of a float round-trips exactly
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_confidence_cursor(cursor: str) -> tuple[float, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tag, value, rid = json.loads(raw)
        if tag != "confidence" or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(tag)
        return float(value), uuid.UUID(rid)
    except Exception:  # noqa: BLE001 - anything undecodable is the client's mistake
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API returned for this order") from None


def page_limit(args, settings) -> int:
    raw = args.get("limit")
    if raw is None:
        return settings.page_default
    try:
        n = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", "limit must be an integer") from None
    if not 1 <= n <= settings.page_max:
        raise ApiError(400, "invalid_parameter", f"limit must be between 1 and {settings.page_max}")
    return n


def newest_first(session, model, args, settings, **where) -> tuple[list, str | None]:
    """One page of the rows of `model` matching `where` (db.owned.newest_first), newest first, after the
    request's `cursor`, at most its `limit`; and the cursor of the next page (None on the last)."""
    limit = page_limit(args, settings)
    cursor = args.get("cursor")
    rows = owned.newest_first(session, model, limit + 1, decode_cursor(cursor) if cursor else None, **where)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
