"""The Flask app factory. The API process never imports torch or the worker."""
from __future__ import annotations

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from api import deps, errors
from db.bootup import bootup
from db.config import Settings
from db.queue import make_celery


class FastJSON(DefaultJSONProvider):
    """orjson for responses: a catalogue page is mostly polygon coordinates, and encoding them is
    the largest cost of the request after the query. Falls back to the standard encoder."""

    def dumps(self, obj, **kwargs):
        try:
            import orjson

            return orjson.dumps(obj, default=self.default).decode()
        except (ImportError, TypeError):
            return super().dumps(obj, **kwargs)


def create_app(settings: Settings | None = None) -> Flask:
    rt = bootup(settings)
    app = Flask("wardrobe", static_folder=None)  # the web blueprint serves /static
    app.json = FastJSON(app)
    app.config["MAX_CONTENT_LENGTH"] = rt.settings.max_upload_bytes
    app.json.sort_keys = False  # the serializers' order is the documented order
    app.extensions["wardrobe"] = rt
    app.extensions["celery"] = make_celery(rt.settings)
    app.teardown_appcontext(deps.close_db)
    errors.register(app)

    from api import health, items, jobs, me, openapi, uploads, web

    for mod in (health, uploads, jobs, items, me, openapi, web):
        app.register_blueprint(mod.bp)
    return app
