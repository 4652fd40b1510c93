"""A worker stops on a TERM to its whole process group (systemd's default, and the demo's stop
command) within the time its running task needs, and loses nothing (issue 36, 6)."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from tests.fakes import FAKE_SEGMENTER
from tests.procs import Proc, RedisServer, wait_for
from tests.test_failures import assert_exactly_once, final, job_state, photos_zip, start_job, worker_env

N = 12


def test_a_group_term_stops_the_worker_after_its_running_tasks_and_loses_nothing(make_user, rt, settings, tmp_path):
    """Before: the TERM killed the pool's processes mid-task (WorkerLostError: the task ran again). Now
    the running tasks finish and the worker exits: a task here takes about 2 s (2 photos of 1 s); the
    process group must be gone within 60 s (generous: a busy machine), no pool process died of the
    TERM, and a new worker finishes the job with every photo once."""
    uid, _ = make_user()
    redis = RedisServer(tmp_path).start()
    env = worker_env(settings, redis.url, WARDROBE_FAKE_DELAY_MS=1000, WARDROBE_FAKE_LOAD_MS=5000, WARDROBE_TASK_TIME_LIMIT=120,
                     WARDROBE_VISIBILITY_TIMEOUT=300, WARDROBE_STALE_AFTER=600)
    worker = Proc(["worker", "--concurrency", "2", "--beat"], env, tmp_path / "worker.log").start()
    again = None
    try:
        job_id = start_job(rt, settings, redis.url, uid, photos_zip(N, seed=36))
        wait_for(lambda: job_state(job_id).photos_done >= 2, 120, "segmenting under way", on_fail=worker.tail)
        done_at_term = job_state(job_id).photos_done
        t0 = time.monotonic()
        os.killpg(worker.p.pid, signal.SIGTERM)  # the whole group: main process, pool children, beat
        try:
            worker.p.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the worker did not stop within 60 s of a group TERM\n{worker.tail()}") from None
        took = time.monotonic() - t0
        assert _group_gone(worker.p.pid), "a process of the worker's group outlived its main process"
        log = worker.tail(1_000_000)
        assert "Warm shutdown" in log
        assert "WorkerLostError" not in log and "signal 15" not in log, log[-4000:]
        assert job_state(job_id).photos_done >= done_at_term  # the running tasks finished, not cut off
        again = Proc(["worker", "--concurrency", "2"], env, tmp_path / "worker2.log").start()
        final(job_id, 180, again.tail)
        assert_exactly_once(job_id, N)
        print(f"stopped {took:.1f} s after the group TERM")
    finally:
        worker.kill()
        if again:
            again.kill()
        redis.kill()


def _group_gone(pgid: int, timeout: float = 10) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_the_demos_stop_command_stops_the_embedded_api_and_worker(tmp_path, monkeypatch):
    """The embedded default (SQLite, a storage folder, the filesystem broker) as `wardrobe demo
    --keep-running` leaves it, stopped with the command it prints. Before, the worker's main process sat
    in "Warm shutdown" for minutes after its pool processes died of the TERM (90 s and still there)."""
    from cli.demo import embedded_stack, stop_command
    from tests.conftest import free_port

    monkeypatch.setenv("WARDROBE_SEGMENTER", FAKE_SEGMENTER)
    with embedded_stack(tmp_path / "data", free_port(), keep_running=True, pass_env=("WARDROBE_SEGMENTER",)) as (
            url, _token, procs):
        pass
    api, worker = procs
    try:
        wait_for(lambda: len(_group(worker.pid)) >= 2, 60, "the worker's pool processes started")
        subprocess.run(["sh", "-c", stop_command(api.pid, worker.pid)], check=True, timeout=10)
        for p in (api, worker):
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                log = (tmp_path / "data" / "demo-services.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"pid {p.pid} still running 60 s after the demo's stop command\n{log}") from None
        assert _group_gone(api.pid) and _group_gone(worker.pid)
    finally:
        for p in (api, worker):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)


def _group(pgid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]
