"""A user's own rows, as the API reads them: one row by id when it is theirs (jobs, items, photos,
exports, webhook endpoints: every table with a user_id), and a page of rows newest first."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session


def owned(s: Session, model, row_id: uuid.UUID, user_id: uuid.UUID):
    """The row of `model` with this id when it is the user's, else None (another user's row is as
    absent as a missing one)."""
    return s.scalar(select(model).where(model.id == row_id, model.user_id == user_id))


def by_id(s: Session, model, row_id: uuid.UUID):
    """The row whoever owns it (a signed URL names its owner by its signature, not by a token)."""
    return s.get(model, row_id)


def newest_first(s: Session, model, limit: int, after: tuple[datetime, uuid.UUID] | None = None, **where) -> list:
    """Rows of `model` (which has created_at and id) matching `where` (column=value), newest first,
    after `after` (the created_at and id of the last row of the previous page), at most `limit`."""
    q = select(model).filter_by(**where)
    if after is not None:
        ts, last_id = after
        q = q.where((model.created_at < ts) | ((model.created_at == ts) & (model.id < last_id)))
    return list(s.scalars(q.order_by(model.created_at.desc(), model.id.desc()).limit(limit)))
