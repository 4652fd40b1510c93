"""An open-loop HTTP load generator and per-process CPU accounting, for bench/api.py."""
from __future__ import annotations

import http.client
import os
import threading
import time

_TICK = os.sysconf("SC_CLK_TCK")


def open_loop(port: int, path: str, headers: dict, rate: float, seconds: float, threads: int = 32) -> dict:
    """GET `path` at a fixed `rate` for `seconds`: latency counts from each request's scheduled
    time, so a slow server cannot hide behind a slow client (no coordinated omission)."""
    n_total = int(rate * seconds)
    lat: list[float] = []
    errors = [0]
    counter = [0]
    lock = threading.Lock()
    t0 = time.perf_counter() + 0.2

    def run():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                i = counter[0]
                counter[0] += 1
            if i >= n_total:
                break
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                conn.request("GET", path, headers=headers)
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                ok = False
            done = time.perf_counter()
            with lock:
                lat.append(done - scheduled)
                if not ok:
                    errors[0] += 1
        conn.close()

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    lat.sort()

    def pct(p):
        return round(1000 * lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 2)

    return {"requests": len(lat), "errors": errors[0], "achieved_rps": round(len(lat) / elapsed, 1),
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": round(1000 * lat[-1], 2)}


def _cpu_ticks(pid: int) -> int | None:
    """User + system CPU of a process (all its threads), in clock ticks; None when unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)


def cpu_seconds(pids: list[int], before: dict | None = None):
    """Without `before`: a snapshot {pid: ticks} of the readable `pids`. With it: the CPU seconds
    these processes spent since that snapshot (one that started since counts in full); None when
    there were some and none could be read (a database on another machine)."""
    now = {p: t for p in pids if (t := _cpu_ticks(p)) is not None}
    if before is None:
        return now
    if pids and not now:
        return None
    return sum(t - before.get(p, 0) for p, t in now.items()) / _TICK
