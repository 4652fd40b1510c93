"""`wardrobe upload` of a large zip through a resumable upload session (POST /v1/upload-sessions):
a cut connection costs a few retries, then the command stops; run the same command again and it
goes on from the parts (S3 storage) or the offset (folder storage) the server already has.

The session's id is kept in the user's config dir (uploads.json under $XDG_CONFIG_HOME/wardrobe, else
~/.config/wardrobe), keyed by the API's address and the zip's path, size and modification time: a zip
changed since is a new upload. The entry goes once the upload is completed.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import requests

from cli.client import ApiClient, bar, end_bar

RESUMABLE_OVER = 16 * 1024 * 1024  # bytes: `--resumable auto` takes a session for zips at least this large
CHUNK = 8 * 1024 * 1024  # chunked mode: bytes per PATCH
RETRY_WAITS = (1.0, 3.0, 10.0)  # seconds before each new try of a request; then the command stops
TUS = {"Tus-Resumable": "1.0.0"}


class Cut(Exception):
    """The connection kept failing: the upload stops here, to be resumed by running the command again."""


# --- the state file ------------------------------------------------------------------------------------------------

def state_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "wardrobe" / "uploads.json"


def _state() -> dict:
    try:
        return json.loads(state_path().read_text())
    except (OSError, ValueError):
        return {}


def _save_state(state: dict) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)  # never half a file: a second upload running at once loses at worst its entry


def state_key(api_url: str, path: Path, source: Path | None = None) -> str:
    """The zip's address, path, size and modification time; for a folder zipped on the fly, the
    folder's path and its newest file's time (the zip is made anew each time, the same bytes)."""
    st = path.stat()
    if source is not None and source.is_dir():
        newest = max((p.stat().st_mtime_ns for p in source.iterdir() if p.is_file()), default=0)
        return f"{api_url} {source.resolve()}/ {st.st_size} {newest}"
    return f"{api_url} {path.resolve()} {st.st_size} {st.st_mtime_ns}"


# --- requests that retry -------------------------------------------------------------------------------------------

def _retrying(send, what: str) -> requests.Response:
    """`send()` until it gets an answer other than a gateway's 502-504; Cut when it never does."""
    last: Exception | str = ""
    for wait in (0.0, *RETRY_WAITS):
        time.sleep(wait)
        try:
            r = send()
        except (requests.ConnectionError, requests.Timeout) as e:
            last = e
            continue
        if r.status_code in (502, 503, 504):
            last = f"HTTP {r.status_code}"
            continue
        return r
    raise Cut(f"{what}: {type(last).__name__ if isinstance(last, Exception) else last}")


def _api(c: ApiClient, method: str, path: str, **kw) -> requests.Response:
    headers = c._headers() | TUS | kw.pop("headers", {})
    return _retrying(lambda: c.http.request(method, c.url + path, headers=headers, timeout=max(c.timeout, 120), **kw),
                     f"{method} {path}")


