"""The Flask app factory. The API process never imports torch or the worker."""
from __future__ import annotations

from flask import Flask

from api import deps, errors
from db.bootup import bootup
from db.config import Settings
from db.queue import make_celery


def create_app(settings: Settings | None = None) -> Flask:
    rt = bootup(settings)
    app = Flask("wardrobe", static_folder=None)  # the web blueprint serves /static
    app.config["MAX_CONTENT_LENGTH"] = rt.settings.max_upload_bytes
    app.json.sort_keys = False
    app.extensions["wardrobe"] = rt
    app.extensions["celery"] = make_celery(rt.settings)
    app.teardown_appcontext(deps.close_db)
    errors.register(app)

    from api import health, items, jobs, openapi, uploads, web

    for mod in (health, uploads, jobs, items, openapi, web):
        app.register_blueprint(mod.bp)
    return app
