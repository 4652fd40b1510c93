"""A pool process outlives a TERM that was meant for the whole worker, not for it.

`kill -TERM -<pgid>` (the demo's stop command), systemd's default stop (every process of the unit)
and similar send the TERM to the Celery main process and to each pool process at once. The main
process answers with a warm shutdown: it lets the running tasks finish, then closes its pool. The
pool processes, though, died of the TERM mid-task (the task came back as WorkerLostError and ran
again), and on the filesystem broker the main process then sat in its shutdown for minutes.

So a pool process takes SIGTERM only from its parent: billiard terminating it (a cold shutdown, a
revoked task with terminate=True). Any other sender's TERM is dropped, exactly as Celery already
drops SIGINT in pool processes (a Ctrl-C reaches the whole foreground group); the main process' warm
shutdown ends them when their task is done. The sender is known from the signal's siginfo: SIGTERM is
blocked in the process (before any other thread starts, so every thread inherits the mask) and a
thread of its own takes each one with sigwaitinfo.
"""
from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger("wardrobe.worker")


def _wait_for_terms(parent: int) -> None:
    while True:
        info = signal.sigwaitinfo({signal.SIGTERM})
        if info.si_pid == parent or os.getppid() != parent:
            # from the pool's owner (or the owner is gone): die of the TERM as before (Celery reset its
            # disposition to the default in pool processes)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            os._exit(128 + signal.SIGTERM)  # only if the default disposition was changed
        log.info("pool process %d: a TERM from pid %d left to the main process' warm shutdown", os.getpid(), info.si_pid)


def take_term_from_the_parent_only() -> None:
    """Call first thing in a freshly forked pool process (worker_process_init)."""
    if not hasattr(signal, "sigwaitinfo"):  # not Linux: keep Celery's behaviour
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_wait_for_terms, args=(os.getppid(),), name="wardrobe-sigterm", daemon=True).start()
