"""The importer on a hand-made Fashionpedia-format fixture with known expected output."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from training.fashionpedia import import_dataset, join_pieces, rle_to_mask

# The real release's category ids for the names used here.
CATS = [{"id": 23, "name": "shoe", "supercategory": "legs and feet"},
        {"id": 6, "name": "pants", "supercategory": "lowerbody"},
        {"id": 24, "name": "bag, wallet", "supercategory": "others"},
        {"id": 22, "name": "sock", "supercategory": "legs and feet"},
        {"id": 31, "name": "sleeve", "supercategory": "garment parts"},
        {"id": 13, "name": "glasses", "supercategory": "head"}]


def rle_string(counts: list[int]) -> str:
    """pycocotools' compressed RLE encoding (the inverse of what the importer decodes)."""
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def mask_to_counts(mask: np.ndarray) -> list[int]:
    flat = mask.T.reshape(-1)  # column-major, as COCO
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return counts


def write_fixture(tmp_path):
    imgs = tmp_path / "images"
    imgs.mkdir()
    for name, size in (("a.jpg", (100, 50)), ("b.jpg", (40, 40)), ("c.jpg", (30, 30))):
        Image.new("RGB", size, (120, 120, 120)).save(imgs / name)
    crowd = np.zeros((40, 40), np.uint8)
    crowd[10:20, 5:35] = 1
    anns = [
        {"id": 1, "image_id": 1, "category_id": 23, "iscrowd": 0, "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]]},
        {"id": 2, "image_id": 1, "category_id": 31, "iscrowd": 0, "segmentation": [[0, 0, 5, 0, 5, 5]]},
        {"id": 3, "image_id": 1, "category_id": 6, "iscrowd": 0,
         "segmentation": [[40, 10, 50, 10, 50, 40, 40, 40], [70, 10, 80, 10, 80, 40, 70, 40]]},
        {"id": 4, "image_id": 1, "category_id": 13, "iscrowd": 0, "segmentation": [[1, 1, 2, 2]]},  # degenerate
        {"id": 5, "image_id": 2, "category_id": 24, "iscrowd": 1,
         "segmentation": {"size": [40, 40], "counts": rle_string(mask_to_counts(crowd))}},
        {"id": 6, "image_id": 3, "category_id": 22, "iscrowd": 0, "segmentation": [[1, 1, 20, 1, 20, 20]]},
    ]
    images = [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
              {"id": 2, "file_name": "b.jpg", "width": 40, "height": 40},
              {"id": 3, "file_name": "c.jpg", "width": 30, "height": 30}]
    coco = {"images": images, "annotations": anns, "categories": CATS}
    (tmp_path / "train.json").write_text(json.dumps(coco))
    (tmp_path / "val.json").write_text(json.dumps({**coco, "images": images[:1], "annotations": anns[:4]}))
    return imgs, crowd


def parse(path):
    lines = [line.split() for line in path.read_text().splitlines()]
    return [(int(p[0]), np.array(p[1:], float).reshape(-1, 2)) for p in lines]


def raster(points_norm, w, h):
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).polygon([(x * w, y * h) for x, y in points_norm], fill=1)
    return np.asarray(img)


def test_import_known_output(tmp_path):
    imgs, crowd = write_fixture(tmp_path)
    out = tmp_path / "out"
    report = import_dataset(tmp_path / "train.json", tmp_path / "val.json", imgs, out)
    tr = report["train"]
    assert tr["images"] == 3 and tr["background_images"] == 1 and tr["instances"] == 3
    assert tr["dropped_categories"] == {"sleeve": 1, "sock": 1}
    assert tr["degenerate"] == 1 and tr["crowd_rle"] == 1 and tr["multi_piece"] == 1
    assert tr["per_class"] == {"shoe": 1, "pants": 1, "bag, wallet": 1}

    a = parse(out / "labels" / "train" / "a.txt")
    assert [c for c, _ in a] == [0, 3]  # shoe -> 0, pants -> 3, one line per instance
    np.testing.assert_allclose(a[0][1], [[0.1, 0.2], [0.3, 0.2], [0.3, 0.6], [0.1, 0.6]])
    # the two-piece pants: one ring that covers both pieces and nothing between them
    m = raster(a[1][1], 100, 50)
    expected = np.zeros((50, 100), np.uint8)
    expected[10:41, 40:51] = 1
    expected[10:41, 70:81] = 1
    assert (m & expected).sum() / (m | expected).sum() > 0.97
    assert m[25, 60] == 0

    b = parse(out / "labels" / "train" / "b.txt")
    assert [c for c, _ in b] == [5]  # the crowd RLE bag
    mb = raster(b[0][1], 40, 40)
    assert (mb & crowd).sum() / (mb | crowd).sum() > 0.85

    assert (out / "labels" / "train" / "c.txt").read_text() == ""  # kept as background
    yaml_text = (out / "data.yaml").read_text()
    assert "nc: 23" in yaml_text and '0: "shoe"' in yaml_text and '22: "leg warmer"' in yaml_text


