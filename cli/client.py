"""A small HTTP client for the API, used by `wardrobe upload/jobs/items/demo`."""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from urllib.parse import quote

import requests

PAGE = 200  # rows a list page asks for; a server whose operator allows fewer gets its own default


class ApiRefused(SystemExit):
    """An error answer from the API: exits the command with its one line, and says what it was."""

    def __init__(self, status: int, error: str | None, line: str):
        super().__init__(line)  # SystemExit's `code`: what the command prints as it exits
        self.status, self.error = status, error


def api_url(url: str) -> str:
    """The API's address as the user wrote it, with http:// when no scheme is given (127.0.0.1:8000)."""
    url = url.strip().rstrip("/")
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if scheme is None:
        return "http://" + url
    if scheme.group(1).lower() not in ("http", "https"):
        raise SystemExit(f"the API's address must be http:// or https://, not {url!r} (--url or WARDROBE_URL)")
    return url


class ApiClient:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30):
        self.url = api_url(url or os.environ.get("WARDROBE_URL") or "http://127.0.0.1:8000")
        self.token = token or os.environ.get("WARDROBE_TOKEN")
        self.timeout = timeout
        self.http = requests.Session()

    def _headers(self) -> dict:
        if not self.token:
            raise SystemExit("no API token: pass --token or set WARDROBE_TOKEN")
        return {"Authorization": f"Bearer {self.token}"}

    def _check(self, r: requests.Response) -> requests.Response:
        if r.status_code >= 400:
            code = None
            try:
                err = r.json()["error"]
                code, msg = err["code"], f"{err['code']}: {err['message']}"
            except Exception:  # noqa: BLE001
                msg = " ".join(r.text[:300].split())  # another server's error page: its words on one line
            raise ApiRefused(r.status_code, code, f"HTTP {r.status_code} {msg}")
        return r

    def _send(self, method: str, path: str, **kw) -> requests.Response:
        """One request; a server that cannot be reached is one line, not a traceback."""
        try:
            return self._check(self.http.request(method, self.url + path, **kw))
        except requests.ConnectionError:
            raise SystemExit(f"error: cannot reach the API at {self.url} (is `wardrobe serve` running there? "
                             "set --url or WARDROBE_URL)") from None
        except requests.Timeout:
            raise SystemExit(f"error: the API at {self.url} did not answer within {self.timeout:.0f}s") from None
        except requests.RequestException as e:
            raise SystemExit(f"error: {self.url}: {type(e).__name__}: {e}") from None

    def _json(self, r: requests.Response):
        """The answer's JSON; one line where it is none (the address is some other web server)."""
        try:
            return r.json()
        except ValueError:
            raise SystemExit(f"the answer to {r.request.method} {r.url} is not JSON (HTTP {r.status_code}, "
                             f"{r.headers.get('Content-Type') or 'no content type'}): is {self.url} the wardrobe "
                             "API? (--url or WARDROBE_URL)") from None

    def get(self, path: str, **params) -> dict:
        return self._json(self._send("GET", path, headers=self._headers(), params=params, timeout=self.timeout))

    def delete(self, path: str) -> dict | None:
        r = self._send("DELETE", path, headers=self._headers(), timeout=self.timeout)
        return self._json(r) if r.content else None

    def get_bytes(self, path: str) -> bytes:
        return self._send("GET", path, headers=self._headers(), timeout=self.timeout).content

    def post(self, path: str, **kw) -> dict:
        return self._json(self._send("POST", path, headers=self._headers(), timeout=self.timeout, **kw))

    def patch(self, path: str, **kw) -> dict:
        return self._json(self._send("PATCH", path, headers=self._headers(), timeout=self.timeout, **kw))

    def download(self, path: str, dst: Path, progress: bool = True, total: int | None = None) -> int:
        """Stream a file answer into `dst` (written beside it, then renamed: never half a file there)."""
        t0 = time.monotonic()
        part = dst.with_name(dst.name + ".part")
        done = 0
        with self._send("GET", path, headers=self._headers(), timeout=max(self.timeout, 600), stream=True) as r:
            total = int(r.headers.get("Content-Length") or 0) or total or 0
            try:
                with open(part, "wb") as f:
                    for chunk in r.iter_content(1024 * 1024):
                        f.write(chunk)
                        done += len(chunk)
                        if progress:
                            bar("downloading", done, max(1, total), t0, f" {done / 1e6:.1f} MB")
            except requests.RequestException as e:
                part.unlink(missing_ok=True)
                raise SystemExit(f"error: the download stopped after {done / 1e6:.1f} MB ({type(e).__name__}); "
                                 "run the same command again") from None
        end_bar()
        part.replace(dst)
        return done

    def _follow(self, what: str, path: str, bar_of, timeout: float, poll: float, worker_wait: float,
                progress: bool, idle_hint: str) -> dict:
        """GET `path` until its status is neither queued nor running, with a progress bar (`bar_of`: the body
        to (done, total, suffix)); says so once when nothing has taken it up after `worker_wait` seconds."""
        t0 = time.monotonic()
        told = False
        while True:
            body = self.get(path)
            if body["status"] == "queued" and not told and time.monotonic() - t0 > worker_wait:
                told = True  # nothing has taken it: say so instead of a bar at 0 % for ever
                end_bar()
                sys.stderr.write(f"{what} still queued after {worker_wait:.0f}s: {idle_hint}\n")
            if progress:
                done, total, suffix = bar_of(body["progress"])
                bar(f"{what.split()[0]} {body['status']:<9}", done, max(1, total), t0, suffix)
            if body["status"] not in ("queued", "running"):
                end_bar()
                return body
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"{what} still {body['status']} after {timeout:.0f}s")
            time.sleep(poll)

    def wait_export(self, export_id: str, progress: bool = True, poll: float = 0.5, timeout: float = 3600,
                    worker_wait: float = 10) -> dict:
        """Follow an export until it has succeeded or failed, with a progress bar."""
        return self._follow(f"export {export_id}", f"/v1/exports/{export_id}",
                            lambda p: (p["photos_done"], p["photos_total"], f" {p['items_done']}/{p['items_total']} items"),
                            timeout, poll, worker_wait, progress,
                            "waiting for a worker on the export queue (`wardrobe workers` lists those that answer)")

    def upload(self, zip_path: Path, progress: bool = True) -> dict:
        size = zip_path.stat().st_size
        t0 = time.monotonic()

        class _Reader:
            """A file that reports progress; its __len__ gives requests a Content-Length, so the body streams."""

            def __init__(self, f):
                self.f, self.sent = f, 0

            def __len__(self):
                return size

            def read(self, n=-1):
                chunk = self.f.read(n if n and n > 0 else 256 * 1024)
                self.sent += len(chunk)
                if progress:
                    bar("uploading", self.sent, size, t0)
                return chunk

        headers = self._headers() | {"Content-Type": "application/zip", "X-Filename": quote(zip_path.name, safe=" ")}  # headers are Latin-1
        with open(zip_path, "rb") as f:
            r = self._send("POST", "/v1/uploads", data=_Reader(f), headers=headers, timeout=max(self.timeout, 600))
        end_bar()
        return self._json(r)

    def wait(self, job_id: str, progress: bool = True, poll: float = 0.5, timeout: float = 3600,
             worker_wait: float = 10) -> dict:
        return self._follow(f"job {job_id}", f"/v1/jobs/{job_id}",
                            lambda p: (p["photos_done"] + p["photos_failed"] + p["photos_duplicate"], p["photos_total"],
                                       f" {p['items_found']} items"),
                            timeout, poll, worker_wait, progress,
                            "waiting for a worker (is `wardrobe worker` running? `wardrobe workers` lists those that answer)")

    def all_pages(self, path: str, key: str, **params) -> list[dict]:
        """Every row of a keyset-paged list (`key` in each page), following `next_cursor`."""
        out, cursor, size = [], None, {"limit": PAGE}
        while True:
            try:
                page = self.get(path, **dict(params, **size, **({"cursor": cursor} if cursor else {})))
            except ApiRefused as e:
                if not (size and e.status == 400 and e.error == "invalid_parameter"):
                    raise
                size = {}  # WARDROBE_PAGE_MAX is below PAGE there: pages of the server's default size
                continue
            out += page[key]
            cursor = page["next_cursor"]
            if not cursor:
                return out

    def all_items(self, **filters) -> list[dict]:
        return self.all_pages("/v1/items", "items", **filters)


_last_bar: list = [None]
_bar_open: list = [False]  # a bar is drawn and its line not ended: the next message goes on a line of its own


def end_bar() -> None:
    """End the progress bar's line, if one is drawn, so what is printed next starts a line of its own."""
    if _bar_open[0]:
        sys.stderr.write("\n")
        sys.stderr.flush()
        _bar_open[0] = False
        _last_bar[0] = None


def bar(label: str, done: int, total: int, t0: float, suffix: str = "") -> None:
    width = 30
    frac = min(1.0, done / total) if total else 0.0
    state = (label, int(frac * 100), suffix)
    if state == _last_bar[0] and frac < 1.0:
        return  # redraw only when something visible changed
    _last_bar[0] = state
    fill = int(frac * width)
    _bar_open[0] = True
    sys.stderr.write(f"\r{label} [{'#' * fill}{'.' * (width - fill)}] {frac * 100:5.1f}% {time.monotonic() - t0:5.1f}s{suffix}   ")
    sys.stderr.flush()
