"""The signed-in user: who they are and their settings (the review threshold)."""
from __future__ import annotations

import math

from flask import Blueprint, g

from api import deps
from api.errors import ApiError, json_object
from db import catalogue, users
from db.models import User
from services import accounts

bp = Blueprint("me", __name__)


def _me_body(user: User) -> dict:
    default = deps.settings().review_below
    review_below = default if user.review_below is None else user.review_below
    waiting = catalogue.needing_review(deps.db(), user.id, review_below)
    return {
        "id": str(user.id),
        "name": user.name,
        "review_below": review_below,
        "review_below_default": default,
        "review_below_custom": user.review_below is not None,
        "items_needing_review": waiting,
    }


def _me() -> User:
    user = users.find(deps.db(), g.user_id)
    if user is None:  # deleted since the token was cached
        raise ApiError(401, "unauthorized", "the API token is not valid")
    return user


@bp.get("/v1/me")
@deps.require_user
def get_me():
    return _me_body(_me())


@bp.patch("/v1/me")
@deps.require_user
def update_me():
    """{"review_below": 0.0-1.0}, or null to follow the deployment's default again."""
    body = json_object('{"review_below": a number from 0 to 1, or null}', {"review_below"}, nonempty=True)
    value = body["review_below"]
    if value is not None:
        # an int is compared as it is: a huge one overflows math.isfinite
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (isinstance(value, float) and not math.isfinite(value)) or not 0 <= value <= 1:
            raise ApiError(422, "invalid_review_below", "review_below must be a number from 0 to 1, or null for the default")
        value = float(value)
    user = _me()
    accounts.set_review_below(deps.db(), user, value)
    return _me_body(user)
