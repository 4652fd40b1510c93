"""End to end with real processes: the API (gunicorn) over HTTP, a Celery worker on Redis,
PostgreSQL, the moto S3 server and the real YOLOv8s-seg weights on real photos."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import redis
import requests
from PIL import Image
from sqlalchemy import select

from core.config import DEFAULT_MODEL
from db.models import Item, Photo
from db.session import session_scope
from segmentation.segmenter import model_version
from tests.conftest import EXAMPLES, ROOT, free_port, wait_port
from tests.procs import service_env
from worker.cutouts import rasterize

pytestmark = pytest.mark.e2e
# its own Redis database (not the suite's): the worker it starts must not see the suite's queues;
# WARDROBE_TEST_REDIS_E2E moves it when two checkouts run the suite at once
E2E_REDIS = os.environ.get("WARDROBE_TEST_REDIS_E2E", "redis://127.0.0.1:6379/14")


@pytest.fixture()
def services(clean_db, tmp_path):
    redis.Redis.from_url(E2E_REDIS).flushdb()
    env = service_env(clean_db.settings, E2E_REDIS, WARDROBE_BATCH_SIZE=4, WARDROBE_SEGMENT_CHUNK=4)
    port = free_port()
    exe = [sys.executable, "-m", "cli.main"]
    token = subprocess.run(exe + ["users", "create", "e2e"], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    procs = []
    logs = {}
    for name, args in (("api", ["serve", "--port", str(port), "--workers", "1"]),
                       ("worker", ["worker", "--concurrency", "1"])):
        logs[name] = tmp_path / f"{name}.log"
        procs.append(subprocess.Popen(exe + args, env=env, cwd=ROOT, stdout=open(logs[name], "wb"),
                                      stderr=subprocess.STDOUT, start_new_session=True))
    try:
        wait_port(port, 60)
        yield f"http://127.0.0.1:{port}", token.stdout.strip(), logs
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def test_upload_to_catalogue_with_the_real_model(services, rt):
    url, token, logs = services
    h = {"Authorization": f"Bearer {token}"}
    photos = sorted(EXAMPLES.glob("*.jpg"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in photos:
            zf.write(p, p.name)
    resp = requests.post(f"{url}/v1/uploads", headers=h, files={"file": ("photos.zip", buf.getvalue(), "application/zip")}, timeout=30)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    assert resp.headers["Location"] == f"/v1/jobs/{job_id}"

    t0 = time.monotonic()
    seen_statuses = set()
    while True:
        job = requests.get(f"{url}/v1/jobs/{job_id}", headers=h, timeout=10).json()
        seen_statuses.add(job["status"])
        if job["status"] not in ("queued", "running"):
            break
        if time.monotonic() - t0 > 300:
            pytest.fail(f"job still {job['status']} after 300s; worker log:\n{logs['worker'].read_text()[-3000:]}")
        time.sleep(0.5)
    assert job["status"] == "succeeded", (job, logs["worker"].read_text()[-3000:])
    assert job["progress"]["photos_total"] == job["progress"]["photos_done"] == len(photos)
    assert job["progress"]["items_found"] > 0
    assert "model ready" in logs["worker"].read_text()
    from core.cpu import has_amx
    from segmentation.backends import openvino_available

    if openvino_available():  # the CPU default: the int8 model shipped beside the weights, unless the CPU has AMX
        # (where this install can export, the plain export through Ultralytics); the int8 model runs on
        # the lean path, OpenVINO and NumPy without torch
        want = "on cpu with openvino," if has_amx() else "on cpu with openvino-int8 (lean: OpenVINO + NumPy, no torch)"
        assert want in logs["worker"].read_text()

    items = requests.get(f"{url}/v1/items", headers=h, params={"job_id": job_id, "limit": 200}, timeout=10).json()["items"]
    assert len(items) == job["progress"]["items_found"]
    version = model_version(DEFAULT_MODEL)
    with session_scope() as s:
        rows = {str(i.id): i for i in s.scalars(select(Item).where(Item.job_id == job_id))}
        photo_rows = {str(p.id): p for p in s.scalars(select(Photo).where(Photo.job_id == job_id))}
    assert set(rows) == {i["id"] for i in items}
    assert len(photo_rows) == len(photos) and {p.status for p in photo_rows.values()} == {"done"}
    for it in items:
        assert it["model_version"] == version
        assert 0 <= it["class_id"] < 23 and it["confidence"] >= 0.25
        cut = requests.get(url + it["cutout_url"], headers=h, timeout=10)
        assert cut.status_code == 200 and cut.headers["Content-Type"] == it["cutout_content_type"]
        im = Image.open(io.BytesIO(cut.content))
        assert im.mode == "RGBA"
        x1, y1, x2, y2 = it["bbox"]
        assert im.size == tuple(it["cutout_size"]) and max(im.size) <= 1024
        scale = (im.width / (x2 - x1), im.height / (y2 - y1))
        expected = rasterize([np.array(p) for p in it["mask"]["polygons"]], im.width, im.height, (x1, y1), scale)
        alpha = np.asarray(im)[..., 3]
        assert (alpha == expected).all(), "the cut-out's alpha is not the item's mask"
        assert 0 < it["area_fraction"] < 1
