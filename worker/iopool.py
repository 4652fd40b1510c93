"""The worker's thread pools: shared I/O threads for storage round trips and decoding ahead of the
model, and an inline stand-in for the post-processing thread (WARDROBE_POST_OVERLAP=off)."""
from __future__ import annotations

import contextvars
from concurrent.futures import Future, ThreadPoolExecutor


class ContextPool(ThreadPoolExecutor):
    """Each call runs in a copy of its submitter's context: the log fields the task bound (core.logs:
    contextvars, which a plain pool's threads do not see) are on the lines its photos log."""

    def submit(self, fn, /, *args, **kwargs):
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


_io_pool: ThreadPoolExecutor | None = None


def io_pool() -> ThreadPoolExecutor:
    """Threads for storage round trips and decoding ahead of the model: shared by the process's tasks."""
    global _io_pool
    if _io_pool is None:
        _io_pool = ContextPool(max_workers=8, thread_name_prefix="wardrobe-io")
    return _io_pool


class Inline:
    """An executor that runs each call at once, on the calling thread: post-processing in turn
    with the model (WARDROBE_POST_OVERLAP=off)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, fn, *args):
        f: Future = Future()
        f.set_result(fn(*args))  # an error raises here, at once: the task retries sooner
        return f


def post_pool(overlap: bool):
    """One thread beside the model for post-processing, or the inline stand-in."""
    return ContextPool(max_workers=1, thread_name_prefix="wardrobe-post") if overlap else Inline()
