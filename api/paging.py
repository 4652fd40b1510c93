"""Keyset paging: a cursor holding the last row's sort key and id. Newest-first lists carry
(created_at, id); the review list, least certain first, carries (confidence, id), so a cursor from one
order is refused by the other. Each is written as the document states it (api/formats.py): any string of
that form is a position in the list, so a client that keeps to the document is never refused."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from api import formats
from api.errors import ApiError
from db import owned

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)


def micros(ts: datetime) -> int:
    """A stamp as microseconds since 1970 in UTC (a naive stamp, as SQLite gives them, is UTC already)."""
    return ((ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)) - EPOCH) // MICROSECOND


def from_micros(n: int) -> datetime:
    """The stamp `n` microseconds after 1970, in UTC (17 digits at most: before the year 5139)."""
    return EPOCH + n * MICROSECOND


def _invalid(order: str = ""):
    return ApiError(400, "invalid_cursor", f"the cursor is not one this API returned{order}")


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    return f"{micros(created_at)}_{row_id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    if not formats.matches(formats.NEWEST_CURSOR, cursor):
        raise _invalid(" for this order" if formats.matches(formats.REVIEW_CURSOR, cursor) else "")
    key, rid = cursor.split("_")
    return from_micros(int(key)), uuid.UUID(rid)


def encode_confidence_cursor(confidence: float, row_id: uuid.UUID) -> str:
    return f"c{float(confidence)!r}_{row_id.hex}"  # repr of a float round-trips exactly


def decode_confidence_cursor(cursor: str) -> tuple[float, uuid.UUID]:
    if not formats.matches(formats.REVIEW_CURSOR, cursor):
        raise _invalid(" for this order")
    key, rid = cursor[1:].split("_")
    return float(key), uuid.UUID(rid)


def page_limit(args, settings) -> int:
    raw = args.get("limit")
    if raw is None:
        return settings.page_default
    if not (raw.isascii() and raw.removeprefix("-").isdigit()):  # int() would take " 5", "+5" and "1_0" too
        raise ApiError(400, "invalid_parameter", "limit must be an integer")
    n = int(raw)
    if not 1 <= n <= settings.page_max:
        raise ApiError(400, "invalid_parameter", f"limit must be between 1 and {settings.page_max}")
    return n


def newest_first(session, model, args, settings, **where) -> tuple[list, str | None]:
    """One page of the rows of `model` matching `where` (db.owned.newest_first), newest first, after the
    request's `cursor`, at most its `limit`; and the cursor of the next page (None on the last)."""
    limit = page_limit(args, settings)
    cursor = args.get("cursor")
    # an empty cursor too is not one this API gave
    rows = owned.newest_first(session, model, limit + 1, decode_cursor(cursor) if cursor is not None else None, **where)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
