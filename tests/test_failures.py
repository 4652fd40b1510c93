"""Faults with real processes: a worker SIGKILLed mid-batch, Redis and PostgreSQL restarted,
storage failing for a while or for good, concurrent users. Every job still ends, every photo
is processed exactly once and no item is duplicated."""
from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import replace

import pytest
import requests
from sqlalchemy import create_engine, func, select, text

from core.queue import enqueue_ingest, make_celery
from db.models import Item, Job, Photo
from db.session import session_scope
from tests.conftest import free_port, jpeg_bytes, wait_port, zip_bytes
from tests.procs import PgCluster, Proc, RedisServer, TcpProxy, have, service_env, wait_for
from tests.fakes import FAKE_SEGMENTER
from tests.test_pipeline import new_job

pytestmark = pytest.mark.skipif(not have("redis-server"), reason="redis-server is not installed")

N_PHOTOS = 16


def photos_zip(n: int = N_PHOTOS, seed: int = 0) -> bytes:
    return zip_bytes({f"p{i:03d}.jpg": jpeg_bytes(64 + i % 3, 48, ((seed * 7 + i * 37) % 256, (i * 11) % 256, 90))
                      for i in range(n)})


def worker_env(settings, broker: str, **extra) -> dict:
    """Short timeouts and a slow fake model, so faults land mid-batch and recovery is quick."""
    fault_settings = dict(WARDROBE_SEGMENTER=FAKE_SEGMENTER, WARDROBE_FAKE_DELAY_MS=150, WARDROBE_SEGMENT_CHUNK=2,
                          WARDROBE_BATCH_SIZE=2, WARDROBE_VISIBILITY_TIMEOUT=4, WARDROBE_TASK_TIME_LIMIT=3,
                          WARDROBE_REAP_INTERVAL=2, WARDROBE_STALE_AFTER=5)
    return service_env(settings, broker, **(fault_settings | extra))


def job_state(job_id) -> Job:
    with session_scope() as s:
        return s.get(Job, job_id)


def assert_exactly_once(job_id, n: int = N_PHOTOS) -> None:
    job = job_state(job_id)
    assert job.status == "succeeded", (job.status, job.error_code, job.error_message)
    assert (job.photos_total, job.photos_done, job.photos_failed, job.items_found) == (n, n, 0, 2 * n)
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Photo).where(Photo.job_id == job_id, Photo.status == "done")) == n
        per_photo = s.execute(select(Item.photo_id, func.count()).where(Item.job_id == job_id).group_by(Item.photo_id)).all()
    assert len(per_photo) == n and {c for _, c in per_photo} == {2}


def final(job_id, timeout: float, proc_logs=lambda: "") -> Job:
    return wait_for(lambda: (j := job_state(job_id)) and j.status not in ("queued", "running") and j, timeout,
                    f"job {job_id} to end", on_fail=proc_logs)


@pytest.fixture()
def redis_server(tmp_path):
    r = RedisServer(tmp_path).start()
    yield r
    r.kill()


def start_job(rt, settings, broker: str, uid, data: bytes):
    job_id = new_job(rt, uid, data)
    enqueue_ingest(make_celery(replace(settings, broker_url=broker)), job_id)
    return job_id


def test_worker_sigkilled_mid_batch_then_restarted(make_user, rt, settings, redis_server, tmp_path):
    uid, _ = make_user()
    env = worker_env(settings, redis_server.url)
    worker = Proc(["worker", "--concurrency", "1"], env, tmp_path / "worker.log").start()
    try:
        job_id = start_job(rt, settings, redis_server.url, uid, photos_zip())
        wait_for(lambda: job_state(job_id).photos_done >= 4, 60, "some photos done", on_fail=worker.tail)
        worker.kill()  # SIGKILL, mid-batch
        done_at_kill = job_state(job_id).photos_done
        assert done_at_kill < N_PHOTOS
        # restarted as deployed: one worker also runs the stale-job sweep
        worker = Proc(["worker", "--concurrency", "1", "--beat"], env, tmp_path / "worker.log").start()
        final(job_id, 90, worker.tail)
        assert_exactly_once(job_id)
    finally:
        worker.kill()


