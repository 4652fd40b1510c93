"""The web page in a real browser: headless Chromium (Debian's package) driven by Playwright,
against the real API, a real worker with the real model, PostgreSQL, Redis and moto."""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import EXAMPLES, ROOT, free_port, wait_port
from tests.procs import Proc, service_env

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium at /usr/bin/chromium (make test installs it)"),
]
BROWSER_REDIS = "redis://127.0.0.1:6379/12"
SHOTS = ROOT / "docs" / "screenshots"


def test_upload_watch_browse_filter_correct(clean_db, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    redis.Redis.from_url(BROWSER_REDIS).flushdb()
    env = service_env(clean_db.settings, BROWSER_REDIS, WARDROBE_ALLOW_SIGNUP="true", WARDROBE_BATCH_SIZE=6)
    port = free_port()
    api = Proc(["serve", "--port", str(port), "--workers", "1"], env, tmp_path / "api.log").start()
    worker = Proc(["worker", "--concurrency", "1"], env, tmp_path / "worker.log").start()
    zpath = tmp_path / "photos.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(EXAMPLES.glob("*.jpg")):
            zf.write(p, p.name)
    shots = SHOTS if os.environ.get("WARDROBE_UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    try:
        wait_port(port, 60)
        url = f"http://127.0.0.1:{port}"
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            # bypass_csp: the page forbids eval, which Playwright's wait_for_function uses
            page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
            page.goto(url + "/")
            # sign up from the page (the demo allows it), then sign in with the token it shows
            page.fill("#signup-name", "browser-user")
            page.click("#signup-form button")
            page.wait_for_selector("#new-token:not([hidden])")
            token = page.inner_text("#new-token-value")
            assert token.startswith("wdr_")
            page.click("#signin-form button")
            page.wait_for_selector("#home:not([hidden])")

            page.set_input_files("#zip", str(zpath))
            page.click("#upload-button")
            page.wait_for_function("document.querySelector('#upload-progress').value === 100")
            page.wait_for_selector("#job[data-status='succeeded']", timeout=180_000)
            assert "6 / 6 photos" in page.inner_text("#job-counts")
            page.wait_for_selector(".card img")
            page.wait_for_function(
                "[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
            n_cards = page.locator(".card").count()
            assert n_cards > 0
            page.screenshot(path=str(shots / "gallery.png"), full_page=False)

            category = page.locator(".card").first.get_attribute("data-category")
            page.select_option("#f-category", category)
            page.wait_for_function(
                f"[...document.querySelectorAll('.card')].every(c => c.dataset.category === {category!r})"
                " && document.querySelectorAll('.card').length > 0")
            filtered = page.locator(".card").count()
            assert 0 < filtered <= n_cards

            item_id = page.locator(".card").first.get_attribute("data-id")
            page.locator(".card").first.click()
            page.wait_for_selector("#item:not([hidden])")
            page.wait_for_function("document.querySelectorAll('#item-mask polygon').length > 0")
            page.wait_for_function("document.querySelector('#item-cutout').naturalWidth > 0")
            page.screenshot(path=str(shots / "item.png"), full_page=False)

            new_category = "jumpsuit" if category != "jumpsuit" else "cape"
            page.select_option("#item-new-category", new_category)
            page.click("#correct-form button")
            page.wait_for_function("document.querySelector('#item-message').textContent.startsWith('Saved')")
            browser.close()
        got = requests.get(f"{url}/v1/items/{item_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
        assert got["category"] == new_category and got["corrected"]
    finally:
        worker.kill()
        api.kill()
