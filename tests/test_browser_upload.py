"""The page on a phone-sized screen: 20 loose photos chosen at once, zipped in the browser and sent through
a resumable upload session that survives a dropped connection; and /docs, the API's interactive reference.
Headless Chromium (Debian's) driven by Playwright, against the real API and a real worker (the fake
segmenter: two garments a photo), PostgreSQL, Redis and moto's S3."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import free_port, jpeg_bytes, wait_port
from tests.fakes import FAKE_SEGMENTER
from tests.procs import Proc, service_env

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium at /usr/bin/chromium (make test installs it)"),
]
BROWSER_REDIS = os.environ.get("WARDROBE_TEST_REDIS_BROWSER", "redis://127.0.0.1:6379/12")
PHONE = {"width": 390, "height": 844}


@pytest.fixture(params=["s3"])
def stack(request, clean_db, make_user, tmp_path):
    """A browser, the API's address and a user's token; the storage S3 (moto) or a folder (`param`)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    redis.Redis.from_url(BROWSER_REDIS).flushdb()
    folder = {"WARDROBE_STORAGE_URL": f"file://{tmp_path / 'objects'}"} if request.param == "folder" else {}
    env = service_env(clean_db.settings, BROWSER_REDIS, WARDROBE_SEGMENTER=FAKE_SEGMENTER, **folder)
    port = free_port()
    api = Proc(["serve", "--port", str(port), "--workers", "1"], env, tmp_path / "api.log").start()
    worker = Proc(["worker", "--concurrency", "1"], env, tmp_path / "worker.log").start()
    try:
        wait_port(port, 60)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            yield browser, f"http://127.0.0.1:{port}", make_user()[1]
            browser.close()
    finally:
        worker.kill()
        api.kill()


@pytest.mark.parametrize("stack", ["s3", "folder"], indirect=True)
def test_twenty_loose_photos_from_a_phone(stack, tmp_path, request):
    """S3: the parts go straight to the bucket, the first one dropped on its way; a folder: chunks PATCHed
    to the API (tus), the first one dropped."""
    browser, url, token = stack
    s3 = request.node.callspec.params["stack"] == "s3"
    photos = []
    for k in range(20):  # twenty different photos (the same bytes twice would be a duplicate)
        p = tmp_path / f"IMG_{k:04d}.jpg"
        p.write_bytes(jpeg_bytes(320, 240, color=(10 * k, 255 - 10 * k, 40 + 5 * k)))
        photos.append(str(p))
    page = browser.new_page(viewport=PHONE, bypass_csp=True, is_mobile=True, has_touch=True)
    sent = []
    page.on("request", lambda r: sent.append((r.method, r.url)))
    dropped = []

    def drop_the_first(route):
        # the connection drops as the first part or chunk goes: the page asks the session and sends it again
        if not dropped and route.request.method in ("PUT", "PATCH"):
            dropped.append(route.request.url)
            return route.abort("connectionreset")
        return route.continue_()

    page.route((lambda u: "partNumber=" in u) if s3 else "**/v1/upload-sessions/*", drop_the_first)
    page.goto(url + "/")
    page.fill("#token", token)
    page.click("#signin-form button")
    page.wait_for_selector("#home:not([hidden])")
    assert page.is_visible("#folder-choice")  # a folder too, on a desktop
    page.set_input_files("#zip", photos)
    page.click("#upload-button")
    page.wait_for_selector("#job[data-status='succeeded']", timeout=180_000)
    assert "20 / 20 photos" in page.inner_text("#job-counts")
    assert "40 garments found" in page.inner_text("#job-counts")
    page.wait_for_function("document.querySelectorAll('.card').length === 40")  # they arrived without a reload
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")

    assert dropped, "nothing was sent to storage"
    if s3:
        from urllib.parse import parse_qs, urlsplit

        part = lambda u: parse_qs(urlsplit(u).query)["partNumber"][0]  # noqa: E731
        puts = [part(u) for m, u in sent if m == "PUT" and "partNumber=" in u]
        assert puts.count(part(dropped[0])) == 2, puts  # the dropped part, sent again
    else:
        assert [m for m, u in sent if u == dropped[0]].count("PATCH") >= 2  # the dropped chunk, sent again
    assert ("POST", url + "/v1/upload-sessions") in sent
    assert not any(u == url + "/v1/uploads" for _, u in sent)  # the zip never went the one-request way
    auth = {"Authorization": f"Bearer {token}"}
    jobs = requests.get(f"{url}/v1/jobs", headers=auth, timeout=10).json()["jobs"]
    assert len(jobs) == 1
    names = {p["entry"] for p in requests.get(f"{url}/v1/jobs/{jobs[0]['id']}/photos", headers=auth,
                                              timeout=10).json()["photos"]}
    assert names == {Path(p).name for p in photos}
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('wardrobe-upload:')).length") == 0


def test_docs_render_the_apis_operations(stack):
    browser, url, _ = stack
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # the page's own CSP, not bypassed
    asked = []
    page.on("request", lambda r: asked.append(r.url))
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url + "/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    spec = requests.get(url + "/v1/openapi.json", timeout=10).json()
    n_ops = sum(1 for ops in spec["paths"].values() for m in ops if m in ("get", "post", "put", "patch", "delete"))
    page.wait_for_function(f"document.querySelectorAll('.opblock').length === {n_ops}")
    shown = page.locator(".opblock-summary-path").all_inner_texts()
    for path in ("/v1/uploads", "/v1/items/{item_id}", "/v1/upload-sessions/{session_id}/complete"):
        assert any(s.replace("\u200b", "") == path for s in shown), path
    assert spec["info"]["title"] in page.inner_text(".info .title")
    assert all(u.startswith(url) for u in asked), [u for u in asked if not u.startswith(url)]  # no CDN, nothing else
    assert not errors, errors
