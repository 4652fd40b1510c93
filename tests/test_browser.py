"""The web page in a real browser: headless Chromium (Debian's package) driven by Playwright,
against the real API, a real worker with the real model, PostgreSQL, Redis and moto."""
from __future__ import annotations

import contextlib
import io
import os
import time
import uuid
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
BROWSER_REDIS = os.environ.get("WARDROBE_TEST_REDIS_BROWSER", "redis://127.0.0.1:6379/12")
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
            streams = []  # the page follows a job on its event stream, not by polling
            page.on("request", lambda r: streams.append(r.url) if r.url.endswith("/events") else None)
            missing = []  # every file the page asks for and does not get (the favicon was one, on every load)
            page.on("response", lambda r: missing.append(r.url) if r.status == 404 and "/v1/" not in r.url else None)
            page.goto(url + "/")
            # a refused token says so; signing up then clears that
            page.fill("#token", "wdr_not-a-token")
            page.click("#signin-form button")
            page.wait_for_function("document.querySelector('#signin-error').textContent.includes('not accepted')")
            # sign up from the page (the demo allows it), then sign in with the token it shows
            page.fill("#signup-name", "browser-user")
            page.click("#signup-form button")
            page.wait_for_selector("#new-token:not([hidden])")
            assert page.inner_text("#signin-error") == ""
            token = page.inner_text("#new-token-value")
            assert token.startswith("wdr_")
            auth = {"Authorization": f"Bearer {token}"}
            page.click("#signin-form button")
            page.wait_for_selector("#home:not([hidden])")
            page.wait_for_function("document.querySelector('#whoami').textContent === 'Signed in as browser-user'")
            # a new account: no job panel, and the empty gallery says what to do
            assert not page.is_visible("#job")
            page.wait_for_selector("#gallery-empty:not([hidden])")
            assert "upload photos" in page.inner_text("#gallery-empty")

            # a refused upload reads as a failure: red text, no full progress bar
            bad = tmp_path / "not-a.zip"
            bad.write_bytes(b"these are not the photos you are looking for")
            page.set_input_files("#zip", str(bad))
            page.click("#upload-button")
            page.wait_for_selector("#upload-label.error")
            assert "not a readable zip" in page.inner_text("#upload-label")
            assert not page.is_visible("#upload-progress") and not page.is_visible("#job")

            page.set_input_files("#zip", str(zpath))
            page.click("#upload-button")
            page.wait_for_function("document.querySelector('#upload-progress').value === 100")
            page.wait_for_selector("#job[data-status='succeeded']", timeout=180_000)
            assert "6 / 6 photos" in page.inner_text("#job-counts")
            assert len(streams) == 1 and "/v1/jobs/" in streams[0], streams
            page.wait_for_selector(".card img")  # the garments came on the stream: no reload
            page.wait_for_function(
                "[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
            n_cards = page.locator(".card").count()
            assert n_cards > 0
            assert page.locator(".card .card-confidence").first.inner_text().endswith("% sure")
            page.screenshot(path=str(shots / "gallery.png"), full_page=False)

            filter_race(page, url, auth)
            deleted_item_page(page, url, auth)
            failed_photo_once_across_reconnects(page, url)
            stream_restarts_when_its_last_id_is_refused(page, url)
            expired_card_images_are_renewed(page, url)
            page.goto("about:blank")
            page.goto(url + "/#/")  # a fresh page: the filters back to all, 48 a page
            page.wait_for_selector(".card img")
            n_cards = page.locator(".card").count()

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
            got = requests.get(f"{url}/v1/items/{item_id}", headers=auth, timeout=10).json()
            assert got["category"] == new_category and got["corrected"]

            review_view(page, url, auth, item_id, shots)
            export_from_the_page(page, url, auth, tmp_path)
            worker = retry_from_the_page(page, url, auth, env, tmp_path, worker)
            assert not missing, missing
            # the worker answers the readiness check's ping
            assert requests.get(f"{url}/readyz", timeout=10).json()["workers"]["answering"] >= 1
            browser.close()
    finally:
        worker.kill()
        api.kill()


def export_from_the_page(page, url: str, auth: dict, tmp_path: Path) -> None:
    """Download my catalogue: the worker builds the zip, the page saves it through its signed link
    (a plain link carries no Authorization header)."""
    import json

    page.goto(url + "/#/")
    page.wait_for_selector("#home:not([hidden])")
    with page.expect_download(timeout=120_000) as got:
        page.click("#export-button")
    path = tmp_path / "from-the-page.zip"
    got.value.save_as(path)
    assert got.value.suggested_filename.startswith("wardrobe-export-")
    page.wait_for_function("document.querySelector('#export-status').textContent.includes('downloading')")
    assert not page.is_disabled("#export-button") and not page.is_visible("#export-progress")
    n_items = len(_all_ids(url, auth))
    with zipfile.ZipFile(path) as zf:
        coco = json.loads(zf.read("annotations.json"))
    assert len(coco["annotations"]) == n_items > 0
    # the count the page says is the zip's: the catalogue's items and those marked "not a garment" (in their own list)
    with_rejected = len(_all_ids(url, auth, include_not_garment="true"))
    assert len(coco["annotations"]) + len(coco.get("wardrobe_not_garment", [])) == with_rejected
    assert f"{with_rejected} items" in page.inner_text("#export-status")


def retry_from_the_page(page, url, auth, env, tmp_path, worker):
    """A job cancelled after its photos were stored offers a retry; the button runs them again."""
    from PIL import Image

    from tests.procs import wait_for

    worker.kill()
    ingest_only = Proc(["worker", "--queues", "ingest", "--concurrency", "1"], env, tmp_path / "ingest.log").start()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i, p in enumerate(sorted(EXAMPLES.glob("*.jpg"))[:2]):
            out = io.BytesIO()
            Image.open(p).convert("RGB").save(out, "JPEG", quality=70)  # new bytes: not duplicates of the first upload
            zf.writestr(f"again-{i}.jpg", out.getvalue())
    job_id = requests.post(f"{url}/v1/uploads", data=buf.getvalue(), timeout=30,
                           headers=auth | {"Content-Type": "application/zip"}).json()["id"]
    def ingested() -> bool:
        from db.models import Job
        from db.session import session_scope

        with session_scope() as s:
            return s.get(Job, uuid.UUID(job_id)).ingest_finished

    try:
        wait_for(ingested, 120, "the zip read to its end and the photos stored", on_fail=ingest_only.tail)
    finally:
        ingest_only.kill()
    assert requests.delete(f"{url}/v1/jobs/{job_id}", headers=auth, timeout=10).json()["status"] == "cancelled"
    page.goto("about:blank")
    page.goto(url + "/#/")
    page.wait_for_selector("#job-retry:not([hidden])")
    assert page.get_attribute("#job", "data-status") == "cancelled"
    page.click("#job-retry")
    page.wait_for_function("document.querySelector('#job-retry-message').textContent !== ''")
    page.wait_for_selector("#job[data-status='queued']")
    assert page.inner_text("#job-retry-message") == "2 photos going again"
    worker = Proc(["worker", "--concurrency", "1"], env, tmp_path / "worker2.log").start()
    page.wait_for_selector("#job[data-status='succeeded']", timeout=180_000)
    assert "2 / 2 photos" in page.inner_text("#job-counts") and page.is_hidden("#job-retry")
    return worker


# the page's fetch, wrapped: 4 items a page (so "Load more" has pages to load) and the responses
# of chosen requests held back, so that they arrive after later ones, as on a slow network
SLOW_FETCH = """() => {
window.__pending = 0;
window.__slow = () => 0;
const realFetch = window.fetch;
window.fetch = async (input, init) => {
  const url = String(input).replace("limit=48", "limit=4");
  window.__pending++;
  try {
    const r = await realFetch(url, init);
    const ms = window.__slow(url);
    if (ms) await new Promise((res) => setTimeout(res, ms));
    // the page reads the body and draws it in the microtasks that follow: the request stays pending
    // until its body is read and one task later, so waiting for 0 needs no guessed sleep after it
    const json = r.json.bind(r);
    r.json = () => { window.__pending++; return json().finally(() => setTimeout(() => window.__pending--, 0)); };
    return r;
  } finally { setTimeout(() => window.__pending--, 0); }
};
}"""


def _all_ids(url: str, auth: dict, **filters) -> list[str]:
    items = requests.get(f"{url}/v1/items", params=dict(filters, limit=200), headers=auth, timeout=10).json()["items"]
    return [i["id"] for i in items]


def _slow_when(page, param: str, value: str | None, ms: int) -> None:
    """Hold back the answers to /v1/items requests whose `param` is `value` (None: present at all)."""
    page.evaluate("""([param, value, ms]) => { window.__slow = (u) => {
        const got = new URL(u, location.href).searchParams.get(param);
        return (value === null ? got !== null : got === value) ? ms : 0; }; }""", [param, value, ms])


def _gallery_ids(page) -> list[str]:
    return page.evaluate("[...document.querySelectorAll('#gallery .card')].map(c => c.dataset.id)")


def _settle(page) -> None:
    page.wait_for_function("window.__pending === 0")  # every response read and drawn (SLOW_FETCH)


def _load_all(page, pages: int = 50) -> None:
    """Click "Load more" until it is gone: at most `pages` times (the tests load a few pages; a button
    that never goes away fails here instead of looping until the suite's timeout)."""
    for _ in range(pages):
        if not page.is_visible("#more"):
            return
        page.click("#more")
        _settle(page)
    raise AssertionError(f'"Load more" still shown after {pages} pages')


def filter_race(page, url: str, auth: dict) -> None:
    """Filters changed faster than the answers come: only the last choice's items are shown,
    each once; a "Load more" overtaken by a filter change, and one clicked twice, add nothing
    stale or twice. Back from an item, the pages loaded are still there."""
    items = requests.get(f"{url}/v1/items?limit=200", headers=auth, timeout=10).json()["items"]
    colors = [i["color"] for i in items if i["color"]]
    color = max(set(colors), key=colors.count)
    cats = [i["category"] for i in items]
    category = max(set(cats), key=cats.count)
    other = next(c for c in set(cats) if c != category) if len(set(cats)) > 1 else category
    page.evaluate(SLOW_FETCH)

    # the sequence: a category (answered last), back to all, then a colour
    _slow_when(page, "category", category, 1500)
    page.select_option("#f-category", category)
    page.select_option("#f-category", "")
    page.select_option("#f-color", color)
    _settle(page)
    _load_all(page)
    want = _all_ids(url, auth, color=color)
    assert _gallery_ids(page) == want, "the gallery is not exactly the colour's items"

    # "Load more" slow to answer, overtaken by a new filter: its page is dropped
    page.select_option("#f-color", "")
    _settle(page)
    assert page.is_visible("#more")
    _slow_when(page, "cursor", None, 1500)
    page.click("#more")
    page.select_option("#f-category", other)
    _settle(page)
    _slow_when(page, "cursor", None, 600)
    # and "Load more" clicked twice before its answer: one page
    if page.is_visible("#more"):
        page.click("#more")
        page.click("#more", force=True)
    _settle(page)
    _load_all(page)
    want = _all_ids(url, auth, category=other)
    got = _gallery_ids(page)
    assert got == want and len(set(got)) == len(got)

    # no match: says so, not "upload a zip"
    absent = next(c for c in page.eval_on_selector_all("#f-category option", "os => os.map(o => o.value)")
                  if c and c not in cats)
    page.select_option("#f-category", absent)
    _settle(page)
    assert page.inner_text("#gallery-empty") == "No garments match these filters."

    # several pages loaded, into an item and back: the same pages, no reload
    page.evaluate("window.__slow = () => 0")
    page.select_option("#f-category", "")
    _settle(page)
    page.click("#more")
    _settle(page)
    before = _gallery_ids(page)
    assert len(before) > 4
    page.locator(".card").nth(len(before) - 1).click()
    page.wait_for_selector("#item-details:not([hidden])")
    page.go_back()
    page.wait_for_selector("#home:not([hidden])")
    _settle(page)
    assert _gallery_ids(page) == before


@contextlib.contextmanager
def following(page, url: str, job: dict, events):
    """The page opened with `job` as the user's newest, running, so it follows the job's stream, whose
    requests `events(route)` answers; the routes are taken away afterwards."""
    import json

    listing = lambda route: route.fulfill(status=200, content_type="application/json",  # noqa: E731
                                          body=json.dumps({"jobs": [job], "next_cursor": None}))
    page.route("**/v1/jobs?limit=1", listing)
    page.route(f"**/v1/jobs/{job['id']}/events", events)
    try:
        page.goto("about:blank")
        page.goto(url + "/#/")  # the newest job is running: the page follows it
        yield
    finally:
        page.unroute("**/v1/jobs?limit=1")
        page.unroute(f"**/v1/jobs/{job['id']}/events")


def failed_photo_once_across_reconnects(page, url: str) -> None:
    """A job's event stream ends every WARDROBE_EVENTS_MAX_SECONDS and the page reconnects; the
    server then sends the last half-minute's failed photos again (clients dedupe by id). The page
    listed the same failed photo once more after every reconnect, until the job ended."""
    import json

    job_id = str(uuid.uuid4())
    job = {"id": job_id, "status": "running", "errors": [], "retryable": False,
           "progress": {"percent": 50, "photos_total": 2, "photos_done": 0, "photos_failed": 1,
                        "photos_duplicate": 0, "items_found": 0, "eta_seconds": None}}
    failed = {"photo_id": str(uuid.uuid4()), "entry": "broken.jpg", "code": "unreadable_image",
              "message": "not an image"}
    streams = []

    def events(route):
        streams.append(1)
        body = (f"event: progress\ndata: {json.dumps(job)}\n\n"
                f"id: c1\nevent: photo_failed\ndata: {json.dumps(failed)}\n\n")  # then the stream ends
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    with following(page, url, job, events):
        page.wait_for_function("document.querySelectorAll('#job-errors li').length > 0")
        deadline = time.monotonic() + 60  # generous: a busy machine
        while len(streams) < 3:  # two reconnects, each sending the failed photo again
            assert time.monotonic() < deadline, f"{len(streams)} stream(s) opened in 60 s, not 3"
            page.wait_for_timeout(200)
        page.wait_for_timeout(300)
        assert page.locator("#job-errors li").all_inner_texts() == ["broken.jpg: not an image"]


def stream_restarts_when_its_last_id_is_refused(page, url: str) -> None:
    """After a deploy that changed the events' id format, a page that reconnected with an id of the old
    one got a 400 and gave the stream up for polling. It now opens the stream again from the start."""
    import json

    job_id = str(uuid.uuid4())
    job = {"id": job_id, "status": "running", "errors": [], "retryable": False,
           "progress": {"percent": 50, "photos_total": 2, "photos_done": 1, "photos_failed": 0,
                        "photos_duplicate": 0, "items_found": 1, "eta_seconds": None}}
    ended = job | {"status": "succeeded", "progress": job["progress"] | {"percent": 100, "photos_done": 2}}
    asked = []

    def events(route):
        last = route.request.headers.get("last-event-id")
        asked.append(last)
        if len(asked) == 1:  # the stream the old server sent, cut by the deploy
            body = f"id: old-format\nevent: progress\ndata: {json.dumps(job)}\n\n"
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)
        elif last:  # what the new server answers an id it cannot read
            route.fulfill(status=400, content_type="application/json",
                          body='{"error": {"code": "invalid_last_event_id", "message": "not an id"}}')
        else:
            body = f"event: progress\ndata: {json.dumps(job)}\n\nevent: end\ndata: {json.dumps(ended)}\n\n"
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    with following(page, url, job, events):
        try:
            page.wait_for_function("document.querySelector('#job').dataset.status === 'succeeded'", timeout=30_000)
        except Exception:  # noqa: BLE001 - said below, with what the page asked for
            pass
        assert page.inner_text("#job-status") == "succeeded", asked
        assert asked == [None, "old-format", None]


