"""Where a command's processes keep their Prometheus metrics (prometheus-client's multiprocess
mode). Apart from core/metrics.py because it must run before prometheus_client is imported: the
client picks its way of storing values once, at import."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(role: str, data_dir: Path) -> str:
    """Give this command's processes (gunicorn's workers, Celery's pool) a shared, empty folder:
    PROMETHEUS_MULTIPROC_DIR when the operator set it (Kubernetes: an emptyDir per pod), else
    `<data dir>/metrics/<role>-<pid>`. Values left by the processes of an earlier run are removed,
    so they do not add to this one's."""
    path = os.environ.get(MULTIPROC_ENV) or str(Path(data_dir) / "metrics" / f"{role}-{os.getpid()}")
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(path, name))
    os.environ[MULTIPROC_ENV] = path
    return path
