"""The GPU kit and run (training/gpu_kit.py, training/gpu_run.py): what can be checked without a GPU,
without ../shared and without a built kit."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from training.gpu_kit import (
    build_dataset_archive,
    join_parts,
    join_run_output,
    sha256,
    size_report,
    split_file,
    tree_bytes,
    unpack_dataset,
)

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "fixtures" / "ccp-mini"


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 2500])
def test_split_and_join_round_trip(tmp_path, size):
    src = tmp_path / "w.pt"
    src.write_bytes(os.urandom(size))
    parts = split_file(src, tmp_path / "out", part_bytes=1000)
    assert [p.name for p in parts] == [f"w.pt.part-{i:02d}" for i in range(len(parts))]
    assert len(parts) == max(1, -(-size // 1000))
    assert all(p.stat().st_size <= 1000 for p in parts)
    joined = join_parts(list(reversed(parts)), tmp_path / "joined.pt", expect_sha256=sha256(src))
    assert joined.read_bytes() == src.read_bytes()


def test_join_refuses_a_wrong_checksum_and_a_missing_part(tmp_path):
    src = tmp_path / "w.pt"
    src.write_bytes(os.urandom(2500))
    out = tmp_path / "out"
    parts = split_file(src, out, part_bytes=1000)
    (out / "timings.json").write_text(json.dumps({"weights": {"file": "w.pt", "sha256": sha256(src),
                                                              "parts": [p.name for p in parts]}}))
    assert join_run_output(out).read_bytes() == src.read_bytes()
    with pytest.raises(ValueError):
        join_parts(parts, tmp_path / "bad.pt", expect_sha256="0" * 64)
    assert not (tmp_path / "bad.pt").exists()
    (out / "w.pt").unlink()
    parts[1].unlink()
    with pytest.raises(FileNotFoundError):
        join_run_output(out)


def test_dataset_archive_from_the_fixture(tmp_path):
    """The kit's data: imported by training/fashionpedia.py, photos shrunk to WebP, reproducible."""
    from PIL import Image

    from training.fashionpedia import import_dataset

    args = (MINI / "instances_train.json", MINI / "instances_val.json", MINI / "images")
    a = build_dataset_archive(*args, tmp_path / "a.tar.xz", max_side=96, quality=70)
    b = build_dataset_archive(*args, tmp_path / "b.tar.xz", max_side=96, quality=70)
    assert sha256(tmp_path / "a.tar.xz") == sha256(tmp_path / "b.tar.xz"), "two builds differ"
    assert a["photos"] == {"train": 4, "val": 2} and a["format"] == "webp"
    with tarfile.open(tmp_path / "a.tar.xz") as tar:
        names = set(tar.getnames())
        assert all(m.mtime == 0 for m in tar.getmembers())
    assert sum(n.startswith("images/train/") and n.endswith(".webp") for n in names) == 4
    assert sum(n.startswith("labels/val/") and n.endswith(".txt") for n in names) == 2

    data_yaml = unpack_dataset(tmp_path / "a.tar.xz", tmp_path / "data")
    text = data_yaml.read_text()
    assert f"path: {(tmp_path / 'data').resolve()}" in text and "nc: 23" in text
    ref = tmp_path / "ref"
    import_dataset(*args, ref)
    for split in ("train", "val"):
        for lbl in (ref / "labels" / split).glob("*.txt"):
            assert (tmp_path / "data" / "labels" / split / lbl.name).read_text() == lbl.read_text()
            photo = tmp_path / "data" / "images" / split / f"{lbl.stem}.webp"
            with Image.open(photo) as im:
                assert max(im.size) <= 96 and im.format == "WEBP"
    import cv2

    assert cv2.imread(str(photo)) is not None  # Ultralytics reads photos with OpenCV


def test_size_report_counts_what_a_device_call_carries(tmp_path):
    tree = tree_bytes()
    assert tree > 1_000_000  # the shipped weights alone
    (tmp_path / "kit").mkdir()
    (tmp_path / "kit" / "x.bin").write_bytes(b"x" * 1234)
    r = size_report(tmp_path / "kit")
    assert r["kit_bytes"] == 1234 and r["total_bytes"] == r["tree_bytes"] + 1234
    assert r["limit_bytes"] == 64 * 2**20


def test_results_csv_is_read_without_polars(tmp_path, monkeypatch):
    """The one polars use on the training path is replaced by pandas, with the same result."""
    import sys

    from ultralytics.engine.trainer import BaseTrainer

    from training.gpu_run import read_results_csv_without_polars

    csv = tmp_path / "results.csv"
    csv.write_text("epoch,time,train/box_loss,metrics/mAP50(M)\n1,10.5,1.25,0.3\n2,21,1.125,0.35\n")

    class T:
        pass

    t = T()
    t.csv = csv
    try:
        import polars  # noqa: F401

        want = BaseTrainer.read_results_csv(t)
    except ImportError:
        want = {"epoch": [1, 2], "time": [10.5, 21.0], "train/box_loss": [1.25, 1.125], "metrics/mAP50(M)": [0.3, 0.35]}
    monkeypatch.setattr(BaseTrainer, "read_results_csv", BaseTrainer.read_results_csv)
    monkeypatch.setitem(sys.modules, "polars", None)  # import polars now raises ImportError
    assert read_results_csv_without_polars() is True
    assert BaseTrainer.read_results_csv(t) == want
    t.csv = tmp_path / "missing.csv"
    assert BaseTrainer.read_results_csv(t) == {}


def test_predict_timing_on_the_cpu(tmp_path):
    from core.config import DEFAULT_MODEL
    from training.gpu_run import time_predict

    photos = sorted((MINI / "images").glob("*.jpg"))[:4]
    r = time_predict(DEFAULT_MODEL, photos, imgsz=64, device="cpu", batches=(1, 2), seconds=0)
    assert r["photos"] == 4 and r["half"] is False
    for bs in (1, 2):
        assert r[f"batch_{bs}"]["photos"] == 4 and r[f"batch_{bs}"]["photos_per_s"] > 0


def test_gpu_train_script_stops_without_a_kit(tmp_path):
    env = {**os.environ, "GPU_KIT": str(tmp_path / "no-kit"), "OUT": str(tmp_path / "out")}
    r = subprocess.run(["bash", "scripts/gpu_train.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "make gpu-kit" in r.stderr
