"""The web page: one static HTML file and a script that talk to the JSON API. No build step."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, jsonify, send_from_directory

from api import deps
from api.errors import ApiError, json_object
from services import accounts

STATIC = Path(__file__).resolve().parent / "static"
bp = Blueprint("web", __name__, static_folder=str(STATIC), static_url_path="/static")


@bp.get("/")
def index():
    resp = send_from_directory(STATIC, "index.html")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
    return resp


@bp.get("/docs")
def docs():
    """Swagger UI (vendored from npm: static/vendor/swagger-ui, scripts/vendor.sh) over /v1/openapi.json,
    the document the API serves: nothing is fetched from another site."""
    resp = send_from_directory(STATIC, "docs.html")
    resp.headers["Cache-Control"] = "no-cache"
    # Swagger UI sets style attributes as it draws; scripts stay the API's own files only
    resp.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        "frame-ancestors 'none'")
    return resp


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for it on every page whatever the page links to: the same icon, no 404."""
    resp = send_from_directory(STATIC, "favicon.svg", mimetype="image/svg+xml")
    resp.headers["Cache-Control"] = "public, max-age=86400"
    return resp


@bp.get("/v1/config")
def config():
    s = deps.settings()
    return jsonify({"allow_signup": s.allow_signup, "max_upload_bytes": s.max_upload_bytes})


@bp.post("/v1/users")
def signup():
    """Create a user from the page, when the server allows sign-up (off by default)."""
    if not deps.settings().allow_signup:
        raise ApiError(403, "signup_disabled", "this server does not allow sign-up; ask its operator for a token")
    name = json_object('{"name": NAME}', {"name"}).get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
        raise ApiError(400, "invalid_body", "send {\"name\": NAME} with 1-200 printable characters")
    user, token = accounts.signup(deps.db(), name.strip())
    resp = jsonify({"user_id": str(user.id), "name": user.name, "token": token})
    resp.status_code = 201
    return resp
