"""From the model's raw detections to items: one per garment, alternatives, refined edges (no model)."""
from __future__ import annotations

import numpy as np
import pytest

from core.config import Settings
from segmentation.masks import Letterbox, refined_mask, resample, trace
from segmentation.segmenter import Candidates, one_per_garment, outline
from training.quality import boundary_f, iou, rasterize_polygons


def _mask(box, hw=(64, 48)):
    m = np.zeros(hw, np.uint8)
    x1, y1, x2, y2 = box
    m[y1:y2, x1:x2] = 1
    return m


def _cands(rows, hw=(64, 48)):
    """rows: (box in photo pixels = model input pixels here, conf, class)."""
    return Candidates(np.array([r[0] for r in rows], float), np.array([r[1] for r in rows], float),
                      np.array([r[2] for r in rows]), np.stack([_mask(r[0], hw) for r in rows]), hw)


S = Settings(conf=0.25, alternatives_conf=0.05, merge_box_iou=0.7, merge_mask_overlap=0.7)


def test_one_garment_two_classes_becomes_one_item_with_the_other_class_as_alternative():
    c = _cands([((5, 5, 30, 40), 0.6, 13), ((6, 5, 30, 41), 0.4, 1), ((5, 6, 29, 40), 0.1, 4)])
    assert one_per_garment(c, S) == [(0, [(1, 0.4), (4, 0.1)])]


def test_a_mask_inside_another_is_merged_but_two_touching_shoes_are_not():
    inside = _cands([((0, 0, 40, 60), 0.8, 3), ((5, 5, 30, 35), 0.5, 10)])  # "tights" inside "pants"
    assert one_per_garment(inside, S) == [(0, [(10, 0.5)])]
    shoes = _cands([((0, 40, 20, 60), 0.8, 0), ((12, 40, 34, 60), 0.7, 0)])  # overlapping boxes, IoU 0.27
    assert [k for k, _ in one_per_garment(shoes, S)] == [0, 1]


def test_one_shoe_found_twice_is_one_item():
    """A shoe detected twice (a box around the shoe and its sock, or around both feet) lies inside the
    more confident one: the same garment. On the val photos 27 such second shoe items were shown."""
    twice = _cands([((0, 30, 30, 60), 0.7, 0), ((4, 36, 26, 58), 0.3, 0)])  # box IoU 0.54, all inside
    assert [k for k, _ in one_per_garment(twice, S)] == [0]


def test_low_confidence_detections_only_offer_alternatives():
    c = _cands([((5, 5, 30, 40), 0.9, 2), ((5, 5, 30, 40), 0.2, 7), ((35, 45, 45, 60), 0.2, 5)])
    assert one_per_garment(c, S) == [(0, [(7, 0.2)])]


def test_a_photo_with_nothing_at_its_thresholds_keeps_its_most_confident_detection():
    """One garment photographed alone: the model is less sure of it than of garments on a person. The
    photo keeps its best detection (with what lies on it as alternatives) rather than no item."""
    alone = _cands([((5, 5, 30, 40), 0.15, 2), ((6, 5, 30, 41), 0.12, 7), ((35, 45, 45, 60), 0.2, 5)])
    keep = Settings(conf=0.25, alternatives_conf=0.05, keep_one_conf=0.1)
    assert one_per_garment(alone, keep) == [(2, [])]  # the bag, not the less confident top
    assert one_per_garment(alone, Settings(conf=0.25, alternatives_conf=0.05, keep_one_conf=0.0)) == []
    assert one_per_garment(alone, Settings(conf=0.25, alternatives_conf=0.05, keep_one_conf=0.3)) == []  # below the floor
    top = _cands([((5, 5, 30, 40), 0.18, 2), ((6, 5, 30, 41), 0.12, 7)])
    assert one_per_garment(top, keep) == [(0, [(7, 0.12)])]
    # a photo with an item at its thresholds keeps only what passes them
    c = _cands([((5, 5, 30, 40), 0.9, 2), ((35, 45, 45, 60), 0.2, 5)])
    assert one_per_garment(c, keep) == [(0, [])]


