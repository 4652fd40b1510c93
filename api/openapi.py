"""The OpenAPI 3.1 document (api/openapi.yaml, shipped in the wheel), served at /v1/openapi.json with this
deployment's own limits in it. Tests keep it in step with the routes (tests/test_api.py, tests/test_fuzz.py,
tests/test_openapi.py: its patterns are api/formats.py's, and schemathesis finds no request it describes
refused, nor one it forbids taken) and its enums in step with the code (tests/test_structure.py)."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml
from flask import Blueprint, current_app, jsonify

from api import deps

DOCUMENT = Path(__file__).resolve().parent / "openapi.yaml"

bp = Blueprint("openapi", __name__)


def load() -> dict:
    with open(DOCUMENT, encoding="utf-8") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


SPEC = load()


def for_settings(settings) -> dict:
    """The document with the limits a deployment sets itself: the largest upload (WARDROBE_MAX_UPLOAD_BYTES)
    and page (WARDROBE_PAGE_MAX). The file holds the defaults."""
    spec = copy.deepcopy(SPEC)
    components = spec["components"]
    components["schemas"]["UploadSessionCreate"]["properties"]["size"]["maximum"] = settings.max_upload_bytes
    components["parameters"]["limit"]["schema"]["maximum"] = settings.page_max
    return spec


@bp.get("/v1/openapi.json")
def openapi():
    served = current_app.extensions.get("wardrobe.openapi")
    if served is None:  # once per app: the settings do not change while it runs
        served = current_app.extensions["wardrobe.openapi"] = for_settings(deps.settings())
    return jsonify(served)
