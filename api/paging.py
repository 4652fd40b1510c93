"""Keyset paging: an opaque cursor holding the last row's (created_at, id)."""
from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

from api.errors import ApiError


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
