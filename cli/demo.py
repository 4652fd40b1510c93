"""`wardrobe demo`: the whole product on one machine, no servers installed.

Starts the API and a worker on the embedded default (SQLite, a storage folder,
a filesystem broker), creates a demo user, zips the example photos, uploads
them over HTTP, follows the job and prints the catalogue per category.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from core.config import REPO_ROOT


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import requests

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the API exited with code {proc.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s")


@contextlib.contextmanager
def embedded_stack(data_dir: Path, port: int, keep_running: bool = False, pass_env: tuple[str, ...] = ()):
    """The API and one worker on the embedded default (SQLite, a storage folder, a filesystem
    broker) in `data_dir`, with a user "demo"; yields (url, token, processes). Environment
    variables named in `pass_env` (and the model's) reach the services; no other WARDROBE_*."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    env.update(WARDROBE_DATA_DIR=str(data_dir), WARDROBE_LOG_LEVEL="WARNING", WARDROBE_ALLOW_SIGNUP="true")
    for k in ("WARDROBE_MODEL", "WARDROBE_DEVICE", "WARDROBE_BACKEND", *pass_env):
        if k in os.environ:
            env[k] = os.environ[k]
    exe = [sys.executable, "-m", "cli.main"]
    logs = open(data_dir / "demo-services.log", "ab")
    procs: list[subprocess.Popen] = []
    try:
        # migrate first so the API and worker do not race to create the schema
        subprocess.run(exe + ["migrate"], env=env, check=True, stdout=subprocess.DEVNULL, cwd=REPO_ROOT)
        # one live token for the demo user: the one printed last (earlier runs' are revoked)
        token = subprocess.run(exe + ["users", "token", "demo", "--revoke-others"], env=env, capture_output=True, text=True,
                               cwd=REPO_ROOT)
        if token.returncode != 0:
            token = subprocess.run(exe + ["users", "create", "demo"], env=env, capture_output=True, text=True, check=True, cwd=REPO_ROOT)
        token_value = token.stdout.strip().splitlines()[-1]
        api = subprocess.Popen(exe + ["serve", "--port", str(port)], env=env, stdout=logs, stderr=logs, cwd=REPO_ROOT,
                               start_new_session=True)
        procs.append(api)
        worker = subprocess.Popen(exe + ["worker", "--loglevel", "WARNING"], env=env, stdout=logs, stderr=logs, cwd=REPO_ROOT,
                                  start_new_session=True)
        procs.append(worker)
        url = f"http://127.0.0.1:{port}"
        _wait_http(url + "/healthz", api)
        yield url, token_value, list(procs)
        if keep_running:
            procs.clear()
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        # the work is done by now: a few seconds for a clean exit, then kill (the Celery main
        # process can wait ~20 s in billiard's pool shutdown on the filesystem broker)
        deadline = time.monotonic() + 5
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


def stop_command(*pids: int) -> str:
    """The shell command that stops services started by embedded_stack (each leads a process group): a
    TERM to each whole group. The worker's main process finishes its running tasks (warm shutdown) and
    its pool processes wait for it (worker/groupterm.py); the API finishes its requests."""
    return "kill -TERM " + " ".join(f"-{pid}" for pid in pids)


def zip_photos(photos: list[Path], dst: Path) -> Path:
    with zipfile.ZipFile(dst, "w") as zf:
        for p in photos:
            zf.write(p, p.name)
    return dst


def run_demo(a) -> int:
    from cli.client import ApiClient
    from cli.catalogue import duplicate_note, print_catalogue

    photos = Path(a.photos or REPO_ROOT / "examples" / "photos")
    data_dir = Path(a.data_dir or REPO_ROOT / "var" / "demo").resolve()
    out = Path(a.out or data_dir / "cutouts").resolve()
    with embedded_stack(data_dir, a.port, keep_running=a.keep_running) as (url, token_value, procs):
        api, worker = procs
        print(f"API on {url}, worker started; data in {data_dir}", file=sys.stderr)

        client = ApiClient(url, token_value)
        with tempfile.TemporaryDirectory() as tmp:
            job = client.upload(zip_photos(sorted(photos.glob("*.jpg")), Path(tmp) / "demo-photos.zip"))
        job = client.wait(job["id"])
        p = job["progress"]
        print(f"job {job['id']}: {job['status']}, {p['photos_done']} photos segmented, {p['items_found']} items",
              file=sys.stderr)
        for e in job["errors"]:
            print(f"  error {e['entry']}: {e['code']} {e['message']}", file=sys.stderr)
        items = client.all_items(job_id=job["id"])
        if (note := duplicate_note(job)):
            print(note, file=sys.stderr)
        if not items and p["photos_duplicate"]:
            # an earlier demo run uploaded these photos: show what it found
            items = client.all_items()
            print(f"(a demo ran here before, data in {data_dir}: the catalogue below is from then; "
                  f"`rm -rf {data_dir}` to start afresh)", file=sys.stderr)
        print_catalogue(items)
        out.mkdir(parents=True, exist_ok=True)
        saved = 0
        for it in items:
            ext = "webp" if it["cutout_content_type"] == "image/webp" else "png"
            dst = out / f"{it['category'].split(',')[0].replace(' ', '-')}-{it['id'][:8]}.{ext}"
            if not dst.exists():
                dst.write_bytes(client.get_bytes(it["cutout_url"]))
                saved += 1
        if items:
            print(f"\n{len(items)} cut-outs in {out}" + ("" if saved == len(items) else f" ({saved} new)"))
        print(f"\nthe web page: {url}/  (sign in with the demo token: {token_value})")
        if a.keep_running:
            print(f"API and worker keep running (pids {api.pid}, {worker.pid}); stop them with "
                  f"{stop_command(api.pid, worker.pid)}")
        elif sys.stdin.isatty():
            try:
                input("the page works until you press Enter here, which stops the API and the worker ")
            except (EOFError, KeyboardInterrupt):
                pass
            print("stopping the API and the worker ...", file=sys.stderr)
        else:
            print("not a terminal: stopping the API and the worker now (--keep-running leaves them up)",
                  file=sys.stderr)
        return 0 if job["status"] in ("succeeded", "partially_succeeded") else 1