def expired_card_images_are_renewed(page, url: str) -> None:
    """A card's image URL is signed for WARDROBE_SIGNED_URL_TTL. A gallery drawn more than that ago
    (a tab left open, or kept while an item was shown) has cards whose lazy images are fetched only
    when scrolled into view, and their signature has run out (404): the card asks for a fresh URL."""
    refused = set()

    def expired_once(route):
        item = route.request.url.split("/v1/items/")[1].split("/")[0]
        if item in refused:
            return route.continue_()
        refused.add(item)
        route.fulfill(status=404, content_type="application/json",
                      body='{"error": {"code": "not_found", "message": "expired"}}')

    page.route("**/v1/items/*/cutout?*", expired_once)
    try:
        page.goto("about:blank")
        page.goto(url + "/#/")
        page.wait_for_selector(".card img")
        page.wait_for_function("(() => { const i = document.querySelector('.card img');"
                               " return i.complete && i.naturalWidth > 0; })()", timeout=10_000)
        assert refused
    finally:
        page.unroute("**/v1/items/*/cutout?*")


def deleted_item_page(page, url: str, auth: dict) -> None:
    """An item deleted elsewhere: its page says so and shows nothing of the item seen before.
    Delete on the page asks first; "Keep it" keeps it."""
    ids = _all_ids(url, auth)
    seen, gone, kept = ids[0], ids[1], ids[2]
    page.goto(f"{url}/#/items/{seen}")
    page.wait_for_function("document.querySelectorAll('#item-mask polygon').length > 0")
    assert requests.delete(f"{url}/v1/items/{gone}", headers=auth, timeout=10).status_code == 204
    page.goto(f"{url}/#/items/{gone}")
    page.wait_for_selector("#item-missing:not([hidden])")
    assert "does not exist" in page.inner_text("#item-missing")
    assert not page.is_visible("#item-details") and not page.is_visible("#delete-item")
    assert page.evaluate("!document.querySelector('#item-photo').getAttribute('src')")

    # delete from the page: a question first, "Keep it" keeps it, then for good
    page.goto(f"{url}/#/items/{kept}")
    page.wait_for_selector("#item-details:not([hidden])")
    page.click("#delete-item")
    page.wait_for_selector("#delete-confirm:not([hidden])")
    page.click("#delete-cancel")
    assert not page.is_visible("#delete-confirm")
    assert requests.get(f"{url}/v1/items/{kept}", headers=auth, timeout=10).status_code == 200
    page.click("#delete-item")
    page.click("#delete-yes")
    page.wait_for_selector("#home:not([hidden])")
    assert requests.get(f"{url}/v1/items/{kept}", headers=auth, timeout=10).status_code == 404
    page.wait_for_function(f"!document.querySelector(\".card[data-id='{kept}']\")")


