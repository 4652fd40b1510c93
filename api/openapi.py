"""The OpenAPI 3.1 document (api/openapi.yaml, shipped in the wheel), served at /v1/openapi.json.
Tests keep it in step with the routes (tests/test_api.py, tests/test_fuzz.py) and its enums in step
with the code (tests/test_structure.py)."""
from __future__ import annotations

from pathlib import Path

import yaml
from flask import Blueprint, jsonify

DOCUMENT = Path(__file__).resolve().parent / "openapi.yaml"

bp = Blueprint("openapi", __name__)


def load() -> dict:
    with open(DOCUMENT, encoding="utf-8") as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


SPEC = load()


@bp.get("/v1/openapi.json")
def openapi():
    return jsonify(SPEC)
