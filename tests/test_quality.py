"""`make quality`'s scoring (training/quality.py) on figures worked out by hand, and the whole
command through a real API and worker (embedded default, fake segmenter) on labelled photos."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, free_port
from tests.fakes import FAKE_SEGMENTER
from training.quality import Found, Garment, boundary_f, iou, score_photo, summarise


def square(x: int, y: int, side: int, size=(60, 40)) -> np.ndarray:
    m = np.zeros((size[1], size[0]), bool)
    m[y : y + side, x : x + side] = True
    return m


def test_iou_and_boundary_f_by_hand():
    a, b = square(0, 0, 10), square(5, 0, 10)
    assert iou(a, b) == pytest.approx(50 / 150)
    assert iou(a, a) == 1.0 and iou(a, square(30, 20, 5)) == 0.0
    # a 1-px shift keeps every edge pixel within the 2-px tolerance; a square 5 px inside another, none
    assert boundary_f(square(10, 10, 20), square(11, 10, 20)) == 1.0
    assert boundary_f(square(5, 5, 20), square(10, 10, 10)) == 0.0


def test_matching_by_hand():
    garments = [Garment(2, square(0, 0, 10)), Garment(0, square(20, 0, 10)), Garment(3, square(40, 0, 10))]
    items = [
        Found(2, 0.9, square(0, 0, 10)),   # garment 0, right class, IoU 1
        Found(3, 0.8, square(20, 0, 10)),  # garment 1, wrong class, IoU 1
        Found(2, 0.7, square(1, 0, 10)),   # IoU 90/110 with garment 0, already taken: a second item
        Found(5, 0.6, square(0, 25, 10)),  # overlaps nothing: an extra item
        Found(3, 0.5, square(45, 0, 10)),  # IoU 50/150 with garment 2: below 0.5, extra; garment 2 not found
    ]
    s = score_photo(garments, items)
    assert [(g, i) for g, i, _, _ in s.matches] == [(0, 0), (1, 1)]
    assert (s.second, s.extra) == (1, 2)
    r = summarise([s, score_photo([], [])])  # a second photo with nothing on it, nothing found
    assert r["photos"] == 2 and r["garments"] == 3 and r["items"] == 5
    assert r["found"] == round(2 / 3, 4) and r["right_class"] == round(1 / 3, 4)
    assert r["extra_items_per_photo"] == 1.0 and r["second_items_per_photo"] == 0.5
    assert r["mask_iou"] == 1.0 and r["boundary_f"] == 1.0 and r["items_per_photo"] == 2.5
    # pants: the one labelled pair not found, and one pants item on nothing (extra) in 2 photos
    assert r["per_class"]["pants"] == {"class_id": 3, "garments": 1, "found": 0.0, "right_class": 0.0,
                                       "boundary_f": None, "extra_per_100_photos": 50.0}
    # a class with extra items and no garment still gets its row; a found class its edge F
    assert r["per_class"]["bag, wallet"]["garments"] == 0 and r["per_class"]["bag, wallet"]["extra_per_100_photos"] == 50.0
    assert r["per_class"]["top, t-shirt, sweatshirt"]["boundary_f"] == 1.0
    assert r["per_class"]["shoe"]["found"] == 1.0 and r["per_class"]["shoe"]["right_class"] == 0.0
    assert r["right_by_confidence"] == [{"from": 0.5, "to": 0.6, "items": 1, "right": 0.0},
                                        {"from": 0.6, "to": 0.7, "items": 1, "right": 0.0},
                                        {"from": 0.7, "to": 0.8, "items": 1, "right": 0.0},
                                        {"from": 0.8, "to": 1.0, "items": 2, "right": 0.5}]


def test_a_touching_pair_of_shoes_labelled_as_one_region_counts_once():
    """CCP labels two touching shoes as one region; the left and right shoe items are joined on it."""
    pair = square(0, 0, 20) | square(20, 0, 20)
    garments = [Garment(0, pair), Garment(0, square(0, 25, 10))]
    items = [Found(0, 0.9, square(0, 0, 20)), Found(0, 0.8, square(21, 0, 19)),  # each IoU < 0.5 with the pair
             Found(0, 0.7, square(0, 25, 10)), Found(3, 0.6, square(20, 0, 20))]  # another class is never joined
    s = score_photo(garments, items)
    assert s.joined == 1 and s.items == 4
    assert len(s.matches) == 2 and (s.second, s.extra) == (1, 0)  # the pants item sits on the found pair: second


def test_one_shoe_found_twice_is_not_joined_into_a_pair():
    """Joining is for a left and a right shoe on one labelled region; two overlapping items on one shoe
    are a duplicate the catalogue shows, so the second counts as a second item."""
    garments = [Garment(0, square(0, 0, 20))]
    twice = [Found(0, 0.9, square(0, 0, 20)), Found(0, 0.8, square(0, 0, 20) & (np.arange(60) < 12))]
    s = score_photo(garments, twice)
    assert s.joined == 0 and len(s.matches) == 1 and (s.second, s.extra) == (1, 0)


def _fake_shapes(w: int, h: int) -> tuple[list[float], list[float]]:
    """The fake segmenter's two garments on a w x h photo (segmentation/segmenter.py FakeSegmenter), as flat rings."""
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    ellipse = np.stack([w / 2 + w * 0.25 * np.cos(t), h * 0.4 + h * 0.2 * np.sin(t)], 1)
    shoe = np.array([[w * 0.3, h * 0.85], [w * 0.45, h * 0.85], [w * 0.45, h * 0.95], [w * 0.3, h * 0.95]])
    return ellipse.ravel().tolist(), shoe.ravel().tolist()


