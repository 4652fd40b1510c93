"""bench/loadgen.py's CPU accounting, which `make bench-api` reports per request."""
from __future__ import annotations

import os
import time

from bench.loadgen import cpu_seconds


def test_cpu_seconds_counts_what_a_process_spent():
    me = os.getpid()
    before = cpu_seconds([me])
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:  # busy: CPU time, whatever else shares the cores
        pass
    spent = time.process_time() - t0
    measured = cpu_seconds([me], before)
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert spent - 2 * tick <= measured <= spent + 0.1  # /proc counts in clock ticks


def test_cpu_seconds_without_readable_processes():
    gone = 2 ** 22 + 12345  # above the kernel's pid_max: never a process
    assert cpu_seconds([gone], {}) is None  # a database on another machine: no figure, not zero
    assert cpu_seconds([], {}) == 0  # no processes (no database connection yet): nothing spent
