"""Operations with real processes: `/metrics` scraped from gunicorn and from a prefork worker
(every process's values added up), and SIGTERM on a busy worker (Kubernetes' way of stopping a
pod): the task it holds is finished, not lost or run twice."""
from __future__ import annotations

import os
import re
import signal
import time

import pytest
import requests

from tests.conftest import auth, free_port, wait_port
from tests.procs import Proc, have, wait_for
from tests.test_failures import assert_exactly_once, final, job_state, photos_zip, redis_server, start_job, worker_env  # noqa: F401

pytestmark = pytest.mark.skipif(not have("redis-server"), reason="redis-server is not installed")


_TASK_RUNS = "wardrobe_task_duration_seconds_count"


def scrape(url: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    r = requests.get(url, timeout=10)
    assert r.status_code == 200, r.text[:500]
    assert r.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_scraped_from_the_api_and_a_worker(make_user, settings, redis_server, tmp_path):
    _uid, token = make_user()
    api_port, metrics_port = free_port(), free_port()
    env = worker_env(settings, redis_server.url, WARDROBE_FAKE_DELAY_MS="0", WARDROBE_SEGMENT_CHUNK="4",
                     WARDROBE_BATCH_SIZE="2", WARDROBE_WORKER_METRICS_PORT=str(metrics_port), WARDROBE_TASK_TIME_LIMIT="180",
                     WARDROBE_VISIBILITY_TIMEOUT="600")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    api = Proc(["serve", "--port", str(api_port), "--workers", "2", "--threads", "1"], env, tmp_path / "api.log").start()
    worker = Proc(["worker", "--concurrency", "2"], env, tmp_path / "worker.log").start()
    logs = lambda: api.tail() + worker.tail()  # noqa: E731
    try:
        wait_port(api_port, 60)
        base = f"http://127.0.0.1:{api_port}"
        # one request per connection: gunicorn's two processes both answer some of them (60 s: each process
        # loads the app as it starts, which on a busy machine outlasts a short timeout)
        for _ in range(30):
            assert requests.get(base + "/healthz", headers={"Connection": "close"}, timeout=60).status_code == 200
        assert requests.get(base + "/v1/items", timeout=60).status_code == 401
        r = requests.post(base + "/v1/uploads", headers=auth(token), files={"file": ("p.zip", photos_zip(8, seed=11))}, timeout=30)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        wait_for(lambda: job_state(job_id).status not in ("queued", "running"), 60, "the job to end", on_fail=logs)
        assert_exactly_once(job_id, 8)

        s = scrape(base + "/metrics")
        # every gunicorn process's requests, added up: exactly what was sent, whichever answered
        assert value(s, "wardrobe_http_requests_total", route="/healthz", method="GET", status="200") == 30, logs()
        assert value(s, "wardrobe_http_request_duration_seconds_count", route="/healthz", method="GET") == 30
        assert value(s, "wardrobe_http_requests_total", route="/v1/items", method="GET", status="401") == 1
        assert value(s, "wardrobe_http_requests_total", route="/v1/uploads", method="POST", status="202") == 1
        assert value(s, "wardrobe_queue_depth", queue="ingest") == 0 and value(s, "wardrobe_queue_depth", queue="segment") == 0
        assert value(s, "wardrobe_broker_up") == 1
        assert value(s, "wardrobe_jobs", status="succeeded") == 1

        wait_port(metrics_port, 30)
        # a task's run time is observed after it returns (Celery's task_postrun), and the last task ends
        # the job before it returns: the scrape waits until every task has been observed
        done = lambda w: ((value(w, _TASK_RUNS, task="wardrobe.ingest", state="SUCCESS") or 0) >= 1  # noqa: E731
                          and (value(w, _TASK_RUNS, task="wardrobe.segment", state="SUCCESS") or 0) >= 2)
        w = wait_for(lambda: done(got := scrape(f"http://127.0.0.1:{metrics_port}/metrics")) and got, 30,
                     "the worker's metrics of its tasks", on_fail=logs)
        assert value(w, "wardrobe_photos_total", outcome="done", code="") == 8, logs()
        assert value(w, "wardrobe_items_found_total") == 16
        assert value(w, "wardrobe_model_photos_total") == 8
        assert value(w, "wardrobe_model_inference_seconds_count") == 4  # one per forward pass of 2 photos
        assert value(w, _TASK_RUNS, task="wardrobe.ingest", state="SUCCESS") == 1
        assert value(w, _TASK_RUNS, task="wardrobe.segment", state="SUCCESS") == 2
        assert value(w, "wardrobe_task_cpu_seconds_total", task="wardrobe.segment") > 0
        assert all(value(w, "wardrobe_segment_stage_seconds_total", stage=st) > 0 for st in ("load", "infer", "post", "commit"))
    finally:
        worker.stop()
        api.stop()


def _succeeded(log: str) -> list[str]:
    return re.findall(r"Task wardrobe\.segment\[([0-9a-f-]+)\] succeeded", log)


def test_sigterm_on_a_busy_worker_finishes_its_task_once(make_user, rt, settings, redis_server, tmp_path):
    """What Kubernetes does to a pod it stops (scale down, a drain, a rollout): SIGTERM to the
    container's first process, `wardrobe worker` here, which is Celery's main process. Celery's
    warm shutdown stops taking messages and lets the task it holds finish: that task's photos are
    done by this worker, before it exits, and never by another. The rest wait in Redis for the next."""
    uid, _ = make_user()
    # each photo takes long enough that the signal lands before the task's last photo commits,
    # even on a loaded 2-core CI machine
    env = worker_env(settings, redis_server.url, WARDROBE_FAKE_DELAY_MS="600", WARDROBE_SEGMENT_CHUNK="4",
                     WARDROBE_BATCH_SIZE="1", WARDROBE_TASK_TIME_LIMIT="180", WARDROBE_VISIBILITY_TIMEOUT="600")
    first = Proc(["worker", "--concurrency", "1"], env, tmp_path / "first.log").start()
    second = Proc(["worker", "--concurrency", "1"], env, tmp_path / "second.log")
    try:
        job_id = start_job(rt, settings, redis_server.url, uid, photos_zip(12, seed=12))
        # mid-task: some of a 4-photo task's photos committed, not all. The count that passed the
        # check is the one kept: a second read could land just after the task's last photo.
        at_term = wait_for(lambda: (d := job_state(job_id).photos_done) % 4 and d, 60,
                           "a segment task half done", interval=0.05, on_fail=first.tail)
        os.kill(first.p.pid, signal.SIGTERM)  # the main process only, as the kubelet does
        assert first.p.wait(120) == 0, first.tail()
        after = job_state(job_id).photos_done
        # the task it held was finished before it left, none was left half done, and it took no other.
        # On a busy machine the task may end between the read and the signal, and the worker may have
        # started the next one by then: that one is finished too (it was held when the TERM came).
        held = (at_term // 4 + 1) * 4
        assert after % 4 == 0 and held <= after <= held + 4, (at_term, after, first.tail())
        assert re.search(r"[Ww]arm shutdown", first.tail(20000)), first.tail()
        assert job_state(job_id).status == "running"  # the rest is still waiting in the queue

        second.start()
        final(job_id, 60, second.tail)
        assert_exactly_once(job_id, 12)
        # the last task ends the job before it returns, and Celery logs its success after the return:
        # the job can read succeeded before that line is written
        wait_for(lambda: len(_succeeded(second.tail(10**6))) >= 3 - after // 4, 30, "the second worker's log of its tasks",
                 on_fail=second.tail)
        done_first, done_second = _succeeded(first.tail(10**6)), _succeeded(second.tail(10**6))
        assert len(done_first) == after // 4 and len(done_second) == 3 - after // 4, (done_first, done_second, first.tail(5000))
        assert not set(done_first) & set(done_second)  # no task ran in both
    finally:
        first.kill()
        second.kill()


def test_api_errors_are_counted_by_what_failed(app, client):
    """A 503 the API answers for storage or the database counts in wardrobe_errors_total (in
    process here: one process, the default registry)."""
    from prometheus_client import REGISTRY

    from core.storage import StorageError

    def boom():
        raise StorageError("storage is down")

    app.add_url_rule("/boom-storage", "boom_storage", boom)
    key = {"component": "api", "kind": "storage"}
    before = REGISTRY.get_sample_value("wardrobe_errors_total", key) or 0
    assert client.get("/boom-storage").status_code == 503
    assert REGISTRY.get_sample_value("wardrobe_errors_total", key) == before + 1
    assert REGISTRY.get_sample_value("wardrobe_http_requests_total",
                                     {"route": "/boom-storage", "method": "GET", "status": "503"}) == 1


def test_made_up_http_methods_share_one_metrics_label(client):
    """Any client can send a method of its own (gunicorn passes 3-20 capitals); each one was a new
    label value, a counter and a histogram in every process's files, without end."""
    from prometheus_client import REGISTRY

    for method in ("AAAB", "AAAC", "ZZZZZZ"):
        client.open("/", method=method)
    labels = {s.labels["method"] for metric in REGISTRY.collect() if metric.name == "wardrobe_http_requests"
              for s in metric.samples}
    assert not labels & {"AAAB", "AAAC", "ZZZZZZ"} and "other" in labels


def test_worker_errors_are_told_apart():
    import kombu.exceptions
    from sqlalchemy.exc import OperationalError

    from core.metrics import error_kind
    from core.storage import StorageError

    try:
        try:
            raise ConnectionError("reset by peer")
        except ConnectionError as inner:
            raise StorageError("put failed") from inner
    except StorageError as e:
        storage = e
    assert error_kind(storage) == "storage"
    assert error_kind(OperationalError("SELECT 1", {}, Exception("server closed the connection"))) == "database"
    assert error_kind(kombu.exceptions.OperationalError("broker down")) == "broker"
    assert error_kind(ValueError("a bug")) == "other"
