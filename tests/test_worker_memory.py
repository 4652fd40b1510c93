"""Issue 36: a worker's pool processes grew in steps over a soak (their RSS stays at the largest mix
of work they have met): each task ends by giving the heaps' free pages back (worker.memory)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from tests.conftest import ROOT

FRAGMENTED = """
import numpy as np, psutil, sys
from worker.memory import give_back
p = psutil.Process()
# 2,000 buffers of 100 KiB (under glibc's mmap threshold: they live in the heap), one in 50 kept:
# the kept ones pin the heap's top, so what the others freed stays resident
bufs = [np.ones(100 * 1024, np.uint8) for _ in range(2000)]
kept = bufs[::50]
del bufs
before = p.memory_info().rss
done = give_back()
print(done, before, p.memory_info().rss, len(kept))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_a_task_gives_the_memory_it_freed_back():
    # malloc as glibc's defaults make it (no tunables, no other allocator preloaded)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    r = subprocess.run([sys.executable, "-c", FRAGMENTED], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    done, before, after, _ = r.stdout.split()
    assert done == "True"
    assert int(before) - int(after) > 100 * 2**20, (int(before) >> 20, int(after) >> 20)  # of ~195 MiB freed


def test_every_task_ends_with_it():
    from celery.signals import task_postrun

    import worker.celery_app  # noqa: F401 - what every worker process imports first
    from worker import memory

    assert any(r() is memory._after_task for _, r in task_postrun.receivers)


@pytest.mark.parametrize("mb, kib", [(0, None), (512, 512 * 1024)])
def test_a_pool_process_s_memory_bound_is_celery_s(settings, mb, kib):
    """WARDROBE_WORKER_MAX_MEMORY_MB reaches Celery as worker_max_memory_per_child (KiB; None: no bound)."""
    from dataclasses import replace

    from celery import Celery

    from core.queue import configure_celery

    app = Celery("t")
    configure_celery(app, replace(settings, worker_max_memory_mb=mb))
    assert app.conf.worker_max_memory_per_child == kib