def test_redis_restarted_during_a_batch(make_user, rt, settings, redis_server, tmp_path):
    """Redis without persistence loses its queues; the reaper notices the job stopped moving and re-sends."""
    uid, _ = make_user()
    env = worker_env(settings, redis_server.url)
    worker = Proc(["worker", "--concurrency", "1", "--beat"], env, tmp_path / "worker.log").start()
    try:
        job_id = start_job(rt, settings, redis_server.url, uid, photos_zip(seed=1))
        wait_for(lambda: job_state(job_id).photos_done >= 4, 60, "some photos done", on_fail=worker.tail)
        redis_server.kill()
        time.sleep(1.0)
        redis_server.start()  # same port, empty
        final(job_id, 120, worker.tail)
        assert_exactly_once(job_id)
        assert "has not moved" in worker.tail(500_000)  # it was the reaper that brought the work back
    finally:
        worker.kill()


def test_storage_failing_for_a_while_is_retried(make_user, rt, settings, redis_server, tmp_path):
    uid, _ = make_user()
    proxy = TcpProxy(int(settings.s3_endpoint_url.rsplit(":", 1)[1]))
    env = worker_env(settings, redis_server.url, WARDROBE_S3_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}",
                     WARDROBE_S3_MAX_ATTEMPTS="1")
    worker = Proc(["worker", "--concurrency", "1"], env, tmp_path / "worker.log").start()
    try:
        job_id = start_job(rt, settings, redis_server.url, uid, photos_zip(seed=2))
        wait_for(lambda: job_state(job_id).photos_done >= 2, 60, "some photos done", on_fail=worker.tail)
        proxy.down = True
        time.sleep(4)
        proxy.down = False
        final(job_id, 120, worker.tail)
        assert_exactly_once(job_id)
        assert "retry" in worker.tail(200_000).lower()
    finally:
        worker.kill()
        proxy.close()


def test_storage_failing_for_good_fails_photos_with_a_reason(make_user, rt, settings, redis_server, tmp_path):
    uid, _ = make_user()
    proxy = TcpProxy(int(settings.s3_endpoint_url.rsplit(":", 1)[1]))
    env = worker_env(settings, redis_server.url, WARDROBE_S3_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}",
                     WARDROBE_S3_MAX_ATTEMPTS="1", WARDROBE_TASK_MAX_RETRIES="1", WARDROBE_SEGMENT_CHUNK="8",
                     WARDROBE_FAKE_DELAY_MS="300")
    worker = Proc(["worker", "--concurrency", "1"], env, tmp_path / "worker.log").start()
    try:
        job_id = start_job(rt, settings, redis_server.url, uid, photos_zip(seed=3))
        wait_for(lambda: job_state(job_id).ingest_finished and job_state(job_id).photos_done >= 1, 60,
                 "ingest done and a photo segmented", on_fail=worker.tail)
        proxy.down = True
        job = final(job_id, 120, worker.tail)
        assert job.status in ("partially_succeeded", "failed")
        assert job.photos_done + job.photos_failed == N_PHOTOS and job.photos_failed > 0
        with session_scope() as s:
            reasons = set(s.scalars(select(Photo.error_code).where(Photo.job_id == job_id, Photo.status == "failed")))
            msgs = list(s.scalars(select(Photo.error_message).where(Photo.job_id == job_id, Photo.status == "failed")))
        assert reasons == {"segment_failed"}
        assert all("StorageError" in m for m in msgs)
    finally:
        worker.kill()
        proxy.close()