def test_make_quality_through_the_api_and_worker(tmp_path, monkeypatch):
    """Two labelled photos through the real API and a worker (fake segmenter: an ellipse called
    "top" and a rectangle called "shoe" on every photo). Photo 1 is labelled with the ellipse as a
    top, the rectangle as pants and a bag the fake never finds; photo 2 with nothing. By hand:
    3 garments, 2 found, 1 with the right class, 2 extra items on photo 2, none second, IoU ~1."""
    from bench.quality import main

    images = FIXTURES / "ccp-mini" / "images"
    names = ["0001.jpg", "0002.jpg"]
    from PIL import Image

    (w1, h1), (w2, h2) = (Image.open(images / n).size for n in names)
    ellipse, shoe = _fake_shapes(w1, h1)
    bag = [10, 10, 60, 10, 60, 60, 10, 60]
    labels = {
        "images": [{"id": 1, "file_name": names[0], "width": w1, "height": h1},
                   {"id": 2, "file_name": names[1], "width": w2, "height": h2}],
        "categories": [{"id": 1, "name": "top, t-shirt, sweatshirt"}, {"id": 6, "name": "pants"},
                       {"id": 24, "name": "bag, wallet"}, {"id": 31, "name": "sock"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [ellipse], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 6, "segmentation": [shoe], "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 24, "segmentation": [bag], "iscrowd": 0},
            {"id": 4, "image_id": 2, "category_id": 31, "segmentation": [bag], "iscrowd": 0},  # not one of the 23: dropped
        ],
    }
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    for k in list(os.environ):
        if k.startswith("WARDROBE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("WARDROBE_SEGMENTER", FAKE_SEGMENTER)
    out = tmp_path / "quality.json"
    assert main(["--images", str(images), "--labels", str(tmp_path / "labels.json"), "--port", str(free_port()),
                 "--data-dir", str(tmp_path / "data"), "--json", str(out), "--alone", "6"]) == 0
    r = json.loads(out.read_text())
    assert (r["photos"], r["garments"], r["items"]) == (2, 3, 4)
    assert r["found"] == round(2 / 3, 4) and r["right_class"] == round(1 / 3, 4)
    assert r["extra_items_per_photo"] == 1.0 and r["second_items_per_photo"] == 0.0
    assert r["mask_iou"] > 0.97 and r["boundary_f"] > 0.95
    assert r["per_class"]["bag, wallet"]["found"] == 0.0 and r["per_class"]["pants"]["right_class"] == 0.0
    assert r["seconds"] > 0 and r["model_version"] == "fake-1"
    # every item's class, confidence and outcome, for `wardrobe thresholds`
    assert sorted(tuple(x) for x in r["items_scored"]) == [(0, 0.6, "extra"), (0, 0.6, "wrong_class"),
                                                            (2, 0.9, "extra"), (2, 0.9, "right")]
    # the garments-alone line: photos synthesized from the labelled garments (the top and the
    # pants here) through the same API and worker; the fake's two items are on every photo
    alone = r["alone"]
    assert alone["photos"] == 6 and alone["no_item"] == 0.0 and 0.0 <= alone["top_right_kind"] <= 1.0
    assert alone["extra_items_per_photo"] >= 1.0


def test_rle_labels_count_as_garments_as_they_are_trained_on(tmp_path):
    """The importer trains on Fashionpedia's RLE (crowd) regions; the quality report must count them
    too, or an item found on one would be an 'extra' and the garment missing from the totals."""
    from training.quality import garments_at, load_labels

    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 20:50] = 1
    flat = mask.T.ravel()  # COCO runs go down columns
    counts, run, value = [], 0, 0
    for v in flat:
        if v != value:
            counts.append(run)
            run, value = 0, v
        run += 1
    counts.append(run)
    data = {"categories": [{"id": 1, "name": "pants"}, {"id": 2, "name": "sleeve"}],
            "images": [{"id": 7, "file_name": "a.jpg", "width": 60, "height": 40}],
            "annotations": [{"image_id": 7, "category_id": 1, "iscrowd": 1,
                             "segmentation": {"size": [40, 60], "counts": counts}},
                            {"image_id": 7, "category_id": 2, "segmentation": [[0, 0, 5, 0, 5, 5]]}]}
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(data))
    (photo,) = load_labels(path).values()
    assert [cid for cid, _ in photo.garments] == [3]  # pants; the sleeve is no catalogue class
    (g,) = garments_at(photo, 120, 80)  # the stored photo at twice the label's size
    assert iou(g.mask, np.kron(mask, np.ones((2, 2), np.uint8)).astype(bool)) > 0.9


