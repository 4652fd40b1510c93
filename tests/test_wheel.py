"""The built wheel is the product: installed on its own (no checkout beside it), it serves the page."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("api", "worker", "segmentation", "core", "db", "services", "training", "cli")

SERVE = """
import os, sys
import api
from api.app import create_app
assert not api.__file__.startswith(sys.argv[1]), api.__file__  # the installed copy, not the checkout
c = create_app().test_client()
page = c.get("/")
assert page.status_code == 200 and b"<html" in page.data.lower(), (page.status_code, page.data[:200])
assert c.get("/v1/openapi.json").get_json()["openapi"].startswith("3.1")  # the document ships too
for ref in ("/static/app.js", "/static/app.css"):
    r = c.get(ref)
    assert r.status_code == 200 and r.data, (ref, r.status_code)
print("served", len(page.data), api.__file__)
"""


def _run(*args, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{args}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def test_the_built_wheel_installed_in_a_clean_venv_serves_the_page(tmp_path):
    # the sources only (no models, no tests, no build/ or egg-info left in the checkout)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # offline: the build uses this environment's setuptools (no isolated build env to download)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w",
         str(tmp_path / "dist"), str(src))
    (wheel,) = (tmp_path / "dist").glob("wardrobe-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    site = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # the dependencies (the api extra's) from this environment's site-packages, as a plain path: its
    # .pth files are not run, so the checkout's editable install is not on the clean venv's path
    (site / "deps-from-the-test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel))

    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    env.update(WARDROBE_DATA_DIR=str(tmp_path / "data"))  # SQLite, migrated at start: the migrations ship too
    out = _run(str(python), "-I", "-c", SERVE, str(ROOT), cwd=tmp_path, env=env).stdout
    assert "served" in out and str(site) in out, out