@pytest.mark.skipif(not (have("runuser") and os.geteuid() == 0 or os.geteuid() != 0), reason="needs runuser as root")
def test_postgres_restarted_during_a_batch(settings, redis_server, tmp_path):
    try:
        pg = PgCluster(tmp_path)
    except (RuntimeError, KeyError, OSError) as e:
        pytest.skip(f"cannot make a private PostgreSQL cluster here: {e}")
    pg.start()
    env = worker_env(settings, redis_server.url, WARDROBE_DATABASE_URL=pg.url, WARDROBE_TASK_MAX_RETRIES="8")
    api = worker = None
    try:
        import subprocess
        import sys

        from tests.conftest import ROOT

        subprocess.run([sys.executable, "-m", "cli.main", "migrate"], env=env, cwd=ROOT, check=True, capture_output=True)
        token = subprocess.run([sys.executable, "-m", "cli.main", "users", "create", "pg"], env=env, cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.strip()
        port = free_port()
        api = Proc(["serve", "--port", str(port), "--workers", "1"], env, tmp_path / "api.log").start()
        worker = Proc(["worker", "--concurrency", "1"], env, tmp_path / "worker.log").start()
        wait_port(port, 60)
        url, h = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
        r = requests.post(f"{url}/v1/uploads", headers=h, files={"file": ("p.zip", photos_zip(seed=4))}, timeout=30)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]

        def job():
            try:
                return requests.get(f"{url}/v1/jobs/{job_id}", headers=h, timeout=10).json()
            except (requests.RequestException, ValueError):
                return None

        wait_for(lambda: (j := job()) and "progress" in j and j["progress"]["photos_done"] >= 4, 60,
                 "some photos done", on_fail=worker.tail)
        pg.stop("immediate")  # a crash, not a clean shutdown
        time.sleep(2)
        pg.start()
        end = wait_for(lambda: (j := job()) and j.get("status") not in (None, "queued", "running") and j, 150,
                       "job to end", on_fail=worker.tail)
        assert end["status"] == "succeeded", end
        p = end["progress"]
        assert (p["photos_done"], p["photos_failed"], p["items_found"]) == (N_PHOTOS, 0, 2 * N_PHOTOS)
        eng = create_engine(pg.url)
        with eng.connect() as c:
            n_items = c.execute(text("SELECT count(*) FROM items WHERE job_id = :j"), {"j": uuid.UUID(job_id)}).scalar()
            dup = c.execute(text("SELECT count(*) FROM (SELECT photo_id FROM items GROUP BY photo_id HAVING count(*) <> 2) x")).scalar()
        eng.dispose()
        assert n_items == 2 * N_PHOTOS and dup == 0
    finally:
        for p in (worker, api):
            if p:
                p.kill()
        try:
            pg.stop("immediate")
        finally:
            pg.remove()


def test_concurrent_uploads_from_several_users(clean_db, settings, redis_server, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = worker_env(settings, redis_server.url, WARDROBE_FAKE_DELAY_MS="0", WARDROBE_SEGMENT_CHUNK="4",
                     WARDROBE_VISIBILITY_TIMEOUT="60", WARDROBE_TASK_TIME_LIMIT="30")
    tokens = [subprocess.run([sys.executable, "-m", "cli.main", "users", "create", f"u{i}"], env=env, cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip() for i in range(4)]
    port = free_port()
    api = Proc(["serve", "--port", str(port), "--workers", "2"], env, tmp_path / "api.log").start()
    worker = Proc(["worker", "--concurrency", "2"], env, tmp_path / "worker.log").start()
    try:
        wait_port(port, 60)
        url = f"http://127.0.0.1:{port}"
        jobs: dict[str, list[str]] = {t: [] for t in tokens}
        errors = []

        def user_session(i, token):
            for k in range(2):
                r = requests.post(f"{url}/v1/uploads", headers={"Authorization": f"Bearer {token}"},
                                  files={"file": ("p.zip", photos_zip(6, seed=10 * i + k))}, timeout=60)
                if r.status_code != 202:
                    errors.append(r.text)
                else:
                    jobs[token].append(r.json()["id"])

        threads = [threading.Thread(target=user_session, args=(i, t)) for i, t in enumerate(tokens)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for token, ids in jobs.items():
            h = {"Authorization": f"Bearer {token}"}
            for jid in ids:
                end = wait_for(lambda: (j := requests.get(f"{url}/v1/jobs/{jid}", headers=h, timeout=10).json())["status"]
                               not in ("queued", "running") and j, 120, f"job {jid}", on_fail=worker.tail)
                assert end["status"] == "succeeded" and end["progress"]["photos_done"] == 6, end
            items = requests.get(f"{url}/v1/items", headers=h, params={"limit": 200}, timeout=10).json()["items"]
            assert len(items) == 2 * 6 * len(ids)
            assert {i["job_id"] for i in items} == set(ids)  # only this user's jobs
    finally:
        worker.kill()
        api.kill()


def test_reaper_resends_the_work_of_a_job_whose_worker_vanished(make_user, rt):
    from datetime import timedelta

    from sqlalchemy import update

    from db.models import utcnow
    from tests.helpers import run_job
    from worker import ingest, segment
    from worker.reaper import reap
    from tests.fakes import FakeSegmenter

    uid, _ = make_user()
    job_id = new_job(rt, uid, photos_zip(4))
    lost = []
    ingest.run(job_id, rt, send_segment=lambda j, ids: lost.append(ids))  # the segment messages never arrive
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow() - timedelta(hours=1)))
    resent = []
    assert reap(rt, send_ingest=resent.append, stale_after=60) == 1
    assert resent == [job_id]
    assert reap(rt, send_ingest=resent.append, stale_after=60) == 0  # not again until it goes stale again
    run_job(rt, job_id)  # the re-sent ingest re-sends the pending photos
    assert job_state(job_id).status == "succeeded"


def test_cancel_stops_a_running_job(make_user, rt, settings, redis_server, tmp_path):
    uid, _ = make_user()
    env = worker_env(settings, redis_server.url, WARDROBE_VISIBILITY_TIMEOUT="60", WARDROBE_TASK_TIME_LIMIT="30")
    worker = Proc(["worker", "--concurrency", "1"], env, tmp_path / "worker.log").start()
    try:
        job_id = start_job(rt, settings, redis_server.url, uid, photos_zip(seed=5))
        wait_for(lambda: job_state(job_id).photos_done >= 2, 60, "some photos done", on_fail=worker.tail)
        from db import jobstate

        with session_scope() as s:
            assert jobstate.cancel(s, job_id)
        at_cancel = job_state(job_id)
        time.sleep(2.5)
        after = job_state(job_id)
        assert after.status == "cancelled"
        assert after.photos_done == at_cancel.photos_done < N_PHOTOS
        with session_scope() as s:
            assert s.scalar(select(func.count()).select_from(Photo).where(Photo.job_id == job_id, Photo.status == "pending")) == 0
    finally:
        worker.kill()


@pytest.fixture()
def on_sqlite(rt, tmp_path):
    """The embedded default's database (SQLite) for one test; the suite's PostgreSQL again after."""
    from db import session as dbs
    from db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'wardrobe.db'}"
    upgrade(url)
    dbs.configure(url)
    try:
        yield url
    finally:
        dbs.configure(rt.settings.database_url)


