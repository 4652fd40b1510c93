"""What a service needs from the request that calls it: the session, the settings, storage, the Celery
app it sends task messages with, and who is asking. The API builds one per request (api.deps.ctx); the
services never look at Flask."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core.config import Settings


@dataclass(frozen=True)
class Ctx:
    s: Session
    settings: Settings
    storage: Any  # core.storage's Storage
    queue: Any  # a Celery app (core.queue.enqueue_*)
    user_id: uuid.UUID
