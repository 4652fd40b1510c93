"""The Flask app factory. The API process never imports torch or the worker."""
from __future__ import annotations

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from api import deps, errors, metrics, requestids
from core.config import Settings
from core.queue import make_celery
from services.bootup import bootup


class FastJSON(DefaultJSONProvider):
    """orjson for responses: a catalogue page is mostly polygon coordinates, and encoding them is
    the largest cost of the request after the query. Falls back to the standard encoder."""

    def dumps(self, obj, **kwargs):
        try:
            import orjson

            return orjson.dumps(obj, default=self.default).decode()
        except (ImportError, TypeError):
            return super().dumps(obj, **kwargs)

    def response(self, *args, **kwargs):
        """Flask's JSON response (the body and a newline), made as bytes by orjson directly rather
        than decoded to text, joined to the newline and encoded again: a page is tens of kilobytes."""
        try:
            import orjson

            body = orjson.dumps(self._prepare_response_obj(args, kwargs), default=self.default,
                                option=orjson.OPT_APPEND_NEWLINE)
        except (ImportError, TypeError):
            return super().response(*args, **kwargs)
        return self._app.response_class(body, mimetype=self.mimetype)


JSON_BODY_LIMIT = 64 * 1024  # bytes: every route but the upload takes a small JSON body, or none
BODY_LIMITS = {"uploads.create_upload": None,  # None: the app's MAX_CONTENT_LENGTH (WARDROBE_MAX_UPLOAD_BYTES)
               "resumable.append_chunk": None}  # a resumable upload's chunk (PATCH /v1/upload-sessions/<id>)


def _cap_body() -> None:
    """Each route's largest request body: the upload's configured maximum, a few kilobytes elsewhere.
    A declared length over it is refused at once (413), before the view runs or anything is read.
    On the small routes a body of undeclared length (chunked) is read here, up to one byte past
    the cap, so it is refused the same way (Werkzeug would cut it at the cap without a word)."""
    import io

    from flask import request
    from werkzeug.exceptions import RequestEntityTooLarge

    limit = BODY_LIMITS.get(request.endpoint or "", JSON_BODY_LIMIT)
    if limit is not None:
        request.max_content_length = limit
    cap = request.max_content_length
    if cap is None:
        return
    if request.content_length is not None:
        if request.content_length > cap:
            raise RequestEntityTooLarge()
        return
    env = request.environ
    if limit is not None and env.get("wsgi.input_terminated"):
        data = env["wsgi.input"].read(cap + 1)
        if len(data) > cap:
            raise RequestEntityTooLarge()
        env["wsgi.input"], env["CONTENT_LENGTH"] = io.BytesIO(data), str(len(data))
        env.pop("HTTP_TRANSFER_ENCODING", None)


def create_app(settings: Settings | None = None) -> Flask:
    rt = bootup(settings)
    app = Flask("wardrobe", static_folder=None)  # the web blueprint serves /static
    app.json = FastJSON(app)
    app.config["MAX_CONTENT_LENGTH"] = rt.settings.max_upload_bytes
    app.json.sort_keys = False  # the serializers' order is the documented order
    app.extensions["wardrobe"] = rt
    app.extensions["celery"] = make_celery(rt.settings)
    app.teardown_appcontext(deps.close_db)
    requestids.install(app)  # before the body cap: a refused request carries its id too
    app.before_request(_cap_body)
    errors.register(app)
    metrics.install(app)  # per-route request counts and latency, and GET /metrics

    from api import events, exports, health, items, jobs, me, openapi, resumable, uploads, web, webhooks

    for mod in (health, uploads, resumable, jobs, events, items, me, exports, webhooks, openapi, web):
        app.register_blueprint(mod.bp)
    return app
