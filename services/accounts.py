"""A user's account as they change it themselves: signing up from the page, their review threshold."""
from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import User
from db.users import create_user
from services.errors import Refused


def signup(s: Session, name: str) -> tuple[User, str]:
    """A new user and their first token, committed; 409 when the name is taken."""
    try:
        user, token = create_user(s, name)
        s.commit()
    except (ValueError, IntegrityError):
        s.rollback()
        raise Refused(409, "name_taken", "that name is taken") from None
    return user, token


def set_review_below(s: Session, user: User, value: float | None) -> None:
    """The user's own threshold (None: the deployment's default again), committed."""
    user.review_below = value
    s.commit()
