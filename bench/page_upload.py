"""The page's upload of loose photos: the browser's memory while it zips and sends them (client-zip's
stream through a resumable upload session, api/static/upload.js), against the same zip made in memory
first (what a library without streaming does), in the same run and the same Chromium.

    python -m bench.page_upload [--photos 300 --mb 3.5]    # writes bench/out/page_upload.json

Figures: the peak resident memory of Chromium's processes (all of them, summed) above what they held
before, sampled every 50 ms; the photos are random bytes named .jpg (the upload never decodes them; no
worker runs). The API is `wardrobe serve` embedded (SQLite, folder storage: tus chunks of 8 MiB)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


class PeakRss:
    """The summed RSS of the Chromium processes under this one, sampled in a thread."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()

    def now(self) -> int:
        total = 0
        for p in psutil.Process().children(recursive=True):
            try:
                if "chrom" in p.name():
                    total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def __enter__(self):
        self.base = self.now()
        self.peak = self.base
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.now())

    def __exit__(self, *exc):
        self._stop.set()
        time.sleep(0.1)

    @property
    def above_base_mb(self) -> float:
        return round((self.peak - self.base) / 1e6, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--mb", type=float, default=3.5, help="each photo's size in MB")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "page_upload.json"))
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from bench.scratch import free_port, wait_port

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = []
        for k in range(a.photos):
            p = tmp / "photos" / f"IMG_{k:04d}.jpg"
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(os.urandom(int(a.mb * 1e6)))
            photos.append(str(p))
        total_mb = round(sum(os.path.getsize(p) for p in photos) / 1e6, 1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")} | {
            "WARDROBE_DATA_DIR": str(tmp / "data"), "WARDROBE_MAX_UPLOAD_BYTES": str(4 << 30)}
        token = subprocess.run([sys.executable, "-m", "cli.main", "users", "create", "bench"], cwd=ROOT, env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
        port = free_port()
        api = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", "2"],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = {"photos": a.photos, "photos_mb": total_mb}
        try:
            wait_port(port, 60)
            url = f"http://127.0.0.1:{port}"
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(bypass_csp=True)  # Playwright waits evaluate strings; the page forbids eval
                page.goto(url + "/")
                page.fill("#token", token)
                page.click("#signin-form button")
                page.wait_for_selector("#home:not([hidden])")
                page.set_input_files("#zip", photos)
                t0 = time.monotonic()
                with PeakRss() as streamed:
                    page.click("#upload-button")
                    page.wait_for_function("['uploaded'].includes(document.querySelector('#upload-label').textContent)"
                                           " || document.querySelector('#upload-label').classList.contains('error')",
                                           timeout=1_800_000)
                label = page.inner_text("#upload-label")
                result["streamed"] = {"label": label, "seconds": round(time.monotonic() - t0, 1),
                                      "peak_rss_above_idle_mb": streamed.above_base_mb}
                page.close()

                # the baseline: the same zip, made whole in memory
                page = browser.new_page(bypass_csp=True)
                page.goto(url + "/")
                page.set_input_files("#zip", photos)
                with PeakRss() as held:
                    try:
                        n = page.evaluate("""async () => {
                          const { makeZip } = await import('/static/vendor/client-zip/index.js');
                          const { photoEntries } = await import('/static/upload.js');
                          const zip = await new Response(makeZip(photoEntries(document.querySelector('#zip').files))).arrayBuffer();
                          return zip.byteLength; }""")
                        result["in_memory"] = {"zip_mb": round(n / 1e6, 1), "peak_rss_above_idle_mb": held.above_base_mb}
                    except Exception as e:  # noqa: BLE001 - the renderer ran out of memory: that is the figure
                        result["in_memory"] = {"error": f"{type(e).__name__}: {str(e)[:200]}",
                                               "peak_rss_above_idle_mb": held.above_base_mb}
                browser.close()
        finally:
            api.terminate()
            api.wait(30)
    s, m = result["streamed"], result["in_memory"]
    result["ratio_in_memory_over_streamed"] = round(m["peak_rss_above_idle_mb"] / max(0.1, s["peak_rss_above_idle_mb"]), 2)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{a.photos} photos, {total_mb} MB: streamed through the session in {s['seconds']} s ({s['label']}), "
          f"Chromium's peak memory +{s['peak_rss_above_idle_mb']} MB; the zip made in memory first: "
          f"+{m['peak_rss_above_idle_mb']} MB{' (' + m['error'] + ')' if 'error' in m else ''}; "
          f"ratio {result['ratio_in_memory_over_streamed']}")
    return 0 if s["label"] == "uploaded" else 1


if __name__ == "__main__":
    sys.exit(main())
