"""Freed memory given back to the system after each task (glibc's `malloc_trim`).

A pool process decodes photos of every size, draws cut-outs and writes export zips. glibc keeps the
pages those transient buffers freed inside its heaps, so a process's resident memory steps up to
the largest mix of work it has met and stays there: `make soak` showed steps, not a slope.
`malloc_trim(0)` hands every whole free page back, so a long-lived process stays near what it holds.
Where the C library has no `malloc_trim` (musl, macOS) nothing is done.
"""
from __future__ import annotations

import ctypes

from celery.signals import task_postrun


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError, TypeError):  # (TypeError: Windows has no process-wide C library)
        return None


_TRIM = _malloc_trim()


def give_back() -> bool:
    """Return the heaps' free pages to the system; whether there was a `malloc_trim` to call."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


@task_postrun.connect
def _after_task(**_kw) -> None:
    give_back()