def test_labels_drawn_on_the_stored_pixels_of_a_rotated_photo_are_scored_on_it_as_shown(tmp_path):
    """The worker turns a photo as its EXIF tag says, and its items are on the photo as shown. A
    label drawn on the stored pixels must be turned the same way, or a garment found in the right
    place scores as missed and its item as extra."""
    from PIL import Image

    from training.quality import garments_at, load_labels

    a = np.zeros((50, 100, 3), np.uint8)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # shown turned 90° clockwise: 50 wide, 100 high
    im.save(tmp_path / "a.jpg", exif=exif)
    data = {"categories": [{"id": 1, "name": "pants"}],
            "images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 50}],
            "annotations": [{"image_id": 7, "category_id": 1, "segmentation": [[0, 0, 25, 0, 25, 12.5, 0, 12.5]]}]}
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(data))
    (photo,) = load_labels(path, images_dir=tmp_path).values()
    (g,) = garments_at(photo, 50, 100)
    expected = np.zeros((100, 50), bool)
    expected[:25, 38:] = True  # the stored top-left corner is the top-right as shown
    assert iou(g.mask, expected) > 0.85


def test_garments_alone_top_item_kind_no_item_and_extra():
    from training.quality import summarise_alone

    # photo 1: a top alone, the most confident item calls it a shirt (same kind: upper body), plus
    # a less confident bag on nothing; photo 2: trousers called a dress (wrong kind); photo 3: nothing
    top, trousers = Garment(2, square(0, 0, 20)), Garment(3, square(0, 0, 20))
    p1 = [Found(7, 0.8, square(0, 0, 20)), Found(5, 0.3, square(30, 30, 5))]
    p2 = [Found(1, 0.6, square(0, 0, 18))]
    garments, items = [[top], [trousers], [top]], [p1, p2, []]
    scores = [score_photo(g, i) for g, i in zip(garments, items)]
    r = summarise_alone(scores, items, garments)
    assert r == {"photos": 3, "top_right_kind": round(1 / 3, 4), "no_item": round(1 / 3, 4),
                 "extra_items_per_photo": round(1 / 3, 3)}


