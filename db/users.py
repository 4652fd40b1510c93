"""Users and API tokens. Tokens are shown once and stored as SHA-256 digests."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ApiToken, User

TOKEN_PREFIX = "wdr_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_user(s: Session, name: str) -> tuple[User, str]:
    if not name or len(name) > 200 or not name.isprintable():
        raise ValueError("a user name is 1-200 printable characters")
    if s.scalar(select(User.id).where(User.name == name)) is not None:
        raise ValueError(f"user {name!r} already exists")
    user = User(name=name)
    s.add(user)
    s.flush()
    return user, issue_token(s, user.id)


def issue_token(s: Session, user_id: uuid.UUID) -> str:
    token = new_token()
    s.add(ApiToken(user_id=user_id, token_hash=hash_token(token), prefix=token[:10]))
    s.flush()
    return token


def user_for_token(s: Session, token: str) -> uuid.UUID | None:
    """The token's user, or None. The lookup is by digest (no timing signal about the
    token itself); the final comparison is constant-time anyway."""
    if not token or len(token) > 200:
        return None
    digest = hash_token(token)
    row = s.execute(
        select(ApiToken.user_id, ApiToken.token_hash).where(ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None))
    ).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return row.user_id


def find(s: Session, user_id: uuid.UUID) -> User | None:
    """The user, None once deleted (an API process caches a token's user for a few seconds)."""
    return s.get(User, user_id)


def review_below(s: Session, user_id: uuid.UUID) -> float | None:
    """The user's own review threshold; None: the deployment's default."""
    return s.scalar(select(User.review_below).where(User.id == user_id))
