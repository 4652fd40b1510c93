"""The OpenAPI 3.1 document, served at /v1/openapi.json. A test keeps it in step with the routes."""
from __future__ import annotations

from flask import Blueprint, jsonify

from core.palette import COLOR_NAMES
from core.taxonomy import NAMES, SUPERCATEGORIES
from db.models import ExportStatus, JobStatus
from db.webhooks import EVENTS as WEBHOOK_EVENTS

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


_poll_headers = {"Location": {"schema": {"type": "string"}},
                 "Retry-After": {"description": "seconds to wait before polling the job", "schema": {"type": "integer"}}}

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
                    "retried_photos": {"type": "integer", "description": "POST /v1/jobs/{job_id}/retry only"},
                    "retryable": {"type": "boolean", "description": "one job (not in lists): whether POST "
                                  "/v1/jobs/{job_id}/retry would run: photos that failed for a transient reason, or "
                                  "the rest of a zip not read to its end while it is kept (WARDROBE_UPLOAD_RETRY_RETENTION)"},
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
            "UploadSession": {
                "type": "object",
                "required": ["id", "mode", "status", "filename", "size", "offset", "created_at", "expires_at", "job_id",
                             "links"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "mode": {"type": "string", "enum": ["s3_multipart", "chunked"],
                             "description": "s3_multipart: PUT the parts to presigned URLs (POST .../parts); chunked: "
                                            "PATCH the bytes to the session with Upload-Offset (tus 1.0)"},
                    "status": {"type": "string", "enum": ["open", "assembled", "completed"],
                               "description": "assembled: the parts are one object, the job not made yet (complete again)"},
                    "filename": {"type": "string"}, "size": {"type": "integer"},
                    "sha256": {"type": ["string", "null"]},
                    "offset": {"type": "integer", "description": "bytes received so far"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "job_id": {"type": ["string", "null"], "format": "uuid", "description": "once completed"},
                    "part_size": {"type": "integer", "description": "s3_multipart: every part's length but the last's"},
                    "part_count": {"type": "integer"},
                    "parts": {"type": "array", "description": "s3_multipart: the parts the bucket holds (ListParts)",
                              "items": {"type": "object", "properties": {"number": {"type": "integer"},
                                                                         "size": {"type": "integer"},
                                                                         "etag": {"type": ["string", "null"]}}}},
                    "missing_parts": {"type": "array", "items": {"type": "integer"}},
                    "links": {"type": "object"},
                },
            },
            "Webhook": {
                "type": "object",
                "required": ["id", "url", "events", "enabled", "created_at", "links"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "url": {"type": "string"},
                    "events": {"type": "array", "items": {"type": "string", "enum": list(WEBHOOK_EVENTS)}},
                    "enabled": {"type": "boolean", "description": "false once the endpoint answered 410 Gone"},
                    "disabled_reason": {"type": ["string", "null"]},
                    "disabled_at": {"type": ["string", "null"], "format": "date-time"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "secret": {"type": "string", "description": "whsec_...: the signing secret, only in the answer to "
                                                                "the POST that created the endpoint"},
                    "links": {"type": "object"},
                },
            },
            "WebhookList": {"type": "object", "properties": {
                "webhooks": {"type": "array", "items": {"$ref": "#/components/schemas/Webhook"}},
                "next_cursor": {"type": ["string", "null"]}}},
            "WebhookDelivery": {
                "type": "object",
                "required": ["id", "type", "status", "created_at", "attempts", "payload"],
                "properties": {
                    "id": {"type": "string", "description": "the webhook-id header of every attempt"},
                    "type": {"type": "string", "enum": list(WEBHOOK_EVENTS)},
                    "job_id": {"type": ["string", "null"], "format": "uuid"},
                    "status": {"type": "string", "enum": ["pending", "delivered", "failed", "cancelled"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                    "finished_at": {"type": ["string", "null"], "format": "date-time"},
                    "attempts": {"type": "array", "items": {"type": "object", "properties": {
                        "attempt": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                        "status_code": {"type": ["integer", "null"]}, "duration_ms": {"type": "integer"},
                        "error": {"type": ["string", "null"]}}}},
                    "payload": {"type": "object", "description": "the body sent: {type, timestamp, data}"},
                },
            },
            "WebhookDeliveryList": {"type": "object", "properties": {
                "deliveries": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookDelivery"}},
                "next_cursor": {"type": ["string", "null"]}}},
            "Export": {
                "type": "object",
                "required": ["id", "status", "created_at", "progress", "links"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "status": {"type": "string", "enum": [s.value for s in ExportStatus]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "started_at": {"type": ["string", "null"], "format": "date-time"},
                    "finished_at": {"type": ["string", "null"], "format": "date-time"},
                    "progress": {"type": "object", "properties": {
                        **{k: {"type": "integer"} for k in ("photos_total", "photos_done", "items_total", "items_done")},
                        "percent": {"type": "number"}}},
                    "size_bytes": {"type": ["integer", "null"], "description": "the zip's size, once it is ready"},
                    "expires_at": {"type": ["string", "null"], "format": "date-time",
                                   "description": "when a succeeded export's zip is deleted (WARDROBE_EXPORT_RETENTION); "
                                                  "then its status is expired"},
                    "error": {"type": ["object", "null"], "properties": {"code": {"type": "string"},
                                                                         "message": {"type": "string"}}},
                    "links": {"type": "object", "description": "self, download; and, once it has succeeded, download_signed: "
                                                             "the download as an expiring signed URL that needs no "
                                                             "Authorization header (WARDROBE_SIGNED_URL_TTL)"},
                },
            },
            "ExportList": {"type": "object", "properties": {
                "exports": {"type": "array", "items": {"$ref": "#/components/schemas/Export"}},
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
                "responses": {"202": {**_json("Job", "queued"), "headers": _poll_headers}, "400": _err, "401": _err, "409": _err,
                              "413": _desc("too large, too many entries, or the user's stored photos, cut-outs, kept zips and "
                                           "exports with it over WARDROBE_MAX_STORED_BYTES (storage_quota_exceeded)"), "415": _err,
                              "422": _err,
                              "429": _desc("the user's uploads in flight (too_many_uploads_in_flight) or in the last hour "
                                           "(too_many_uploads) at their limit; Retry-After says when to try again",
                                           {"Retry-After": {"schema": {"type": "integer"}}}),
                              "503": _err},
            }
        },
        "/v1/upload-sessions": {"post": {
            "summary": "begin a resumable upload: S3 multipart parts to presigned URLs, or chunks PATCHed here (tus 1.0)",
            "security": _auth,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["size"], "additionalProperties": False,
                "properties": {"filename": {"type": "string", "maxLength": 512},
                               "size": {"type": "integer", "minimum": 1, "description": "the zip's length in bytes"},
                               "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$",
                                          "description": "checked against the bytes in chunked mode; recorded in S3 mode"}}}}}},
            "responses": {"201": _json("UploadSession", "created"),
                          "200": _json("UploadSession", "the user's open session for the same size and sha256"),
                          "400": _err, "401": _err,
                          "413": _desc("over WARDROBE_MAX_UPLOAD_BYTES, or the user's stored bytes and open sessions over "
                                       "WARDROBE_MAX_STORED_BYTES"),
                          "429": _desc("too many open sessions (too_many_upload_sessions) or uploads in flight or in the "
                                       "last hour", {"Retry-After": {"schema": {"type": "integer"}}}),
                          "503": _err}}},
        "/v1/upload-sessions/{session_id}": {
            "get": {"summary": "the session: bytes received (offset), and in S3 mode the parts the bucket holds; HEAD "
                               "answers Upload-Offset and Upload-Length (tus)",
                    "security": _auth, "parameters": [_id_param("session_id")],
                    "responses": {"200": _json("UploadSession"), "401": _err, "404": _err, "503": _err}},
            "patch": {"summary": "chunked mode: append the next chunk at Upload-Offset (tus 1.0); 204 with the new "
                                 "Upload-Offset, 409 with the right one when it is not the bytes received",
                      "security": _auth,
                      "parameters": [_id_param("session_id"),
                                     {"name": "Upload-Offset", "in": "header", "required": True,
                                      "schema": {"type": "integer", "minimum": 0}},
                                     {"name": "Tus-Resumable", "in": "header", "required": False,
                                      "schema": {"type": "string", "enum": ["1.0.0"]}}],
                      "requestBody": {"required": True, "content": {  # tus' type; the plain one is taken too
                          "application/offset+octet-stream": {"schema": {"type": "string", "format": "binary"}},
                          "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                      "responses": {"204": {"description": "appended; Upload-Offset: the bytes received"}, "400": _err,
                                    "401": _err, "404": _err, "409": _err, "411": _err, "412": _err, "413": _err,
                                    "415": _err, "503": _err}},
            "delete": {"summary": "abort: the parts or chunks received are deleted; 409 once completed",
                       "security": _auth, "parameters": [_id_param("session_id")],
                       "responses": {"204": {"description": "aborted"}, "401": _err, "404": _err, "409": _err,
                                     "503": _err}},
        },
        "/v1/upload-sessions/{session_id}/parts": {"post": {
            "summary": "s3_multipart: presigned URLs to PUT parts to, each signed for its part's length; no body: the "
                       "missing parts (at most 1000)",
            "security": _auth, "parameters": [_id_param("session_id")],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"numbers": {"type": "array", "minItems": 1, "maxItems": 1000,
                                           "items": {"type": "integer", "minimum": 1}}}}}}},
            "responses": {"200": {"description": "{parts: [{number, size, url}], expires_at}"}, "400": _err, "401": _err,
                          "404": _err, "409": _err}}},
        "/v1/upload-sessions/{session_id}/complete": {"post": {
            "summary": "the bytes are all there: check the zip and make the job (202, as POST /v1/uploads); completing "
                       "again answers the same job",
            "security": _auth, "parameters": [_id_param("session_id")],
            "responses": {"202": {**_json("Job", "queued"), "headers": _poll_headers}, "401": _err, "404": _err,
                          "409": _desc("not all received yet (upload_incomplete) or a part of the wrong length"),
                          "413": _err, "422": _desc("not a zip, no images, ...: the bytes and the session are deleted"),
                          "429": _desc("the user's uploads in flight or in the last hour at their limit; the bytes stay: "
                                       "complete again later", {"Retry-After": {"schema": {"type": "integer"}}}),
                          "503": _err}}},
        "/v1/jobs": {"get": {"summary": "the user's jobs, newest first", "security": _auth, "parameters": _page,
                             "responses": {"200": _json("JobList"), "400": _err, "401": _err}}},
        "/v1/jobs/{job_id}": {
            "get": {"summary": "a job's status and progress", "security": _auth, "parameters": [_id_param("job_id")],
                    "responses": {"200": _json("Job"), "401": _err, "404": _err}},
            "delete": {"summary": "cancel a queued or running job", "security": _auth, "parameters": [_id_param("job_id")],
                       "responses": {"200": _json("Job"), "401": _err, "404": _err, "409": _err}},
        },
        "/v1/jobs/{job_id}/retry": {
            "post": {"summary": "run an ended job's photos that failed for a transient reason again, as the same job "
                                "(segmentation gave up, the job failed or was cancelled before they were segmented); "
                                "entries that are no image stay failed. `retried_photos` says how many go again",
                     "security": _auth, "parameters": [_id_param("job_id")],
                     "responses": {"202": {**_json("Job", "queued again"), "headers": _poll_headers}, "401": _err,
                                   "404": _err,
                                   "409": _desc("job_active, nothing_to_retry, upload_gone (the zip was never read to "
                                                "its end and is no longer kept) or retry_conflict"),
                                   "503": _err}}},
        "/v1/jobs/{job_id}/events": {
            "get": {"summary": "the job's progress as Server-Sent Events: `progress` (the job, whenever it moves), "
                               "`item` (each garment as it is found), `photo_failed` (each photo that failed), `end` "
                               "(the job once it has ended; the stream closes). Reconnect with Last-Event-ID to get "
                               "only what came after (an item of the last 30 s may come twice: dedupe by its id)",
                    "security": _auth,
                    "parameters": [_id_param("job_id"),
                                   {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                                   {"name": "last_event_id", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "the event stream",
                                          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                                  "400": _err, "401": _err, "404": _err,
                                  "503": _desc("too_many_streams: poll GET /v1/jobs/{job_id} instead",
                                               {"Retry-After": {"schema": {"type": "integer"}}})}}},
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
        "/v1/exports": {
            "post": {"summary": "export the catalogue: a zip of COCO JSON, photos and cut-outs, built by a task; answers "
                                "202 with the queued export (or the user's export already queued or running)",
                     "security": _auth,
                     "responses": {"202": {**_json("Export", "queued"), "headers": {
                         "Location": {"schema": {"type": "string"}}, "Retry-After": {"schema": {"type": "integer"}}}},
                         "401": _err, "413": _desc("the user stores WARDROBE_MAX_STORED_BYTES already "
                                                   "(storage_quota_exceeded)"), "503": _err}},
            "get": {"summary": "the user's exports, newest first", "security": _auth, "parameters": _page,
                    "responses": {"200": _json("ExportList"), "400": _err, "401": _err}},
        },
        "/v1/exports/{export_id}": {
            "get": {"summary": "an export's status and progress", "security": _auth, "parameters": [_id_param("export_id")],
                    "responses": {"200": _json("Export"), "401": _err, "404": _err}},
            "delete": {"summary": "delete an export and its zip; one in the making stops", "security": _auth,
                       "parameters": [_id_param("export_id")],
                       "responses": {"204": {"description": "deleted"}, "401": _err, "404": _err, "503": _err}},
        },
        "/v1/exports/{export_id}/download": {
            "get": {"summary": "the export's zip (Content-Disposition: attachment); 409 until it has succeeded",
                    "security": _auth, "parameters": [_id_param("export_id")],
                    "responses": {"200": {"description": "application/zip"}, "401": _err, "404": _err,
                                  "409": _desc("the export is not ready (queued, running or failed)",
                                               {"Retry-After": {"schema": {"type": "integer"}}}),
                                  "410": _desc("the export expired: its zip was deleted after WARDROBE_EXPORT_RETENTION, or "
                                               "replaced by a newer one past WARDROBE_MAX_EXPORTS (export_expired)"),
                                  "503": _err}}},
        "/v1/export": {
            "get": {"summary": "the newest ready export: 303 to its download; 404 no_export when none (start one with "
                               "POST /v1/exports)",
                    "security": _auth,
                    "responses": {"303": {"description": "see Location: /v1/exports/{export_id}/download",
                                          "headers": {"Location": {"schema": {"type": "string"}}}},
                                  "401": _err, "404": _err}}},
        "/v1/webhooks": {
            "post": {
                "summary": "register an endpoint for job events (Standard Webhooks); answers 201 with its signing "
                           "secret, shown this once",
                "security": _auth,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["url"], "additionalProperties": False,
                    "properties": {"url": {"type": "string", "format": "uri", "maxLength": 2048,
                                           "description": "http(s); its host must resolve to public addresses only"},
                                   "events": {"type": "array", "minItems": 1, "uniqueItems": True,
                                              "items": {"type": "string", "enum": list(WEBHOOK_EVENTS)},
                                              "description": "default: the four job.* end events; job.progress is opt-in"}}}}}},
                "responses": {"201": {**_json("Webhook", "created"), "headers": {"Location": {"schema": {"type": "string"}}}},
                              "400": _desc("not JSON, unknown fields or events, or a URL that is not http(s) or "
                                           "resolves to a private address (invalid_url)"),
                              "401": _err,
                              "409": _desc("the user has WARDROBE_WEBHOOK_MAX_ENDPOINTS endpoints (too_many_webhooks)")},
            },
            "get": {"summary": "the user's webhook endpoints, newest first", "security": _auth, "parameters": _page,
                    "responses": {"200": _json("WebhookList"), "400": _err, "401": _err}},
        },
        "/v1/webhooks/{webhook_id}": {
            "get": {"summary": "one endpoint (without its secret)", "security": _auth, "parameters": [_id_param("webhook_id")],
                    "responses": {"200": _json("Webhook"), "401": _err, "404": _err}},
            "patch": {"summary": "change an endpoint's url, events or enabled; turning it back on clears why it was off "
                                 "(events that ended while it was off are not sent); the secret stays",
                      "security": _auth, "parameters": [_id_param("webhook_id")],
                      "requestBody": {"required": True, "content": {"application/json": {"schema": {
                          "type": "object", "additionalProperties": False, "minProperties": 1,
                          "properties": {"url": {"type": "string", "format": "uri", "maxLength": 2048},
                                         "events": {"type": "array", "minItems": 1, "uniqueItems": True,
                                                    "items": {"type": "string", "enum": list(WEBHOOK_EVENTS)}},
                                         "enabled": {"type": "boolean"}}}}}},
                      "responses": {"200": _json("Webhook"), "400": _err, "401": _err, "404": _err}},
            "delete": {"summary": "delete an endpoint and its deliveries; nothing more is sent to it", "security": _auth,
                       "parameters": [_id_param("webhook_id")],
                       "responses": {"204": {"description": "deleted"}, "401": _err, "404": _err}},
        },
        "/v1/webhooks/{webhook_id}/deliveries": {
            "get": {"summary": "the endpoint's events, newest first, each with every attempt (status code, duration, "
                               "error, time)", "security": _auth, "parameters": [_id_param("webhook_id")] + _page,
                    "responses": {"200": _json("WebhookDeliveryList"), "400": _err, "401": _err, "404": _err}}},
        "/v1/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "ok"}}}},
        "/": {"get": {"summary": "the web page", "responses": {"200": {"description": "text/html"}}}},
        "/docs": {"get": {"summary": "this document, browsable and tried out in the browser (Swagger UI, served from "
                                     "the API's own files)", "responses": {"200": {"description": "text/html"}}}},
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