def _error_code(r: requests.Response) -> str | None:
    """The API's error code in a refusal; None in anything else (another server's error page)."""
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _read(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


# --- the two modes ---------------------------------------------------------------------------------------------------

def _send_parts(c: ApiClient, path: Path, sess: dict, progress: bool) -> int:
    """S3: PUT the missing parts to their presigned URLs (no API token: the URL is the permission)."""
    base, t0 = f"/v1/upload-sessions/{sess['id']}", time.monotonic()
    missing, size, part_size = sess["missing_parts"], sess["size"], sess["part_size"]
    done, sent = size - sum(min(part_size, size - (n - 1) * part_size) for n in missing), 0
    for i in range(0, len(missing), 100):
        urls = c._check(_api(c, "POST", f"{base}/parts", json={"numbers": missing[i:i + 100]})).json()["parts"]
        for part in urls:
            data = _read(path, (part["number"] - 1) * part_size, part["size"])
            r = _retrying(lambda: c.http.put(part["url"], data=data, timeout=max(c.timeout, 300)),
                          f"part {part['number']} of {sess['part_count']}")
            if r.status_code == 403:  # the URL expired (a long pause): a fresh one
                fresh = c._check(_api(c, "POST", f"{base}/parts", json={"numbers": [part["number"]]})).json()["parts"][0]
                r = _retrying(lambda: c.http.put(fresh["url"], data=data, timeout=max(c.timeout, 300)),
                              f"part {part['number']} of {sess['part_count']}")
            if r.status_code >= 400:
                raise SystemExit(f"storage refused part {part['number']}: HTTP {r.status_code} {r.text[:200]}")
            done, sent = done + len(data), sent + len(data)
            if progress:
                bar("uploading", done, size, t0)
    return sent


def _send_chunks(c: ApiClient, path: Path, sess: dict, progress: bool) -> int:
    """Folder storage: PATCH chunks from the offset the API has (tus). After a cut mid-chunk the API
    keeps what arrived and answers the retry 409 with its offset: the rest is sent from there."""
    where, size, t0 = f"/v1/upload-sessions/{sess['id']}", sess["size"], time.monotonic()
    offset, sent = sess["offset"], 0
    while offset < size:
        data = _read(path, offset, min(CHUNK, size - offset))
        r = _api(c, "PATCH", where, data=data,
                 headers={"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
        if r.status_code == 409 and _error_code(r) == "append_in_progress":
            time.sleep(0.5)  # the cut chunk's request is still being wound up on the server
            r = _api(c, "HEAD", where)
        if r.status_code >= 400 and not (r.status_code == 409 and "Upload-Offset" in r.headers):
            c._check(r)  # refused with nothing said of where to go on (completed, expired): its one line
        if r.status_code == 204:
            sent += int(r.headers["Upload-Offset"]) - offset
        offset = int(r.headers["Upload-Offset"])
        if progress:
            bar("uploading", offset, size, t0)
    return sent


# --- the upload ----------------------------------------------------------------------------------------------------

def _resume_or_create(c: ApiClient, path: Path, key: str, state: dict) -> dict | None:
    entry = state.get(key) or {}
    if entry.get("session"):
        r = _api(c, "GET", f"/v1/upload-sessions/{entry['session']}")
        if r.status_code == 200:
            sess = c._json(r)
            print(f"resuming upload session {sess['id']}: {sess['offset']} of {sess['size']} bytes already there",
                  file=sys.stderr)
            return sess
        if r.status_code != 404:
            c._check(r)  # 404: expired, or the server forgot it: a new session
    sha = _sha256(path)
    r = _api(c, "POST", "/v1/upload-sessions", json={"filename": path.name, "size": path.stat().st_size, "sha256": sha})
    if r.status_code == 404 and _error_code(r) == "not_found":
        return None  # an API without resumable uploads
    sess = c._json(c._check(r))
    state[key] = {"session": sess["id"], "mode": sess["mode"], "created_at": sess["created_at"]}
    _save_state(state)
    return sess


def upload(c: ApiClient, path: Path, source: Path | None = None, progress: bool = True) -> dict | None:
    """Upload the zip at `path` (made from the folder `source`, if so) through a session, resuming the one
    it began; the job (None: the API has no resumable uploads). Exits with a message when the
    connection is lost for good."""
    key, state = state_key(c.url, path, source), _state()
    sess = _resume_or_create(c, path, key, state)
    if sess is None:
        return None
    try:
        if sess["status"] == "open":
            send = _send_parts if sess["mode"] == "s3_multipart" else _send_chunks
            sent = send(c, path, sess, progress)
            if progress:
                end_bar()
                sys.stderr.write(f"sent {sent} bytes of {sess['size']}\n")
        job = c._check(_api(c, "POST", f"/v1/upload-sessions/{sess['id']}/complete")).json()
    except (Cut, KeyboardInterrupt) as e:  # the connection lost for good, or Ctrl-C: the session stays
        why = f" ({e})" if isinstance(e, Cut) else ""
        raise SystemExit(f"upload interrupted{why}; run the same command again to resume session {sess['id']}") \
            from None
    state = _state()
    state.pop(key, None)
    _save_state(state)
    return job
