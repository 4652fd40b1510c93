"""Per-request resources: the DB session and the signed-in user."""
from __future__ import annotations

import functools
import logging
import threading
import time
import uuid

from flask import current_app, g, request
from sqlalchemy.orm import Session

from api import signing
from api.errors import ApiError
from core import logs
from db import owned, users
from db.session import new_session
from db.users import hash_token, user_for_token
from services.context import Ctx

log = logging.getLogger("wardrobe.api")


def db() -> Session:
    if "db" not in g:
        g.db = new_session()
    return g.db


def close_db(_exc=None) -> None:
    """Teardown: end the request's session. It runs after the response is made, so it must not
    raise: a connection that died meanwhile (a restarted or terminated backend) fails the
    rollback in close(); the connection is then invalidated (the pool drops it and opens a
    fresh one next time) and the response already made goes out as it is."""
    s = g.pop("db", None)
    if s is None:
        return
    try:
        s.close()
    except Exception as e:  # noqa: BLE001 - OperationalError, InterfaceError ... from the dead connection
        log.warning("closing the request's database session failed: %s", type(e).__name__)
        try:
            s.invalidate()
        except Exception:  # noqa: BLE001
            log.exception("invalidating the request's database session failed")


def storage():
    return current_app.extensions["wardrobe"].storage


def settings():
    return current_app.extensions["wardrobe"].settings


def celery():
    return current_app.extensions["celery"]


def ctx() -> Ctx:
    """This request's resources as a service takes them (services.context), for the signed-in user."""
    return Ctx(db(), settings(), storage(), celery(), g.user_id)


class TokenCache:
    """Tokens this process checked recently: digest -> (user id, when). A poll every second
    from every open page would otherwise cost a database round trip each just to re-learn who
    is asking. Only valid tokens are kept; a revoked one lapses within `ttl` seconds."""

    def __init__(self, max_entries: int = 10_000):
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[uuid.UUID, float]] = {}
        self.max_entries = max_entries

    def get(self, digest: str, ttl: float) -> uuid.UUID | None:
        hit = self._entries.get(digest)
        if hit is None or time.monotonic() - hit[1] >= ttl:
            return None
        return hit[0]

    def put(self, digest: str, user_id: uuid.UUID) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # crude but bounded; a full cache only costs a lookup each
            self._entries[digest] = (user_id, time.monotonic())


_tokens = TokenCache()


def _user_for(token: str) -> uuid.UUID | None:
    ttl = settings().token_cache_seconds
    if ttl <= 0 or len(token) > 200:
        return user_for_token(db(), token)
    digest = hash_token(token)
    user_id = _tokens.get(digest, ttl)
    if user_id is None:
        user_id = user_for_token(db(), token)
        if user_id is not None:
            _tokens.put(digest, user_id)
    return user_id


def require_user(view):
    """401 unless `Authorization: Bearer <token>` names a user; sets g.user_id."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "send an API token: Authorization: Bearer <token>",
                           {"WWW-Authenticate": 'Bearer realm="wardrobe"'})
        user_id = _user_for(token.strip())
        if user_id is None:
            raise ApiError(401, "unauthorized", "the API token is not valid",
                           {"WWW-Authenticate": 'Bearer realm="wardrobe", error="invalid_token"'})
        g.user_id = user_id
        logs.bind(user_id=user_id)
        return view(*args, **kwargs)

    return wrapper


def review_below() -> float:
    """The signed-in user's review threshold: their own, else the deployment's default."""
    if "review_below" not in g:
        own = users.review_below(db(), g.user_id)
        g.review_below = settings().review_below if own is None else own
    return g.review_below


def parse_uuid(value: str, what: str, not_found: bool = True) -> uuid.UUID:
    """A path id that is not a UUID is simply not found (404); a query id is a bad request (400)."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        if not_found:
            raise ApiError(404, "not_found", f"no such {what}") from None
        raise ApiError(400, "invalid_parameter", f"{what} must be a UUID") from None


def own(model, row_id: str, what: str):
    """The signed-in user's row of `model` named by a path id (a job, item, photo, export, webhook);
    404 `no such <what>` when the id is not a UUID, names no row, or names another user's."""
    row = owned.owned(db(), model, parse_uuid(row_id, what), g.user_id)
    if row is None:
        raise ApiError(404, "not_found", f"no such {what}")
    return row


# --- signed URLs: what an <img> or a plain link can carry instead of the Authorization header --------

def signer() -> signing.Signer:
    """path -> an expiring URL signed for the signed-in user (WARDROBE_SIGNED_URL_TTL from now)."""
    return signing.Signer(settings().resolved_secret_key(), g.user_id, settings().signed_url_ttl)


def signed_by(owner: uuid.UUID) -> bool:
    """This request's path carries a valid, unexpired signature for `owner`."""
    return signing.verify(settings().resolved_secret_key(), request.path, owner, request.args.get("expires"),
                          request.args.get("sig"))


def signed_row(model, row_id: uuid.UUID, what: str):
    """The row (with a user_id) that this request's signed URL names; 404 for no such row or a
    wrong or expired signature, alike."""
    row = owned.by_id(db(), model, row_id)
    if row is None or not signed_by(row.user_id):
        raise ApiError(404, "not_found", f"no such {what}, or the link expired")
    return row


def signature_instead_of_header() -> bool:
    """The request authenticates by its signed URL, not by a token."""
    return bool(request.args.get("sig")) and not request.headers.get("Authorization")