def test_tasks_that_give_up_close_their_rows_on_the_embedded_sqlite_default(on_sqlite, rt, monkeypatch):
    """Celery hands the tasks their ids as strings. PostgreSQL's driver takes a string for a UUID
    column and SQLite's does not: there, giving up raised instead of failing the job, its photos or
    the export, which then stayed running until the reaper started them all over again."""
    from dataclasses import replace

    from core.storage import open_storage
    from db import exports
    from db.models import Export, Job, Photo
    from db.session import session_scope
    from db.users import create_user
    from worker import tasks

    broken = type(rt)(settings=replace(rt.settings, database_url=on_sqlite),
                      storage=open_storage(f"s3://missing-{uuid.uuid4().hex[:8]}",
                                           endpoint_url=rt.settings.s3_endpoint_url, max_attempts=1))
    monkeypatch.setattr(tasks, "runtime", lambda: broken)
    with session_scope() as s:
        user, _ = create_user(s, "on-sqlite")
        export, _ = exports.create(s, user.id)
        queued = Job(user_id=user.id, upload_key="gone.zip", upload_sha256="0" * 64)
        running = Job(user_id=user.id, upload_key="gone.zip", upload_sha256="0" * 64, status="running", photos_total=1,
                      ingest_finished=True)
        s.add_all([queued, running])
        s.flush()
        photo = Photo(user_id=user.id, job_id=running.id, entry_index=0, entry_name="a.jpg", storage_key="gone.jpg")
        s.add(photo)
        s.flush()
        ids = dict(export=str(export.id), queued=str(queued.id), running=str(running.id), photo=str(photo.id))

    tasks.export.apply(args=[ids["export"]])  # eager: each retry runs at once, until the last gives up
    tasks.ingest.apply(args=[ids["queued"]])
    tasks.segment.apply(args=[ids["running"], [ids["photo"]]])
    with session_scope() as s:
        assert s.get(Export, uuid.UUID(ids["export"])).status == "failed"
        assert s.get(Job, uuid.UUID(ids["queued"])).status == "failed"
        assert s.get(Photo, uuid.UUID(ids["photo"])).status == "failed"
        assert s.get(Job, uuid.UUID(ids["running"])).status == "failed"  # its one photo failed
