"""The documentation: a README read in five minutes, and a site that builds with every link resolving."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _build(root: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=root,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build = _build(ROOT, out)
    assert build.returncode == 0, build.stderr[-3000:]
    return out


def _text(page: Path) -> str:
    return re.sub(r"<[^>]+>", " ", page.read_text())


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, len(lines)
    first = "\n".join(lines[:40])
    assert "make test" in first and "make demo" in first
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", "\n".join(lines)):  # the README's own links resolve
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), target


def test_the_readme_quick_start_exports_what_the_script_and_the_cli_read():
    readme = (ROOT / "README.md").read_text()
    assert "export TOKEN=$(wardrobe users create" in readme and "export WARDROBE_TOKEN=" in readme
    script = (ROOT / "scripts" / "curl-session.sh").read_text()
    assert '"${TOKEN:?' in script  # the script reads TOKEN from its environment: it must be exported


def test_the_site_builds_with_every_page(site):
    for page in ("index.html", "getting-started.html", "web-page.html", "cli.html", "api/index.html",
                 "api/reference.html", "api/live-progress.html", "uploads.html", "webhooks.html", "export.html",
                 "operations/configuration.html", "operations/compose.html", "operations/kubernetes.html",
                 "operations/metrics.html", "operations/guarantees.html", "scaling.html", "model/index.html",
                 "model/card.html", "model/quality.html", "model/training.html", "benchmarks.html", "speed.html",
                 "design.html", "sessions/index.html", "sessions/events-and-retry.html"):
        assert (site / page).is_file(), page


def test_the_api_reference_has_every_operation_of_the_openapi_document(site):
    from docs.openapi_md import load_spec

    spec = load_spec(ROOT)
    ref = _text(site / "api" / "reference.html")
    ops = [(m.upper(), p) for p, item in spec["paths"].items() for m in item if m in ("get", "post", "patch", "delete")]
    assert len(ops) > 30
    for method, path in ops:
        assert f"{method} {path}" in re.sub(r"\s+", " ", ref), (method, path)
    for name in spec["components"]["schemas"]:
        assert f'id="schema-{name.lower()}"' in (site / "api" / "reference.html").read_text(), name


def test_the_benchmarks_page_renders_the_newest_record_of_each_kind_with_where_it_comes_from(site):
    from bench import records

    card = json.loads((ROOT / "models" / "wardrobe-yolov8s-seg.json").read_text())
    recs = records.load(ROOT / "docs" / "benchmarks")
    page = _text(site / "benchmarks.html")
    newest = records.newest(recs, "pipeline", imgsz=card["serve_imgsz"])
    assert newest is not None and newest.path.name in page
    older = [r for r in recs if r.kind == "pipeline" and r.data.get("imgsz") == card["serve_imgsz"] and r is not newest]
    assert older and all(r.sort_key < newest.sort_key for r in older)
    assert newest.data["date"] in page and newest.data["model_version"] in page
    quality = records.newest(recs, "quality")
    assert quality.path.name in page and "make quality" in page
    assert f"The shipped model is {card['version']}" in re.sub(r"\s+", " ", page)


def test_newest_picks_by_date_and_says_when_a_record_is_not_the_shipped_model(tmp_path):
    from bench import records
    from bench.report import _provenance

    for name, date, version in (("pipeline-a.json", "2026-11-29T01:00:00+00:00", "m-old"),
                                ("pipeline-b.json", "2026-12-01T14:00:00+00:00", "m-new")):
        (tmp_path / name).write_text(json.dumps({"date": date, "model_version": version, "imgsz": 384}))
    recs = records.load(tmp_path)
    best = records.newest(recs, "pipeline", imgsz=384)
    assert best.path.name == "pipeline-b.json"
    assert not any("Not the shipped model" in line for line in _provenance(best, "m-new"))
    assert any("Not the shipped model" in line for line in _provenance(recs[0], "m-new"))
    # an experiment (a setting away from its default) is newer, but the served figures are the default's
    (tmp_path / "quality-x.json").write_text(json.dumps({"settings": {"WARDROBE_MASK_REFINE_RADIUS": "16"}}))
    (tmp_path / "quality-y.json").write_text(json.dumps({"settings": {"WARDROBE_MASK_REFINE_RADIUS": "4"}}))
    for name, day in (("quality-x.json", "2026-12-01"), ("quality-y.json", "2026-12-07")):
        data = json.loads((tmp_path / name).read_text())
        (tmp_path / name).write_text(json.dumps(dict(data, recorded={"date": f"{day}T00:00:00+00:00"})))
    recs = records.load(tmp_path)
    assert records.newest(recs, "quality").path.name == "quality-x.json"
    assert records.changed_settings(next(r for r in recs if r.path.name == "quality-y.json")) == {
        "WARDROBE_MASK_REFINE_RADIUS": "4"}


def test_a_broken_link_fails_the_build(tmp_path):
    copy = tmp_path / "repo"
    for part in ("docs", "mkdocs.yml", "api", "bench", "core", "db", "models/README.md", "models/wardrobe-yolov8s-seg.json"):
        src, dst = ROOT / part, copy / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)
    page = copy / "docs" / "design.md"
    page.write_text(page.read_text() + "\nSee [the scaling page](scaling.md#no-such-heading).\n")
    build = _build(copy, tmp_path / "site")
    assert build.returncode != 0 and "no-such-heading" in build.stderr
