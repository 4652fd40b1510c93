"""One start-up path for the API, the workers, the CLI and the tests."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from core import logs
from core.config import Settings
from core.storage import Storage, open_storage
from db import session as db_session

log = logging.getLogger("wardrobe")


@dataclass
class Runtime:
    settings: Settings
    storage: Storage


_runtime: Runtime | None = None
_lock = threading.Lock()


def bootup(settings: Settings | None = None, *, force: bool = False) -> Runtime:
    """Configure logging, the database and storage once per process (idempotent)."""
    global _runtime
    with _lock:
        if _runtime is not None and not force and (settings is None or settings == _runtime.settings):
            return _runtime
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
        _runtime = Runtime(settings=settings, storage=storage)
        log.debug("bootup done: db=%s storage=%s", settings.db_url.split("@")[-1], settings.storage)
        return _runtime


def runtime() -> Runtime:
    if _runtime is None:
        return bootup()
    return _runtime