def test_background_images_can_be_dropped(tmp_path):
    imgs, _ = write_fixture(tmp_path)
    report = import_dataset(tmp_path / "train.json", tmp_path / "val.json", imgs, tmp_path / "out", keep_background=False)
    assert report["train"]["dropped_images"] == 1 and report["train"]["images"] == 2
    assert not (tmp_path / "out" / "labels" / "train" / "c.txt").exists()


def test_rle_list_and_string_forms_decode_alike():
    mask = np.zeros((7, 5), np.uint8)
    mask[2:5, 1:4] = 1
    mask[6, 4] = 1
    counts = mask_to_counts(mask)
    assert (rle_to_mask({"size": [7, 5], "counts": counts}) == mask).all()
    assert (rle_to_mask({"size": [7, 5], "counts": rle_string(counts)}) == mask).all()


def test_join_three_pieces_covers_each_once():
    sq = lambda x: np.array([[x, 0], [x + 10, 0], [x + 10, 10], [x, 10]], float)  # noqa: E731
    ring = join_pieces([sq(0), sq(30), sq(60)])
    m = raster(ring / (100, 20), 100, 20)
    assert m[5, 5] == m[5, 35] == m[5, 65] == 1
    assert m[5, 20] == m[5, 50] == 0


def test_real_shared_data_when_present(tmp_path):
    """The importer on the project's shared CCP copy (skips in a user's clone, which lacks it)."""
    import pytest
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ccp-fashionpedia"
    if not shared.exists():
        pytest.skip("no shared dataset here (only developers' machines and CI have it)")
    r = import_dataset(shared / "instances_train.json", shared / "instances_val.json", shared / "images", tmp_path / "ccp")
    assert r["train"]["images"] == 804 and r["val"]["images"] == 100
    assert set(r["train"]["dropped_categories"]) == {"sock", "glove", "tie"}
    assert r["train"]["degenerate"] == 0


def _exif_photo(path, size, orientation):
    """A JPEG `size` in its stored pixels, with an EXIF orientation tag; a white block at its top-left."""
    a = np.zeros((size[1], size[0], 3), np.uint8)
    a[: size[1] // 4, : size[0] // 4] = 255
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, quality=95, exif=exif)


def test_orient_points_lands_where_pillow_shows_each_pixel():
    """For each of the eight EXIF orientations, a point on the stored pixels moves to where
    `ImageOps.exif_transpose` (and cv2, which training reads with) puts that pixel."""
    from PIL import ImageOps

    from training.fashionpedia import orient_points

    w, h = 40, 20
    for o in range(1, 9):
        a = np.zeros((h, w), np.uint8)
        a[3, 7] = 255  # the pixel whose centre is (7.5, 3.5)
        im = Image.fromarray(a)
        exif = im.getexif()
        exif[0x0112] = o
        shown = np.asarray(ImageOps.exif_transpose(_with_exif(im, exif)))
        y, x = np.argwhere(shown == 255)[0]
        np.testing.assert_allclose(orient_points(np.array([[7.5, 3.5]]), o, w, h), [[x + 0.5, y + 0.5]], err_msg=str(o))


def _with_exif(im, exif):
    import io

    buf = io.BytesIO()
    im.save(buf, "PNG", exif=exif)
    return Image.open(io.BytesIO(buf.getvalue()))


