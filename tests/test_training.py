"""training/: a one-epoch smoke run, evaluation of the shipped weights, prediction drawing."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from PIL import Image

from core.config import DEFAULT_MODEL
from training.fashionpedia import import_dataset

MINI = Path(__file__).resolve().parent / "fixtures" / "ccp-mini"


@pytest.fixture(scope="module")
def mini_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ccp-mini-yolo")
    report = import_dataset(MINI / "instances_train.json", MINI / "instances_val.json", MINI / "images", out)
    assert report["train"]["images"] == 4 and report["val"]["images"] == 2
    return out / "data.yaml"


def test_one_epoch_cpu_smoke_run(mini_dataset, tmp_path):
    from training.train import train

    run = train(mini_dataset, "smoke", project=tmp_path, name="smoke", device="cpu", workers=0, threads=2, cache=False)
    assert (run / "weights" / "last.pt").exists()
    rows = list(csv.DictReader(open(run / "results.csv")))
    assert len(rows) == 1
    assert all(math.isfinite(float(rows[0][k])) for k in rows[0] if k.strip().startswith("train/"))


def test_shipped_weights_and_card():
    card = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    from training.ship import sha256

    assert card["sha256"] == sha256(DEFAULT_MODEL)
    assert card["precision"] == "fp16" and len(card["classes"]) == 23
    from core.taxonomy import NAMES

    assert card["classes"] == list(NAMES)
    for key in ("version", "data", "preset", "epochs", "imgsz", "hardware", "val_metrics"):
        assert card[key], key
    import torch

    ckpt = torch.load(DEFAULT_MODEL, map_location="cpu", weights_only=False)
    assert next(ckpt["model"].parameters()).dtype == torch.float16
    assert ckpt.get("optimizer") is None


def test_evaluate_shipped_weights_gives_numbers_in_range(mini_dataset):
    from training.evaluate import evaluate

    r = evaluate(DEFAULT_MODEL, mini_dataset, device="cpu", batch=2)
    for k in ("precision_m", "recall_m", "map50_m", "map50_95_m", "map50_b"):
        assert 0.0 <= r[k] <= 1.0, (k, r[k])
    assert r["map50_95_m"] <= r["map50_m"]
    for k in ("seg_loss", "cls_loss", "box_loss"):
        assert math.isfinite(r[k]) and r[k] > 0, (k, r[k])
    assert r["images"] == 2


def test_predict_draws_what_the_worker_would_find(tmp_path):
    """`wardrobe predict` runs the worker's segmenter at the card's served settings: the same items."""
    from core.config import Settings
    from segmentation.preview import predict_and_draw
    from segmentation.serving import load_segmenter

    photo = next((MINI / "images").glob("*.jpg"))
    out = tmp_path / "pred.png"
    dets = predict_and_draw(DEFAULT_MODEL, photo, out)
    with Image.open(out) as drawn, Image.open(photo) as src:
        assert drawn.size == src.size
        rgb = __import__("numpy").asarray(src.convert("RGB"))
    served = load_segmenter(Settings.from_env(model=str(DEFAULT_MODEL), segmenter="yolo")).segment([rgb])[0]
    assert [(d["class_id"], d["confidence"]) for d in dets] == [(d.class_id, round(d.confidence, 3)) for d in served]
    assert dets, "the shipped model finds something on a CCP photo"
    for d in dets:
        assert 0 <= d["class_id"] < 23 and d["confidence"] >= 0.05


def test_evaluate_reproduces_the_model_card_on_the_shared_val_split(tmp_path):
    """`wardrobe evaluate` on the shipped weights gives the card's numbers (needs ../shared)."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ccp-fashionpedia"
    if not shared.exists():
        pytest.skip("no shared dataset here (only developers' machines and CI have it)")
    from training.evaluate import evaluate

    report = import_dataset(shared / "instances_val.json", shared / "instances_val.json", shared / "images", tmp_path / "val")
    assert report["val"]["images"] == 100
    card = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())["val_metrics"]
    r = evaluate(DEFAULT_MODEL, tmp_path / "val" / "data.yaml", imgsz=card["imgsz"], device="cpu", with_losses=False)
    assert card["imgsz"] == r["imgsz"]
    for k in ("precision_m", "recall_m", "map50_m", "map50_95_m"):
        assert abs(r[k] - card[k]) <= 0.005, (k, r[k], card[k])
