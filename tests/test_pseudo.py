"""Weak supervision: the teacher's fusion, per-class thresholds, the labelled data's conventions,
synthesized single-garment photos, and `wardrobe pseudo-label` end to end on the mini data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.pseudo import as_labelled, tag_classes
from training.teacher import Garment, choose_thresholds, fuse, match
from training.yolo_labels import read_yolo_masks

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "fixtures" / "ccp-mini"


def box(x1, y1, x2, y2, hw=(60, 80)):
    m = np.zeros(hw, bool)
    m[y1:y2, x1:x2] = True
    return m


def test_views_fuse_by_class_and_overlap_and_score_by_how_many_saw_them():
    a, a2 = box(10, 10, 40, 40), box(11, 10, 41, 40)  # one garment, seen twice
    views = [[(2, 0.8, a), (15, 0.4, box(50, 0, 60, 10))], [(2, 0.6, a2)], [(7, 0.5, a)], []]
    out = fuse(views, n_views=4)
    assert [(g.class_id, round(g.score, 3)) for g in out] == [(2, 0.35), (7, 0.125), (15, 0.1)]
    # the fused mask is what at least half of the detections cover: with two, either one's pixels
    assert (out[0].mask == np.logical_or(a, a2)).all()
    three = fuse([[(2, 0.9, a)], [(2, 0.9, a2)], [(2, 0.9, box(12, 10, 42, 40))]], n_views=3)
    assert len(three) == 1 and not three[0].mask[20, 10] and three[0].mask[20, 11]  # column 10: one of three


def test_a_match_needs_the_class_and_half_the_mask_and_shoes_count_by_the_labelled_region():
    truth = [(2, box(10, 10, 40, 40)), (0, box(0, 50, 30, 60))]  # a top, and two touching shoes as one region
    garments = [Garment(2, 0.9, box(12, 10, 40, 40)), Garment(2, 0.8, box(10, 10, 40, 40)),
                Garment(7, 0.7, box(10, 10, 40, 40)), Garment(0, 0.6, box(0, 50, 14, 60)),
                Garment(0, 0.5, box(15, 50, 30, 60)), Garment(0, 0.4, box(40, 0, 50, 10))]
    # the second top is a duplicate (the label is claimed), the shirt the wrong class; each shoe lies
    # on the labelled region (right), the third shoe on nothing
    assert match(garments, truth) == [True, False, False, True, True, False]


def test_thresholds_are_the_lowest_score_that_keeps_precision_and_rare_classes_share_one():
    scored = [(0, s, ok) for s, ok in [(0.9, True), (0.8, True), (0.7, False), (0.6, True), (0.5, True),
                                        (0.4, False), (0.3, False)]]
    scored += [(5, 0.5, True), (5, 0.2, False)]  # too few for a class of its own
    t = choose_thresholds(scored, precision=0.75, min_support=5)
    # class 0: precision at 0.5 is 4/5 = 0.8; at 0.4 it is 4/6
    assert t["per_class"][0]["threshold"] == 0.5 and t["per_class"][0]["val_precision"] == 0.8
    assert t["per_class"][5]["from"] == "pooled" and t["per_class"][5]["threshold"] == t["pooled"]
    never = choose_thresholds([(3, 0.9, False), (3, 0.5, False)] * 3, precision=0.75)
    assert never["per_class"][3]["threshold"] is None  # never precise enough: no pseudo-labels of it


def test_pseudo_labels_follow_the_labelled_conventions():
    top_a, top_b = box(10, 5, 30, 20), box(35, 5, 50, 20)
    left, right, far = box(5, 50, 15, 58), box(15, 50, 25, 58), box(60, 50, 75, 58)
    out = as_labelled([Garment(2, 0.9, top_a), Garment(2, 0.5, top_b), Garment(0, 0.8, left),
                       Garment(0, 0.7, right), Garment(0, 0.6, far)])
    # one top in two pieces; two touching shoes become one region, the far one its own
    tops = [m for c, m in out if c == 2]
    shoes = sorted((m.sum() for c, m in out if c == 0))
    assert len(tops) == 1 and tops[0].sum() == top_a.sum() + top_b.sum()
    assert shoes == [far.sum(), left.sum() + right.sum()]


def test_tags_outside_the_catalogue_are_dropped_and_the_photo_keeps_the_rest():
    assert tag_classes(["shoe", "sock", "bag, wallet", "tie"]) == ({0, 5}, ["sock", "tie"])


def test_synthesized_photos_hold_only_their_splits_garments_with_labels_that_draw_them(tmp_path):
    from training.fashionpedia import import_dataset
    from training.synth import synthesize_split

    data = tmp_path / "yolo"
    import_dataset(MINI / "instances_train.json", MINI / "instances_val.json", MINI / "images", data)
    report = synthesize_split(data, "val", tmp_path / "img", tmp_path / "lbl", 8, seed=3)
    again = synthesize_split(data, "val", tmp_path / "img2", tmp_path / "lbl2", 8, seed=3)
    assert report == again and report["photos"] == 8  # reproducible from the seed
    val_classes = {int(line.split()[0]) for f in (data / "labels" / "val").iterdir() for line in f.read_text().splitlines()}
    from PIL import Image

    for img in sorted((tmp_path / "img").iterdir()):
        w, h = Image.open(img).size
        labels = read_yolo_masks(tmp_path / "lbl" / (img.stem + ".txt"), w, h)
        assert labels and {c for c, _ in labels} <= val_classes
        assert all(m.sum() >= 64 for _, m in labels)


@pytest.mark.e2e
def test_pseudo_label_command_on_the_mini_data(tmp_path):
    """The shipped weights label two tagged photos; the report says what was kept and why."""
    from training.fashionpedia import import_dataset

    data = tmp_path / "yolo"
    import_dataset(MINI / "instances_train.json", MINI / "instances_val.json", MINI / "images", data)
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    names = sorted(p.name for p in (MINI / "images").iterdir())[:3]
    tags = {}
    for i, n in enumerate(names):
        (unlabelled / n).write_bytes((MINI / "images" / n).read_bytes())
        tags[n] = ["sock", "glove"] if i == 0 else ["shoe", "pants", "top, t-shirt, sweatshirt", "dress", "sock"]
    (unlabelled / "tags.json").write_text(json.dumps(tags))
    out = tmp_path / "student"
    proc = subprocess.run([sys.executable, "-m", "cli.main", "pseudo-label", "--labelled", str(data), "--unlabelled",
                           str(unlabelled), "--out", str(out), "--synth-train", "3", "--synth-val", "2",
                           "--threads", "2", "--sizes", "320", "--limit", "3"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((out / "pseudo_report.json").read_text())
    assert r["pseudo"]["photos"] == 3 and r["pseudo"]["photos_dropped"].get("no tag in the 23 classes") == 1
    assert r["pseudo"]["tags_outside_the_23"] == {"sock": 3, "glove": 1}
    kept = sorted((out / "labels" / "train").glob("pseudo-*.txt"))
    assert len(kept) == r["pseudo"]["photos_kept"]
    for f in kept:  # only tagged classes
        assert {int(line.split()[0]) for line in f.read_text().splitlines()} <= {0, 1, 2, 3}
    assert r["synth_train"]["photos"] == 3 and len(list((out / "alone" / "images" / "val").iterdir())) == 2
    assert (out / "data.yaml").exists() and r["labelled"]["train"] == len(list((data / "images" / "train").iterdir()))
    assert set(r["thresholds"]["per_class"]) <= set(json.loads((ROOT / "models" / "wardrobe-yolov8s-seg.json").read_text())["classes"])


def test_tags_correct_a_body_garments_class_when_one_tagged_class_of_its_kind_is_unfound():
    from training.pseudo import by_tags

    shirt, jacket = Garment(7, 0.6, box(10, 10, 30, 30)), Garment(4, 0.5, box(5, 5, 40, 40))
    hat, skirt = Garment(15, 0.5, box(0, 0, 5, 5)), Garment(8, 0.7, box(10, 40, 30, 55))
    # tagged: top (2), skirt (8), shoe (0). The shirt becomes the top; the jacket stays out (the top
    # is taken); the hat is not a body garment; the skirt is tagged as it is
    kept, relabels = by_tags([skirt, shirt, jacket, hat], {2, 8, 0})
    assert [(g.class_id, g.score) for g in kept] == [(8, 0.7), (2, 0.6)] and relabels == [(7, 2)]
    # two unfound tagged upper-body classes: which one is unknown, so no relabel
    kept, relabels = by_tags([shirt], {2, 16})
    assert kept == [] and relabels == []


def test_a_threshold_keeps_every_garment_of_its_score():
    """Garments of one score are kept or dropped together: the precision is judged over all of them,
    not over those that happen to sort first."""
    scored = [(0, 0.9, True)] * 3 + [(0, 0.5, True), (0, 0.5, False), (0, 0.5, False)]
    t = choose_thresholds(scored, precision=0.75, min_support=5)["per_class"][0]
    assert t["threshold"] == 0.9 and t["val_precision"] >= 0.75, t