def test_labels_drawn_on_the_stored_pixels_of_a_rotated_photo_follow_it(tmp_path):
    """A photo stored 100x50 whose EXIF says "rotate 90° clockwise" is read for training as 50x100
    (cv2 applies the tag). Labels sized 100x50 were drawn on the stored pixels: they are moved with
    the photo. Labels sized 50x100 were drawn on the photo as shown and stay as they are."""
    from training.fashionpedia import import_split

    imgs = tmp_path / "images"
    imgs.mkdir()
    _exif_photo(imgs / "stored.jpg", (100, 50), 6)
    _exif_photo(imgs / "shown.jpg", (100, 50), 6)
    block_stored = [0, 0, 25, 0, 25, 12.5, 0, 12.5]  # the white block, on the stored pixels
    block_shown = [37.5, 0, 50, 0, 50, 25, 37.5, 25]  # the same block on the photo as shown (top-right)
    coco = {"categories": CATS,
            "images": [{"id": 1, "file_name": "stored.jpg", "width": 100, "height": 50},
                       {"id": 2, "file_name": "shown.jpg", "width": 50, "height": 100}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 23, "segmentation": [block_stored]},
                            {"id": 2, "image_id": 2, "category_id": 23, "segmentation": [block_shown]}]}
    (tmp_path / "train.json").write_text(json.dumps(coco))
    stats = import_split(tmp_path / "train.json", imgs, tmp_path / "out", "train")
    assert stats.reoriented == 1
    for name in ("stored", "shown"):
        ((cls, ring),) = parse(tmp_path / "out" / "labels" / "train" / f"{name}.txt")
        m = raster(ring, 50, 100).astype(bool)
        expected = np.zeros((100, 50), bool)
        expected[:25, 38:] = True
        assert (m & expected).sum() / (m | expected).sum() > 0.85, name


def test_labels_for_a_photo_of_another_shape_are_skipped_and_counted(tmp_path, caplog):
    """Labels whose width:height is neither the photo's as stored nor as shown belong to another
    photo (or another crop): training on them would put garments in the wrong places. That photo is
    left out, named in the log and counted; the rest of the split is imported."""
    from training.fashionpedia import import_split

    imgs = tmp_path / "images"
    imgs.mkdir()
    Image.new("RGB", (100, 50)).save(imgs / "a.jpg")
    Image.new("RGB", (100, 50)).save(imgs / "b.jpg")
    ann = {"category_id": 23, "segmentation": [[1, 1, 20, 1, 20, 20]]}
    coco = {"categories": CATS, "images": [{"id": 1, "file_name": "a.jpg", "width": 60, "height": 60},
                                           {"id": 2, "file_name": "b.jpg", "width": 100, "height": 50}],
            "annotations": [ann | {"id": 1, "image_id": 1}, ann | {"id": 2, "image_id": 2}]}
    (tmp_path / "train.json").write_text(json.dumps(coco))
    stats = import_split(tmp_path / "train.json", imgs, tmp_path / "out", "train")
    assert (stats.images, stats.mismatched_images, stats.instances, dict(stats.per_class)) == (1, 1, 1, {0: 1})
    assert "a.jpg" in caplog.text and "60x60" in caplog.text and "100x50" in caplog.text
    assert not (tmp_path / "out" / "labels" / "train" / "a.txt").exists()


def test_a_nearly_square_photo_s_labels_are_turned_by_their_exact_size(tmp_path):
    """A 1000x995 photo tagged "turn 90°", labels sized 1000x995: drawn on its stored pixels, though
    its shape as shown (995x1000) is within the 1 % allowed for labels of a scaled copy."""
    from training.fashionpedia import label_orientation

    _exif_photo(tmp_path / "a.jpg", (1000, 995), 6)
    assert label_orientation(tmp_path / "a.jpg", 1000, 995) == 6
    assert label_orientation(tmp_path / "a.jpg", 995, 1000) == 1
    assert label_orientation(tmp_path / "a.jpg", 500, 497) == 6  # a half-size copy's labels still work


def test_a_broken_exif_block_counts_as_no_tag(tmp_path):
    """The worker keeps a photo whose EXIF block cannot be read (its pixels taken as stored), and
    `export-training` passes it on: the importer must read it the same way, not stop on it."""
    from training.fashionpedia import label_orientation

    Image.new("RGB", (64, 48)).save(tmp_path / "a.jpg", dpi=(72, 72), exif=b"Exif\x00\x00JUNKJUNK")
    assert label_orientation(tmp_path / "a.jpg", 64, 48) == 1
