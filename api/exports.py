"""Catalogue exports: start one (a task builds the zip), follow it, download it, delete it.

`POST /v1/exports` answers 202 at once; the `wardrobe.export` task (worker/export.py) builds the zip
and records its progress in the exports table. `GET /v1/export` is the short way to the newest
ready one.
"""
from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from api import deps
from api.errors import ApiError
from api.paging import newest_first
from core.storage import ObjectNotFound, StorageError
from db import exports
from db.jobview import iso
from db.models import Export, ExportStatus
from services import exports as export_service

bp = Blueprint("exports", __name__)
RETRY_AFTER = 2  # seconds a client is told to wait before polling an export in the making


def export_body(e: Export, retention: int, sign=None) -> dict:
    """The export as the API shows it; `sign` (path -> expiring signed URL) adds a download link that
    needs no Authorization header (the web page's download button), once the zip is ready."""
    if e.status == ExportStatus.SUCCEEDED.value:
        percent = 100.0
    elif e.photos_total:
        percent = round(100.0 * min(e.photos_done, e.photos_total) / e.photos_total, 1)
    else:
        percent = 0.0
    return {
        "id": str(e.id),
        "status": e.status,
        "created_at": iso(e.created_at),
        "started_at": iso(e.started_at),
        "finished_at": iso(e.finished_at),
        "progress": {"photos_total": e.photos_total, "photos_done": e.photos_done, "items_total": e.items_total,
                     "items_done": e.items_done, "percent": percent},
        "size_bytes": e.size_bytes,
        "expires_at": iso(exports.expires_at(e, retention)),  # when its zip is deleted (WARDROBE_EXPORT_RETENTION)
        "error": {"code": e.error_code, "message": e.error_message or ""} if e.error_code else None,
        "links": {"self": f"/v1/exports/{e.id}", "download": f"/v1/exports/{e.id}/download"}
        | ({"download_signed": sign(f"/v1/exports/{e.id}/download")}
           if sign is not None and e.status == ExportStatus.SUCCEEDED.value else {}),
    }


def _answer(e: Export, status: int = 200):
    resp = jsonify(export_body(e, deps.settings().export_retention, deps.signer()))
    resp.status_code = status
    if e.status in exports.ACTIVE:
        resp.headers["Retry-After"] = str(RETRY_AFTER)
    return resp


@bp.post("/v1/exports")
@deps.require_user
def create_export():
    """202 with the queued export; while one of the user's is queued or running, that one (202 too)."""
    e = export_service.start(deps.ctx())
    resp = _answer(e, 202)
    resp.headers["Location"] = f"/v1/exports/{e.id}"
    return resp


@bp.get("/v1/exports")
@deps.require_user
def list_exports():
    rows, next_cursor = newest_first(deps.db(), Export, request.args, deps.settings(), user_id=g.user_id)
    retention = deps.settings().export_retention
    sign = deps.signer()
    return jsonify({"exports": [export_body(e, retention, sign) for e in rows], "next_cursor": next_cursor})


@bp.get("/v1/exports/<export_id>")
@deps.require_user
def get_export(export_id: str):
    return _answer(deps.own(Export, export_id, "export"))


def _download(e: Export) -> Response:
    if e.status == ExportStatus.EXPIRED.value:
        why = (e.error_message if e.error_code == exports.REPLACED
               else "the export's zip was deleted after its retention period")
        raise ApiError(410, "export_expired", f"{why}: start a new one with POST /v1/exports")
    if e.status != ExportStatus.SUCCEEDED.value or not e.storage_key:
        headers = {"Retry-After": str(RETRY_AFTER)} if e.status in exports.ACTIVE else {}
        raise ApiError(409, "export_not_ready", f"the export is {e.status}, not ready to download", headers)
    storage = deps.storage()
    try:
        size = storage.size(e.storage_key)  # the object's own length: what the body will be
        chunks = storage.iter_chunks(e.storage_key)
    except ObjectNotFound:
        raise ApiError(404, "not_found", "the export's file is gone from storage") from None
    except StorageError:
        raise ApiError(503, "storage_unavailable", "storage is unavailable; try again shortly", {"Retry-After": "5"}) from None
    day = (e.finished_at or e.created_at).strftime("%Y%m%d")
    resp = Response(chunks, content_type="application/zip")
    resp.headers["Content-Length"] = str(size)
    resp.headers["Content-Disposition"] = f'attachment; filename="wardrobe-export-{day}-{str(e.id)[:8]}.zip"'
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


@bp.get("/v1/exports/<export_id>/download")
def download_export(export_id: str):
    """With the Authorization header; or, from links.download_signed, with an expiring signature
    (what a browser's plain link can carry)."""
    if deps.signature_instead_of_header():
        return _download(deps.signed_row(Export, deps.parse_uuid(export_id, "export"), "export"))
    return _download_authed(export_id)


@deps.require_user
def _download_authed(export_id: str):
    return _download(deps.own(Export, export_id, "export"))


@bp.delete("/v1/exports/<export_id>")
@deps.require_user
def delete_export(export_id: str):
    """204. The zip goes first: storage down answers 503 and the export stays, so no zip is left behind
    unnamed. An export in the making stops at its task's next progress write."""
    export_service.delete(deps.ctx(), deps.own(Export, export_id, "export"))
    return "", 204


@bp.get("/v1/export")
@deps.require_user
def newest_export():
    """303 to the download of the user's newest succeeded export; 404 (with where to start one) when none."""
    s = deps.db()
    e = exports.newest_ready(s, g.user_id)
    if e is None:
        running = exports.active(s, g.user_id)
        if running is not None:
            raise ApiError(404, "no_export", f"no export is ready yet; one is {running.status}: follow GET "
                                             f"/v1/exports/{running.id}", {"Retry-After": str(RETRY_AFTER)})
        raise ApiError(404, "no_export", "no export is ready: start one with POST /v1/exports")
    resp = Response(status=303)
    resp.headers["Location"] = f"/v1/exports/{e.id}/download"
    return resp