def hold_first_answers(page, *which):
    """The first GET whose URL each predicate of `which` accepts (given the parsed URL) is answered by the
    server at once but handed to the page only when the returned function is called: answers that
    come after later ones, as on a slow network. That function returns once the page has had them."""
    from urllib.parse import urlsplit

    held: dict[int, tuple] = {}

    def route(r):
        url = urlsplit(r.request.url)
        k = next((k for k, accepts in enumerate(which) if accepts(url)), None)
        if r.request.method != "GET" or k is None or k in held:
            return r.continue_()
        held[k] = (r, r.fetch())

    page.route("**/v1/**", route)

    def release() -> None:
        assert sorted(held) == list(range(len(which))), f"asked for {len(held)} of {len(which)}"
        for r, answer in held.values():
            with page.expect_request_finished(lambda q, url=r.request.url: q.url == url):
                r.fulfill(response=answer)
        page.unroute("**/v1/**", route)
        page.evaluate("() => new Promise((done) => setTimeout(done, 200))")  # the page's own handlers run

    return release


def its_a(category: str) -> str:
    """What the page's "Yes, ..." button says of a class (app.js: itsA)."""
    name = category.split(",")[0]
    if name in ("pants", "shorts", "glasses", "tights"):
        return f"they're {name}"
    return f"it's {'an' if name[0] in 'aeiou' else 'a'} {name}"