def test_per_class_thresholds_find_most_within_the_unwanted_budget():
    from training.thresholds import choose

    # class 0: right down to 0.2, with unwanted items only below 0.3; class 1: unwanted at 0.5 and
    # right at 0.4 (lowering it to 0.4 buys one garment for one unwanted item); class 2 has too
    # few items for a threshold of its own and takes the pooled one
    items = [(0, c, "right") for c in (0.9, 0.7, 0.5, 0.35, 0.2)] + [(0, 0.25, "extra"), (0, 0.22, "extra")]
    items += [(1, 0.8, "right"), (1, 0.5, "extra"), (1, 0.4, "right")] + [(1, 0.3, "extra")] * 6
    items += [(2, 0.55, "right")]
    # with no budget for unwanted items: class 0 keeps all right ones above its first extra (0.35),
    # class 1 stops above its extra at 0.5 (at the ceiling of 0.6)
    none = choose(items, photos=10, budget=0.0, min_items=5)
    assert none["per_class"][0] == 0.35 and none["per_class"][1] == 0.6 and none["val_unwanted_per_photo"] == 0.0
    # a budget of 0.1 a photo (one unwanted item in 10 photos) buys the best trade: class 1 at 0.4
    # (+1 found, +1 unwanted) beats class 0 at 0.2 (+1 found, +2 unwanted)
    one = choose(items, photos=10, budget=0.1, min_items=5)
    assert one["per_class"][0] == 0.35 and one["per_class"][1] == 0.4 and one["val_unwanted_per_photo"] == 0.1
    assert one["per_class"][2] == one["pooled"]
    assert all(0.15 <= t <= 0.6 for t in one["per_class"].values())


def test_the_review_default_is_where_items_stop_being_mostly_right():
    from training.thresholds import review_threshold

    items = [(0, 0.85, "right")] * 9 + [(0, 0.85, "extra")]  # 0.8-0.9: 90 % right
    items += [(0, 0.55, "right")] * 7 + [(0, 0.55, "wrong_class")] * 3  # 0.5-0.6: 70 %
    items += [(0, 0.45, "right")] * 4 + [(0, 0.45, "extra")] * 6  # 0.4-0.5: 40 %
    items += [(0, 0.35, "right")] * 8 + [(0, 0.35, "extra")] * 2  # 0.3-0.4: 80 %, but under a worse band
    assert review_threshold(items, accuracy=0.6) == 0.5
    assert review_threshold(items, accuracy=0.3) == 0.3
    assert review_threshold([], accuracy=0.6) == 0.5  # nothing measured: the built-in default


def test_the_thresholds_written_keep_the_items_they_were_chosen_on():
    """make quality records confidences to 4 places; a threshold rounded to 3 could land above the
    item it was chosen at (0.2836 -> 0.284), so the served thresholds dropped a garment the val
    figures counted as found."""
    from training.thresholds import choose

    items = [(0, c, "right") for c in (0.9, 0.7, 0.5, 0.2836)] + [(0, 0.2, "extra")] * 3
    r = choose(items, photos=10, budget=0.0, min_items=5)
    t = r["per_class"][0]
    assert sum(1 for _k, c, o in items if c >= t and o == "right") == r["val_found_items"] == 4
    assert sum(1 for _k, c, o in items if c >= t and o == "extra") == 0


def test_an_item_on_a_band_edge_is_counted_in_one_band():
    """0.2 + 0.1 is 0.30000000000000004 in floating point: an item at 0.3 (make quality records
    four places) fell in both the 0.2 and the 0.3 band, and its mistakes lowered the band below."""
    from training.thresholds import review_threshold

    items = [(0, 0.35, "right")] * 7 + [(0, 0.3, "extra")] * 3  # 0.3-0.4: 70 % right
    items += [(0, 0.25, "right")] * 4  # 0.2-0.3: all right
    assert review_threshold(items, accuracy=0.6) == 0.2
    # and the top band holds a confidence of 1.0
    assert review_threshold([(0, 1.0, "extra")] * 3 + [(0, 0.95, "right")], accuracy=0.6) == 0.5


@pytest.mark.parametrize("text", ["not json", '{"items_scored": []}', '[1, 2]', '{"photos": 3, "items_scored": [[0, 0.5]]}'])
def test_wardrobe_thresholds_on_a_file_that_is_not_make_qualitys_says_so(tmp_path, text):
    import subprocess
    import sys

    from tests.conftest import ROOT

    bad = tmp_path / "quality.json"
    bad.write_text(text)
    r = subprocess.run([sys.executable, "-m", "cli.main", "thresholds", str(bad)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and str(bad) in r.stderr, r.stderr