def test_letterbox_resample_maps_the_mask_back_onto_the_photo():
    # a 100 x 50 photo letterboxed into 32 x 64 (gain 0.64, 4 rows of padding top and bottom)
    box = Letterbox.of((40, 64), (50, 100))
    assert (box.gain_x, box.gain_y) == (pytest.approx(0.64), pytest.approx(0.64)) and (box.pad_x, box.pad_y) == (0, 4)
    m = np.zeros((40, 64), np.float32)
    m[4 + 8 : 4 + 24, 16:48] = 1  # photo rows 12.5..37.5, columns 25..75
    soft = resample(m, box, 0, 0, 100, 50)
    assert soft[25, 50] == 1 and soft[2, 50] == 0 and soft[25, 5] == 0
    assert iou(soft > 0.5, np.pad(np.ones((25, 50), bool), ((12, 13), (25, 25)))) > 0.9


@pytest.mark.parametrize("photo_hw", [(1379, 2048), (2048, 1379), (1365, 2048), (48, 2048), (777, 1234)])
def test_masks_map_back_onto_the_photo_as_ultralytics_maps_boxes(photo_hw):
    """Ultralytics resizes the photo to whole pixels (each side rounded) before padding it, and maps
    its boxes back with that (ops.scale_boxes): the masks must be mapped back the same way. With one
    exact gain, about one photo in eight (2048 x 1379 at 384: 258.56 rows, 259 drawn) had its masks a
    model pixel (5 photo pixels) off its box."""
    from ultralytics.utils.ops import scale_boxes

    inp = (384, 384)
    box = Letterbox.of(inp, photo_hw)
    h, w = photo_hw
    # points inside the photo's part of the input, so that scale_boxes does not clip them
    xs = box.pad_x + np.array([0.1, 0.9]) * w * box.gain_x
    ys = box.pad_y + np.array([0.2, 0.7]) * h * box.gain_y
    in_input = np.array([[xs[0], ys[0], xs[1], ys[1]]], np.float64)
    expected = scale_boxes(inp, in_input.copy(), photo_hw)
    ours = [(xs[0] - box.pad_x) / box.gain_x, (ys[0] - box.pad_y) / box.gain_y,
            (xs[1] - box.pad_x) / box.gain_x, (ys[1] - box.pad_y) / box.gain_y]
    assert np.allclose(ours, expected[0], atol=1e-6)


def test_refinement_snaps_a_blocky_mask_to_the_photo_edge():
    # a bright disc on a dark photo; the model's mask is the disc at a quarter of the resolution
    h = w = 200
    yy, xx = np.mgrid[:h, :w]
    disc = (xx - 100) ** 2 + (yy - 100) ** 2 <= 60 ** 2
    grey = np.where(disc, 0.8, 0.2).astype(np.float32)
    coarse = disc[2::4, 2::4].astype(np.float32)  # 50 x 50: blocky at photo scale
    box = Letterbox.of(coarse.shape, (h, w))
    plain, px, py = refined_mask(grey, coarse, box, (40, 40, 160, 160), radius=0, eps=1e-3)
    sharp, sx, sy = refined_mask(grey, coarse, box, (40, 40, 160, 160), radius=8, eps=1e-3)
    full = lambda m, x, y: np.pad(m, ((y, h - y - m.shape[0]), (x, w - x - m.shape[1])))  # noqa: E731
    assert boundary_f(full(sharp, sx, sy), disc, 1) > boundary_f(full(plain, px, py), disc, 1)
    # the polygons traced from the refined mask draw it back (what the API returns is what the cut-out shows)
    polys = trace(sharp, sx, sy, min_area=6)
    assert iou(rasterize_polygons(polys, w, h), full(sharp, sx, sy)) > 0.97


