"""bench/api.py's servers: one that never answers is stopped, not left running."""
from __future__ import annotations

import os
import time

import pytest


def test_a_server_that_never_answers_is_stopped(tmp_path, monkeypatch):
    import bench.api as bench_api

    tree = tmp_path / "tree"
    (tree / "cli").mkdir(parents=True)
    (tree / "cli" / "__init__.py").write_text("")
    pid_file = tmp_path / "pid"
    # `wardrobe serve` that starts and never listens
    (tree / "cli" / "main.py").write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                                          "time.sleep(300)\n")
    monkeypatch.setattr(bench_api, "START_SECONDS", 3)
    with pytest.raises(RuntimeError, match="did not answer /healthz"):
        bench_api.Server("stuck", tree, dict(os.environ), workers=1, threads=1)
    pid = int(pid_file.read_text())
    try:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        time.sleep(0.1)
