"""The process's runtime: its settings and its storage, once the process has started
(services.bootup builds and installs it). Anything below the services reads it from here."""
from __future__ import annotations

from dataclasses import dataclass

from core.config import Settings
from core.storage import Storage


@dataclass
class Runtime:
    settings: Settings
    storage: Storage


_current: list[Runtime] = []


def install(rt: Runtime) -> Runtime:
    _current[:] = [rt]
    return rt


def current() -> Runtime | None:
    """The runtime installed at start-up; None before."""
    return _current[0] if _current else None