def test_outline_gives_detections_with_polygons_and_alternatives():
    photo = np.zeros((64, 48, 3), np.uint8)
    photo[5:40, 5:30] = 200
    c = _cands([((5, 5, 30, 40), 0.6, 13), ((6, 5, 30, 41), 0.4, 1)])
    dets = outline(photo, c, Settings(mask_refine_radius=4))
    assert len(dets) == 1 and dets[0].class_id == 13 and dets[0].alternatives == [(1, 0.4)]
    drawn = rasterize_polygons(dets[0].polygons, 48, 64)
    assert iou(drawn, _mask((5, 5, 30, 40)).astype(bool)) > 0.9


@pytest.mark.parametrize("spill", [0, 1, 10])
def test_a_cut_out_keeps_every_pixel_of_a_mask_that_spills_past_its_box(spill):
    """A traced vertex (i, j) is pixel (i, j), so a mask reaching column X needs the crop to end after
    X. The model's masks often spill a pixel or more past the box (bilinear resampling, the guided
    filter); before, the crop ended at X and the cut-out lost the mask's last column and row."""
    from segmentation.segmenter import Detection
    from worker.cutouts import make_cutout, rasterize

    photo = np.full((100, 120, 3), 90, np.uint8)
    right, bottom = 60 + spill, 70 + spill  # the mask's last column and row
    square = np.float32([[20, 30], [right, 30], [right, bottom], [20, bottom]])
    det = Detection(2, 0.9, (20.0, 30.0, 60.7, 70.7), [square])
    cut = make_cutout(photo, det, fmt="png")
    whole = rasterize([square], 120, 100)
    assert cut.area_fraction * 120 * 100 == pytest.approx(np.count_nonzero(whole))
    x1, y1, x2, y2 = cut.bbox
    assert x2 > right and y2 > bottom  # the box holds the polygon's last pixel
    alpha = cut.rgba[..., 3]
    assert alpha[:, right - x1].any() and alpha[bottom - y1, :].any()


def test_a_class_threshold_keeps_a_shoe_and_drops_a_hat_at_the_same_confidence():
    c = _cands([((5, 5, 20, 20), 0.3, 0), ((25, 30, 40, 45), 0.3, 15)])
    assert [k for k, _ in one_per_garment(c, S)] == [0, 1]  # one threshold (0.25) for all
    assert [k for k, _ in one_per_garment(c, S, {0: 0.2, 15: 0.4})] == [0]
    # a class the card names no threshold for keeps the settings' one
    assert [k for k, _ in one_per_garment(c, S, {0: 0.5})] == [1]


def test_a_thin_garment_is_refined_at_a_radius_of_its_size():
    """A 12-pixel-high belt on a striped coat: refined at the full radius, its edge follows the
    stripes into spikes; at a radius scaled to its height it stays a belt (the setting that does
    this is off by default: on real photos it lowered the thin classes' boundary F)."""
    from segmentation.masks import Letterbox
    from segmentation.segmenter import refine_radius

    h, w = 200, 200
    grey = np.full((h, w), 0.3, np.float32)
    grey[:, ::8] = 0.9  # vertical stripes: the coat's pattern
    grey[:, 1::8] = 0.9
    belt = np.zeros((h, w), np.float32)
    belt[94:106, 20:180] = 1
    grey[94:106, 20:180] = 0.05  # a dark belt across it
    box, bbox = Letterbox.of((h, w), (h, w)), (20, 94, 180, 106)
    assert refine_radius(bbox, 16, 0.1) == 2 and refine_radius((0, 0, 300, 400), 16, 0.1) == 16
    assert refine_radius(bbox, 0, 0.1) == 0 and refine_radius(bbox, 16) == 16  # the default: one radius
    truth = belt > 0.5

    def f(radius):
        m, x1, y1 = refined_mask(grey, belt, box, bbox, radius, 1e-3)
        full = np.zeros((h, w), bool)
        full[y1:y1 + m.shape[0], x1:x1 + m.shape[1]] = m
        return boundary_f(full, truth)

    assert f(refine_radius(bbox, 16, 0.1)) > f(16) + 0.1