def review_view(page, url: str, auth: dict, corrected_id: str, shots: Path) -> None:
    """Three items made uncertain in the database, below a threshold set on the page; one click
    each: an alternative, a class from the picker of all 23, a confirmation. Each leaves the list
    without a reload. The item page says when an item needs review."""
    from sqlalchemy import update

    from db.models import Item
    from db.session import session_scope

    items = requests.get(f"{url}/v1/items?limit=200", headers=auth, timeout=10).json()["items"]
    picked = [i for i in items if i["id"] != corrected_id][:3]
    own = picked[0]["class_id"]
    alts = [c for c in (14, 8, 3) if c != own][:2]
    with session_scope() as s:
        # the model's own confidences do not matter here: every other item is made certain
        s.execute(update(Item).where(Item.id.in_([uuid.UUID(i["id"]) for i in items])).values(confidence=0.9))
        for item, conf in zip(picked, (0.05, 0.1, 0.15)):
            s.execute(update(Item).where(Item.id == uuid.UUID(item["id"])).values(confidence=conf))
        s.execute(update(Item).where(Item.id == uuid.UUID(picked[0]["id"])).values(
            alternatives=[{"class_id": alts[0], "category": "?", "confidence": 0.04},
                          {"class_id": alts[1], "category": "?", "confidence": 0.02}]))
    waiting = requests.get(f"{url}/v1/me", headers=auth, timeout=10).json()["items_needing_review"]
    assert waiting == 3  # at the default threshold

    # the item page says when an item needs review, and confirms it in one click
    page.goto(f"{url}/#/items/{picked[0]['id']}")
    page.wait_for_selector("#item-review:not([hidden])")
    assert "Needs review" in page.inner_text("#item-review-text")
    assert page.inner_text("#item-confirm") == f"Yes, {its_a(picked[0]['category'])}"
    certain = next(i for i in items if i["id"] not in {p["id"] for p in picked} and i["id"] != corrected_id)
    page.goto(f"{url}/#/items/{certain['id']}")
    page.wait_for_selector("#item-details:not([hidden])")
    page.wait_for_function(f"document.querySelector('#item').dataset.id === {certain['id']!r}")
    assert not page.is_visible("#item-review")

    page.goto(url + "/#/")  # back to the gallery: its link counts again (it showed the model's own count before)
    page.wait_for_selector("#review-banner:not([hidden])")
    page.wait_for_function(f"document.querySelector('#review-count').textContent === '{waiting}'")
    # the list and the count the page asks for first come back only after the threshold below was set
    # (a slow network): they must not put back the default's three
    release = hold_first_answers(page, lambda u: u.path == "/v1/me",
                                 lambda u: u.path == "/v1/items" and "needs_review=true" in u.query)
    page.click("#review-link")
    page.wait_for_selector("#review:not([hidden])")
    # a threshold of the user's own, set on the page: below 12 % two are left, least certain first
    page.fill("#review-below", "12")
    page.click("#threshold-form button[type=submit]")
    page.wait_for_function("document.querySelector('#review-count').textContent === '2'")
    page.wait_for_function("document.querySelectorAll('#review-list .review-card').length === 2")
    release()
    assert page.inner_text("#review-count") == "2" and page.input_value("#review-below") == "12"
    assert page.locator("#review-list .review-card").count() == 2
    assert requests.get(f"{url}/v1/me", headers=auth, timeout=10).json()["review_below"] == 0.12
    page.fill("#review-below", "20")
    page.click("#threshold-form button[type=submit]")
    page.wait_for_function("document.querySelector('#review-count').textContent === '3'")
    page.wait_for_function("document.querySelectorAll('#review-list .review-card').length === 3")
    cards = page.locator("#review-list .review-card")
    assert [cards.nth(k).get_attribute("data-id") for k in range(3)] == [i["id"] for i in picked]
    assert requests.get(f"{url}/v1/me", headers=auth, timeout=10).json()["review_below"] == 0.2
    first = page.locator(f".review-card[data-id='{picked[0]['id']}']")
    assert first.locator("button.alt").count() == 2
    assert first.locator("button.confirm").inner_text() == f"Yes, {its_a(picked[0]['category'])}"
    assert first.locator("button.not-garment").inner_text() == "Not a garment"
    # the picker: every class but the item's own, the model's alternatives first
    options = first.locator("select.pick option")
    assert options.count() == 22
    assert [options.nth(k).get_attribute("value") for k in range(2)] == [str(alts[0]), str(alts[1])]
    # a card with no alternatives offers every class too
    assert page.locator(f".review-card[data-id='{picked[1]['id']}'] select.pick option").count() == 22
    page.wait_for_function("[...document.querySelectorAll('.review-card img')].every(i => i.complete && i.naturalWidth > 0)")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    page.screenshot(path=str(shots / "review.png"), full_page=False)
    page.set_viewport_size({"width": 1280, "height": 900})

    # an alternative, in one click: the card leaves, the count drops, the keyboard moves on
    page.evaluate("window.__sameDocument = true")  # gone after a reload
    first.locator(f"button.alt[data-class-id='{alts[0]}']").click()
    page.wait_for_function(f"!document.querySelector(\".review-card[data-id='{picked[0]['id']}']\")")
    page.wait_for_function("document.querySelector('#review-count').textContent === '2'")
    assert page.evaluate("window.__sameDocument === true")
    assert page.evaluate(f"document.activeElement.closest('.review-card').dataset.id === {picked[1]['id']!r}")
    got = requests.get(f"{url}/v1/items/{picked[0]['id']}", headers=auth, timeout=10).json()
    assert got["class_id"] == alts[0] and got["original_class_id"] == own
    assert got["reviewed"] and not got["needs_review"]

    # a class the model never offered, from the picker; then the model's own class, confirmed
    other = next(c for c in range(23) if c != picked[1]["class_id"])
    card1 = page.locator(f".review-card[data-id='{picked[1]['id']}']")
    card1.locator("select.pick").select_option(str(other))
    card1.locator(".pick-form button").click()
    page.wait_for_function("document.querySelectorAll('#review-list .review-card').length === 1")
    picked_class = requests.get(f"{url}/v1/items/{picked[1]['id']}", headers=auth, timeout=10).json()
    assert picked_class["class_id"] == other and picked_class["corrected"] and not picked_class["needs_review"]
    page.locator(f".review-card[data-id='{picked[2]['id']}'] button.confirm").click()
    page.wait_for_selector("#review-empty:not([hidden])")
    assert page.inner_text("#review-count") == "0"
    confirmed = requests.get(f"{url}/v1/items/{picked[2]['id']}", headers=auth, timeout=10).json()
    assert confirmed["class_id"] == picked[2]["class_id"] and confirmed["reviewed"] and not confirmed["corrected"]

    # one more uncertain item, said not to be a garment
    with session_scope() as s:
        s.execute(update(Item).where(Item.id == uuid.UUID(certain["id"])).values(confidence=0.05))
    page.goto(url + "/#/")
    page.goto(url + "/#/review")
    page.wait_for_function("document.querySelectorAll('#review-list .review-card').length === 1")
    page.locator(f".review-card[data-id='{certain['id']}'] button.not-garment").click()
    page.wait_for_selector("#review-empty:not([hidden])")
    assert page.inner_text("#review-count") == "0"
    rejected = requests.get(f"{url}/v1/items/{certain['id']}", headers=auth, timeout=10).json()
    assert rejected["status"] == "not_garment"
    assert requests.get(f"{url}/v1/items?needs_review=true", headers=auth, timeout=10).json()["items"] == []
