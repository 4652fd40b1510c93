"""`make bench` on a few example photos: the benchmark runs, its pipeline really produced a
catalogue, its ratios follow from its own figures, and the report renders them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import other_size_lines, pipeline_lines
from tests.conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.e2e


def test_bench_pipeline_measures_and_reports(tmp_path):
    out = tmp_path / "pipeline.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.pipeline", "--photos", str(EXAMPLES), "--val-json", "", "-n", "4",
         "--repeats", "1", "--no-workers", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())

    assert report["photos"] == 4
    pipe = report["pipeline"]
    assert pipe["status"] == "succeeded" and pipe["photos"] == 4 and pipe["items"] > 0
    assert 0 < pipe["post_share"] < 1
    # the same pipeline on PostgreSQL and moto's S3 server found the same garments
    on_services = report["pipeline_postgres_s3"]
    assert on_services["status"] == "succeeded" and on_services["items"] == pipe["items"]
    base, backend = report["baseline_pytorch_fp32"], report["backend_bare"]
    assert base["ms_per_photo"] > 0 and backend["ms_per_photo"] > 0
    ratios = report["ratios"]
    assert ratios["backend_speedup_vs_pytorch_fp32"] == pytest.approx(base["ms_per_photo"] / backend["ms_per_photo"], abs=0.01)
    assert ratios["pipeline_throughput_vs_bare_backend"] == pytest.approx(
        pipe["photos_per_s"] / backend["photos_per_s"], abs=0.002)
    assert ratios["pipeline_postgres_s3_throughput_vs_bare_backend"] == pytest.approx(
        on_services["photos_per_s"] / backend["photos_per_s"], abs=0.002)
    if report["backend"] == "openvino-int8":
        # the default is timed against the plain OpenVINO export in the same run
        assert report["openvino_export_bare"]["ms_per_photo"] > 0
        assert "openvino_export_speedup_vs_pytorch_fp32" in ratios
    elif report["backend"] == "openvino":
        # an AMX CPU: the plain export is the default, timed against the shipped int8 model
        assert report["openvino_int8_bare"]["ms_per_photo"] > 0
        assert "openvino_int8_speedup_vs_pytorch_fp32" in ratios

    o = report["outline"]
    assert o["refined_ms_per_photo"] > 0 and o["traced_as_given_ms_per_photo"] > 0
    assert o["refinement_ms_per_photo"] == pytest.approx(o["refined_ms_per_photo"] - o["traced_as_given_ms_per_photo"], abs=0.011)
    assert ratios["mask_refinement_cost_vs_post_processing_cpu"] == pytest.approx(
        o["refinement_ms_per_photo"] / pipe["post_cpu_ms_per_photo"], abs=0.002)

    doc = "\n".join(pipeline_lines(report))
    assert f"{backend['ms_per_photo']} | {backend['photos_per_s']}" in doc
    assert str(ratios["backend_speedup_vs_pytorch_fp32"]) in doc
    assert "1. bare PyTorch fp32 (baseline)" in proc.stdout
    assert f"| 3s. the same on PostgreSQL and S3 over HTTP (moto's server, on the same cores) | {on_services['ms_per_photo']} |" in doc
    enc = report["cutout_encoders"]
    assert enc["cutouts"] > 0 and enc["webp q80 method 0 (the worker's)"]["kib_per_cutout"] > 0
    assert "| webp q80 method 0 (the worker's) |" in doc
    cap = report["cutout_cap"]
    assert cap["max_side"] == 1024 and max(cap["photo_size"]) == 2048
    assert 0 < cap["capped"]["kib_per_photo"] < cap["full_size"]["kib_per_photo"]
    # the encoding floor follows from the encoder table and the pipeline's own figures, and is a
    # floor: the worker's encoder alone, on an idle thread, costs less than all of post-processing
    floor = ratios["cutout_encoding_alone_share_of_photo_time"]
    worker_enc = enc["webp q80 method 0 (the worker's)"]["ms_per_cutout"]
    assert floor == pytest.approx(worker_enc * pipe["items"] / pipe["photos"] / pipe["cpu_ms_per_photo"], abs=0.001)
    assert 0 < floor < pipe["post_share"]
    assert "| cutout encoding alone share of photo time |" in doc

    # the record says where it comes from: the command as run, when, on what machine
    rec = report["recorded"]
    assert rec["command"].startswith("python -m bench.pipeline --photos") and "--no-workers" in rec["command"]
    assert rec["date"] and rec["machine"]["cores"] == os.cpu_count() and rec["machine"]["cpu"]

    # a run at another input size (make bench-640) renders as a section of its own
    other = dict(report, imgsz=640)
    section = "\n".join(other_size_lines(other))
    assert f"| 2. bare `YOLO.predict`, {report['backend']} (the worker's backend) | {backend['ms_per_photo']} |" in section


def test_the_layouts_record_and_the_lean_record_render_their_figures():
    from bench.records import kind_of
    from bench.report import lean_lines, layout_lines

    assert kind_of(Path("lean-layouts-2026-12-07-x.json")) == "lean-layouts"
    assert kind_of(Path("lean-2026-12-07-x.json")) == "lean"
    with_baseline = {"photos": 900, "baseline": {"ref": "main", "commit": "aaa1111"}, "recorded": {"commit": "bbb2222"},
                     "median": {"2x1": {"baseline": {"bare": 46.5, "workers": 31.0, "workers_vs_bare_same_layout": 0.667},
                                        "this_tree": {"bare": 86.8, "workers": 35.1, "workers_vs_bare_same_layout": 0.404}}}}
    rows = [line for line in layout_lines(with_baseline) if line.startswith("| 2x1")]
    assert rows == ["| 2x1 | baseline `aaa1111` | 46.5 | 31.0 | 0.667 |", "| 2x1 | change `bbb2222` | 86.8 | 35.1 | 0.404 |"]
    alone = {"photos": 400, "layouts": {"1x2": {"bare": {"photos_per_s": 45.3}, "workers": {"photos_per_s": 18.1},
                                                "workers_vs_bare_same_layout": 0.399}}}
    assert "| 1x2 | | 45.3 | 18.1 | 0.399 |" in layout_lines(alone)
    lean = {"photos": 100, "threads": 2, "median": {"lean": {"ready_s": 1.39, "segment_ms_per_photo": 31.3,
                                                             "post_ms_per_photo": 10.4, "rss_mib": 313, "peak_rss_mib": 318}},
            "sizes_mib": {"lean_env": 752}, "ratios": {"lean_env_vs_this_env_size": 0.103}}
    text = "\n".join(lean_lines(lean))
    assert "| lean | 1.39 | 31.3 | 10.4 | 313 | 318 |" in text and "752 MiB" in text and "0.103" in text


def test_layouts_against_a_baseline_take_each_trees_median_and_their_ratio():
    from bench.lean import summarize_layouts

    def run(bare, workers):
        return {"2x1": {"bare": {"photos_per_s": bare}, "workers": {"photos_per_s": workers}}}

    s = summarize_layouts({"baseline": [run(40, 30), run(50, 32), run(45, 20)],
                           "this_tree": [run(80, 36), run(90, 34), run(100, 35)]})
    assert s["median"]["2x1"]["baseline"] == {"bare": 45, "workers": 30, "workers_vs_bare_same_layout": 0.667}
    assert s["median"]["2x1"]["this_tree"] == {"bare": 90, "workers": 35, "workers_vs_bare_same_layout": 0.389}
    assert s["this_tree_vs_baseline"]["2x1"] == {"bare": 2.0, "workers": 1.167}
