"""One start-up path for the API, the workers, the CLI and the tests: logging, the database (and
its migrations, where they run at start), storage, and the dispatcher that acts on what committed
transactions did (services.dispatch)."""
from __future__ import annotations

import logging
import threading

from core import logs
from core.config import Settings
from core.runtime import Runtime, current, install
from core.storage import open_storage
from db import session as db_session

log = logging.getLogger("wardrobe")

__all__ = ["Runtime", "bootup", "runtime"]

_lock = threading.Lock()


def bootup(settings: Settings | None = None, *, force: bool = False) -> Runtime:
    """Configure logging, the database and storage once per process (idempotent)."""
    from services import dispatch

    with _lock:
        rt = current()
        if rt is not None and not force and (settings is None or settings == rt.settings):
            return rt
        settings = settings or Settings.from_env()
        logs.configure(settings.log_level)  # JSON lines, or text on a terminal; with their fields
        logging.getLogger("alembic").setLevel(logging.WARNING)
        settings.data_path.mkdir(parents=True, exist_ok=True)
        db_session.configure(settings.db_url)
        if settings.should_auto_migrate:
            import fcntl

            from db.migrate import upgrade

            # `wardrobe serve` and `wardrobe worker` started together on a new data dir: migrate once
            with open(settings.data_path / ".migrate.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                upgrade(settings.db_url)
        storage = open_storage(
            settings.storage,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
            create_bucket=settings.s3_create_bucket,
            max_attempts=settings.s3_max_attempts,
        )
        rt = install(Runtime(settings=settings, storage=storage))
        db_session.dispatch_with(dispatch.dispatch)  # what db's own units of work did, acted on after they commit
        log.debug("bootup done: db=%s storage=%s", settings.db_url.split("@")[-1], settings.storage)
        return rt


def runtime() -> Runtime:
    return current() or bootup()
