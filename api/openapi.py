"""The OpenAPI 3.1 document, served at /v1/openapi.json. A test keeps it in step with the routes."""
from __future__ import annotations

from flask import Blueprint, jsonify

from core.palette import COLOR_NAMES
from core.taxonomy import NAMES, SUPERCATEGORIES
from db.models import JobStatus

bp = Blueprint("openapi", __name__)

_err = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_auth = [{"bearer": []}]


def _json(ref: str, desc: str = "ok") -> dict:
    return {"description": desc, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _desc(description: str, headers: dict | None = None) -> dict:
    """An error answer with its own description (and headers)."""
    out = {"description": description, "content": _err["content"]}
    if headers:
        out["headers"] = headers
    return out


def _id_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}


_page = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "wardrobe", "version": "1", "description": "Upload photos of clothes; get a catalogue of garments."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "object", "required": ["code", "message"],
                                         "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
            },
            "Job": {
                "type": "object",
                "required": ["id", "status", "created_at", "progress", "errors", "links"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "status": {"type": "string", "enum": [s.value for s in JobStatus]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "started_at": {"type": ["string", "null"], "format": "date-time"},
                    "finished_at": {"type": ["string", "null"], "format": "date-time"},
                    "upload": {"type": "object"},
                    "progress": {
                        "type": "object",
                        "properties": {k: {"type": "integer"} for k in ("photos_total", "photos_done", "photos_failed",
                                                                        "photos_duplicate", "items_found")}
                        | {"percent": {"type": "number"},
                           "photos_per_second": {"type": ["number", "null"], "description": "photos processed per second since the job started"},
                           "eta_seconds": {"type": ["integer", "null"], "description": "while running: seconds left at that pace"}},
                    },
                    "errors": {"type": "array", "items": {"type": "object", "properties": {
                        "entry": {"type": ["string", "null"]}, "code": {"type": "string"}, "message": {"type": "string"}}}},
                    "duplicates": {"type": "array", "items": {"type": "object", "properties": {
                        "entry": {"type": "string"}, "photo_id": {"type": ["string", "null"], "format": "uuid"}}}},
                    "links": {"type": "object"},
                },
            },
            "JobList": {"type": "object", "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                                                         "next_cursor": {"type": ["string", "null"]}}},
            "Photo": {"type": "object", "required": ["id", "entry", "entry_index", "status"], "properties": {
                "id": {"type": "string", "format": "uuid"}, "entry": {"type": "string"}, "entry_index": {"type": "integer"},
                "status": {"type": "string", "enum": ["pending", "done", "failed", "duplicate"]},
                "width": {"type": ["integer", "null"]}, "height": {"type": ["integer", "null"]},
                "original_size": {"type": ["array", "null"], "items": {"type": "integer"}},
                "error": {"type": ["object", "null"]}, "duplicate_of": {"type": ["string", "null"], "format": "uuid"},
                "photo_url": {"type": ["string", "null"]}, "items_url": {"type": "string"}}},
            "PhotoList": {"type": "object", "properties": {"photos": {"type": "array", "items": {"$ref": "#/components/schemas/Photo"}},
                                                           "next_cursor": {"type": ["string", "null"]}}},
            "Item": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "photo_id": {"type": "string", "format": "uuid"},
                    "job_id": {"type": "string", "format": "uuid"},
                    "class_id": {"type": "integer", "minimum": 0, "maximum": 22},
                    "category": {"type": "string", "enum": list(NAMES)},
                    "supercategory": {"type": "string", "enum": list(SUPERCATEGORIES)},
                    "confidence": {"type": "number"},
                    "bbox": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
                    "mask": {"type": "object"},
                    "area_fraction": {"type": "number"},
                    "model_version": {"type": "string"},
                    "cutout_url": {"type": "string"},
                    "cutout_size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2,
                                    "description": "[width, height] of the cut-out image"},
                    "photo_url": {"type": "string"},
                    "color": {"type": ["string", "null"]},
                    "colors": {"type": "array", "items": {"type": "object", "properties": {
                        "hex": {"type": "string"}, "name": {"type": "string"}, "fraction": {"type": "number"}}}},
                    "duplicate_of": {"type": ["string", "null"], "format": "uuid"},
                    "status": {"type": "string", "enum": ["ok", "not_garment"]},
                    "corrected": {"type": "boolean", "description": "a user changed the class or said it is not a garment"},
                    "original_class_id": {"type": ["integer", "null"], "description": "the model's class, when a user changed it"},
                    "reviewed": {"type": "boolean",
                                 "description": "a user corrected or confirmed the item (PATCH /v1/items/{item_id})"},
                    "needs_review": {"type": "boolean",
                                     "description": "status ok, not reviewed, and confidence below the user's review_below"},
                    "alternatives": {"type": "array", "maxItems": 3,
                                     "description": "the model's other classes for the garment, best first; never the "
                                                    "item's current class; empty when the model gave none",
                                     "items": {"$ref": "#/components/schemas/Alternative"}},
                    "cutout_signed_url": {"type": "string", "description": "expiring URL that needs no Authorization header"},
                    "photo_signed_url": {"type": "string"},
                    "created_at": {"type": "string", "format": "date-time"},
                },
            },
            "Alternative": {
                "type": "object",
                "required": ["class_id", "category", "confidence"],
                "properties": {"class_id": {"type": "integer", "minimum": 0, "maximum": 22},
                               "category": {"type": "string", "enum": list(NAMES)},
                               "confidence": {"type": "number"}},
            },
            "Me": {
                "type": "object",
                "required": ["id", "name", "review_below", "review_below_default", "review_below_custom",
                             "items_needing_review"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "name": {"type": "string"},
                    "review_below": {"type": "number", "minimum": 0, "maximum": 1,
                                     "description": "items below this confidence need review: the user's own "
                                                    "threshold, else the deployment's default"},
                    "review_below_default": {"type": "number", "description": "the deployment's WARDROBE_REVIEW_BELOW"},
                    "review_below_custom": {"type": "boolean", "description": "the user set a threshold of their own"},
                    "items_needing_review": {"type": "integer", "description": "how many items need review now"},
                },
            },
            "ItemList": {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                                                          "next_cursor": {"type": ["string", "null"]}}},
        },
    },
    "paths": {
        "/healthz": {"get": {"summary": "process is up", "responses": {"200": {"description": "ok"}}}},
        "/favicon.ico": {"get": {"summary": "the page's icon (SVG)", "responses": {"200": {"description": "image/svg+xml"}}}},
        "/readyz": {"get": {"summary": "database, broker and storage reachable (503 if not); `workers`: how many answer a ping",
                            "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
        "/metrics": {"get": {"summary": "Prometheus text format: requests per route, queue depth, jobs by status, the workers' counters",
                             "responses": {"200": {"description": "text/plain; version=0.0.4"}}}},
        "/v1/categories": {"get": {"summary": "the 23-class taxonomy", "responses": {"200": {"description": "ok"}}}},
        "/v1/uploads": {
            "post": {
                "summary": "upload a zip of photos; answers 202 with the queued job",
                "security": _auth,
                "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                                "description": "same key and payload -> the same job; another payload -> 422; "
                                               "while the first is being accepted -> 409"}],
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
                    "application/zip": {"schema": {"type": "string", "format": "binary"}},
                }},
                "responses": {"202": _json("Job", "queued"), "400": _err, "401": _err, "409": _err,
                              "413": _desc("too large, too many entries, or the user's kept uploads over WARDROBE_MAX_STORED_BYTES "
                                           "(storage_quota_exceeded)"), "415": _err,
                              "422": _err,
                              "429": _desc("the user's uploads in flight (too_many_uploads_in_flight) or in the last hour "
                                           "(too_many_uploads) at their limit; Retry-After says when to try again",
                                           {"Retry-After": {"schema": {"type": "integer"}}}),
                              "503": _err},
            }
        },
        "/v1/jobs": {"get": {"summary": "the user's jobs, newest first", "security": _auth, "parameters": _page,
                             "responses": {"200": _json("JobList"), "400": _err, "401": _err}}},
        "/v1/jobs/{job_id}": {
            "get": {"summary": "a job's status and progress", "security": _auth, "parameters": [_id_param("job_id")],
                    "responses": {"200": _json("Job"), "401": _err, "404": _err}},
            "delete": {"summary": "cancel a queued or running job", "security": _auth, "parameters": [_id_param("job_id")],
                       "responses": {"200": _json("Job"), "401": _err, "404": _err, "409": _err}},
        },
        "/v1/jobs/{job_id}/data": {
            "delete": {"summary": "delete an ended job with everything it brought: its photos, items, cut-outs, zip and the "
                                  "job itself (404 afterwards); 409 while it is queued or running (cancel it first)",
                       "security": _auth, "parameters": [_id_param("job_id")],
                       "responses": {"204": {"description": "deleted"}, "401": _err, "404": _err, "409": _err, "503": _err}}},
        "/v1/jobs/{job_id}/photos": {
            "get": {"summary": "a job's photos in zip order: entry name, state, stored size", "security": _auth,
                    "parameters": [_id_param("job_id")] + _page,
                    "responses": {"200": _json("PhotoList"), "400": _err, "401": _err, "404": _err}}},
        "/v1/items": {
            "get": {
                "summary": "the user's catalogue, newest first",
                "security": _auth,
                "parameters": _page + [
                    {"name": "category", "in": "query", "schema": {"type": "string", "enum": list(NAMES)},
                     "description": "a class's full name, or any one of its comma-separated names, in any case (bag = bag, wallet)"},
                    {"name": "supercategory", "in": "query", "schema": {"type": "string", "enum": list(SUPERCATEGORIES)}},
                    {"name": "job_id", "in": "query", "schema": {"type": "string", "format": "uuid"}},
                    {"name": "photo_id", "in": "query", "schema": {"type": "string", "format": "uuid"}},
                    {"name": "min_confidence", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 1}},
                    {"name": "color", "in": "query", "schema": {"type": "string", "enum": list(COLOR_NAMES)}},
                    {"name": "hide_duplicates", "in": "query", "schema": {"type": "boolean"}},
                    {"name": "include_not_garment", "in": "query", "schema": {"type": "boolean"}},
                    {"name": "needs_review", "in": "query", "schema": {"type": "boolean"},
                     "description": "true: only items that need review, least certain first (confidence, then id); "
                                    "false: only the others, newest first"},
                ],
                "responses": {"200": _json("ItemList"), "400": _err, "401": _err},
            }
        },
        "/v1/items/{item_id}": {
            "get": {"summary": "one item", "security": _auth, "parameters": [_id_param("item_id")],
                    "responses": {"200": _json("Item"), "401": _err, "404": _err}},
            "delete": {"summary": "delete an item and its cut-out", "security": _auth, "parameters": [_id_param("item_id")],
                       "responses": {"204": {"description": "deleted"}, "401": _err, "404": _err, "503": _err}},
            "patch": {
                "summary": "correct an item: its category, or that it is not a garment; its current class confirms it. "
                           "Any of these marks it reviewed",
                "security": _auth,
                "parameters": [_id_param("item_id")],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "minProperties": 1, "additionalProperties": False,
                    "properties": {"category": {"type": "string", "enum": list(NAMES),
                                                "description": "as the list's category filter: any of a class's names, any case"},
                                   "class_id": {"type": "integer", "minimum": 0, "maximum": 22},
                                   "not_garment": {"type": "boolean"}}}}}},
                "responses": {"200": _json("Item"), "400": _err, "401": _err, "404": _err, "413": _err, "422": _err},
            },
        },
        "/v1/me": {
            "get": {"summary": "the signed-in user and their review threshold", "security": _auth,
                    "responses": {"200": _json("Me"), "401": _err}},
            "patch": {
                "summary": "set the review threshold; null follows the deployment's default again",
                "security": _auth,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["review_below"], "additionalProperties": False,
                    "properties": {"review_below": {"type": ["number", "null"], "minimum": 0, "maximum": 1}}}}}},
                "responses": {"200": _json("Me"), "400": _err, "401": _err, "413": _err, "422": _err},
            },
        },
        "/v1/items/{item_id}/cutout": {"get": {"summary": "the RGBA cut-out (mask as alpha); bearer token, or a signed URL",
                                              "security": _auth,
                                              "parameters": [_id_param("item_id"),
                                                             {"name": "expires", "in": "query", "schema": {"type": "integer"}},
                                                             {"name": "sig", "in": "query", "schema": {"type": "string"}}],
                                              "responses": {"200": {"description": "image/webp or image/png"}, "401": _err, "404": _err,
                                                            "503": _err}}},
        "/v1/photos/{photo_id}": {"get": {"summary": "the stored, upright photo; bearer token, or a signed URL",
                                         "security": _auth,
                                         "parameters": [_id_param("photo_id"),
                                                        {"name": "expires", "in": "query", "schema": {"type": "integer"}},
                                                        {"name": "sig", "in": "query", "schema": {"type": "string"}}],
                                         "responses": {"200": {"description": "image/jpeg"}, "401": _err, "404": _err,
                                                       "503": _err}},
                                  "delete": {"summary": "delete a photo of an ended job with its items and their cut-outs; "
                                                        "409 while its job is queued or running",
                                             "security": _auth, "parameters": [_id_param("photo_id")],
                                             "responses": {"204": {"description": "deleted"}, "401": _err, "404": _err,
                                                           "409": _err, "503": _err}}},
        "/v1/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "ok"}}}},
        "/": {"get": {"summary": "the web page", "responses": {"200": {"description": "text/html"}}}},
        "/v1/config": {"get": {"summary": "what the web page needs to know", "responses": {"200": {"description": "ok"}}}},
        "/v1/users": {"post": {
            "summary": "sign up (only where WARDROBE_ALLOW_SIGNUP is on); answers the new token once",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200}}}}}},
            "responses": {"201": {"description": "created"}, "400": _err, "403": _err, "409": _err, "413": _err}}},
    },
}


# Answers any operation can get: from gunicorn before the app sees the request (414: a request line over
# 4094 bytes; 431: too many or too large headers), and 413 for a body over the route's cap (64 KiB but on the upload)
for _ops in SPEC["paths"].values():
    for _op in _ops.values():
        _op["responses"].setdefault("413", _desc("the request body is larger than this route's cap"))
        _op["responses"].setdefault("414", _desc("the request line (method, path and query) is longer than 4094 bytes"))
        _op["responses"].setdefault("431", _desc("too many or too large request headers"))


@bp.get("/v1/openapi.json")
def openapi():
    return jsonify(SPEC)
