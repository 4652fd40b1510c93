"""The lean CPU path (segmentation.lean + yolo_decode: OpenVINO and NumPy, no torch) against the
Ultralytics path it replaces on the CPU worker, and its refusals of a model it cannot read."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import DEFAULT_MODEL, Settings
from segmentation import yolo_decode as yd
from segmentation.backends import int8_model_dir, openvino_available, resolve_backend
from segmentation.card import serve_imgsz
from tests.conftest import EXAMPLES, FIXTURES, ROOT

needs_openvino = pytest.mark.skipif(not openvino_available(), reason="OpenVINO is not installed")
IMGSZ = serve_imgsz(DEFAULT_MODEL)
INT8 = int8_model_dir(DEFAULT_MODEL, IMGSZ)
# val-like photos: the examples and the CCP fixture's, portrait 550 px wide at several heights
PHOTOS = [EXAMPLES / "1024.jpg", EXAMPLES / "1060.jpg", FIXTURES / "ccp-mini" / "images" / "0004.jpg",
          FIXTURES / "ccp-mini" / "images" / "0005.jpg"]


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _settings(**kw) -> Settings:
    return Settings.from_env(**{"model": str(DEFAULT_MODEL), "segmenter": "yolo", "device": "cpu", "threads": 1,
                                "worker_concurrency": 1, **kw})


@pytest.fixture(scope="module")
def both():
    if not openvino_available():
        pytest.skip("OpenVINO is not installed")
    from segmentation.lean import LeanSegmenter
    from segmentation.segmenter import YoloSegmenter
    from segmentation.serving import lean_plan

    s = _settings(backend="openvino-int8")
    return LeanSegmenter(s, *lean_plan(s)), YoloSegmenter(s)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _assert_same(ours, theirs):
    assert (ours is None) == (theirs is None)
    if ours is None:
        return
    assert ours.masks.shape == theirs.masks.shape and ours.masks.dtype == np.uint8
    assert ours.classes.tolist() == theirs.classes.tolist()
    assert np.abs(ours.confs - theirs.confs).max() <= 0.01
    assert np.abs(ours.boxes - theirs.boxes).max() <= 1.0  # photo pixels
    assert min(_mask_iou(a, b) for a, b in zip(ours.masks, theirs.masks)) >= 0.98
    assert ours.photo_hw == theirs.photo_hw


@needs_openvino
@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_lean_candidates_match_the_ultralytics_path(both, path):
    lean, ultra = both
    photo = _rgb(path)
    ours, theirs = lean.candidates([photo])[0], ultra.candidates([photo])[0]
    assert ours is not None and len(ours.classes) >= 3  # a dressed person: several garments
    _assert_same(ours, theirs)


@needs_openvino
def test_a_batch_of_photos_of_two_sizes_matches_too(both):
    """Photos of different shapes in one batch are letterboxed to the full square (Ultralytics
    pads to the minimum rectangle only when the batch's photos are all one size)."""
    lean, ultra = both
    photos = [_rgb(PHOTOS[0]), _rgb(PHOTOS[1])]
    assert photos[0].shape != photos[1].shape
    ours = lean.candidates(photos)
    theirs = ultra.model.predict([p[..., ::-1] for p in photos], conf=0.1, imgsz=IMGSZ, iou=0.7, max_det=100,
                                 batch=2, retina_masks=False, verbose=False)
    assert [c.masks.shape[1:] for c in ours] == [(IMGSZ, IMGSZ)] * 2
    for c, r in zip(ours, theirs):
        assert c.classes.tolist() == r.boxes.cls.numpy().astype(int).tolist()
        assert np.abs(c.confs - r.boxes.conf.numpy()).max() <= 0.01


@needs_openvino
def test_a_worker_process_with_fewer_threads_than_cores_leaves_its_threads_unpinned(both):
    """OpenVINO pins its threads to cores as if its process were alone: each of the worker's
    one-thread processes took the first core, and two ran the model no faster than one. Both paths
    compile unpinned where the process has fewer threads than cores, pinned where it has them all."""
    from core.cpu import usable_cores
    from segmentation.lean import LeanSegmenter
    from segmentation.serving import lean_plan

    cores = usable_cores()
    if cores < 2:
        pytest.skip("one core: a process of one thread has them all")
    lean, ultra = both  # one thread each

    def pinned(seg) -> bool:  # on AMX CPUs the int8 model is compiled per input shape: any of them
        return next(iter(seg._compiled.values())).get_property("ENABLE_CPU_PINNING")

    assert lean.threads == 1 and pinned(lean) is False
    assert ultra.model.predictor.model.backend.ov_compiled_model.get_property("ENABLE_CPU_PINNING") is False
    s = _settings(backend="openvino-int8", threads=cores)
    assert pinned(LeanSegmenter(s, *lean_plan(s))) is True


@pytest.mark.parametrize("allowed, procs, threads, want_threads, want_pinned", [
    ({0, 1}, 2, 0, 1, False),  # the default: a process a core, each unpinned
    ({0, 1}, 1, 0, 2, True),  # one process with every core keeps OpenVINO's pinning
    ({0, 1, 2, 3}, 2, 0, 2, False),
    ({2, 3}, 2, 0, 1, False),  # under taskset or a cpuset: the cores allowed, not the machine's
    ({0}, 1, 0, 1, True),
    ({0, 1, 2, 3}, 2, 3, 3, False),  # WARDROBE_THREADS wins
])
def test_threads_and_pinning_follow_the_cores_the_process_may_use(monkeypatch, allowed, procs, threads, want_threads,
                                                                  want_pinned):
    from segmentation.backends import openvino_cpu_config, process_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(allowed))
    n = process_threads(replace(_settings(), worker_concurrency=procs, threads=threads))
    assert n == want_threads and openvino_cpu_config(n)["ENABLE_CPU_PINNING"] is want_pinned


@needs_openvino
def test_lean_items_are_the_ultralytics_items(both):
    lean, ultra = both
    photo = _rgb(PHOTOS[2])
    ours, theirs = lean.segment([photo])[0], ultra.segment([photo])[0]
    assert [d.class_id for d in ours] == [d.class_id for d in theirs] and ours
    for a, b in zip(ours, theirs):
        assert abs(a.confidence - b.confidence) <= 0.01
        assert [c for c, _ in a.alternatives] == [c for c, _ in b.alternatives]
        assert len(a.polygons) == len(b.polygons)


def test_letterbox_is_ultralytics_letterbox():
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(0)
    for h, w in ((832, 550), (550, 832), (384, 384), (1000, 37), (64, 64), (777, 1234)):
        photo = rng.integers(0, 255, (h, w, 3), np.uint8)
        for auto in (True, False):
            expected = LetterBox((IMGSZ, IMGSZ), auto=auto, stride=32)(image=photo)
            assert np.array_equal(yd.letterbox(photo, (IMGSZ, IMGSZ), 32, auto), expected), (h, w, auto)
            assert yd.input_shape((h, w), (IMGSZ, IMGSZ), 32, auto) == expected.shape[:2]


@pytest.mark.parametrize("agnostic", [False, True])
def test_nms_keeps_what_ultralytics_keeps(agnostic):
    """Overlapping boxes of a few classes, many near the thresholds: the same rows, in the same order."""
    import torch
    from ultralytics.utils.nms import non_max_suppression

    rng = np.random.default_rng(1)
    nc, nm, n = 5, 32, 3000
    centres = rng.uniform(50, 330, (12, 2))
    xy = centres[rng.integers(0, 12, n)] + rng.normal(0, 6, (n, 2))
    wh = rng.uniform(30, 90, (n, 2))
    scores = rng.uniform(0, 0.5, (n, nc)) ** 2
    pred = np.concatenate([xy, wh, scores, rng.normal(0, 1, (n, nm))], 1).T.astype(np.float32)
    ours = yd.non_max_suppression(pred, nc, 0.1, 0.7, max_det=100, agnostic=agnostic)
    theirs = non_max_suppression(torch.from_numpy(pred[None].copy()), 0.1, 0.7, agnostic=agnostic, max_det=100, nc=nc)[0]
    assert len(ours) > 20
    assert np.array_equal(ours, theirs.numpy())
    # at most max_det, the most confident first
    few = yd.non_max_suppression(pred, nc, 0.1, 0.7, max_det=7, agnostic=agnostic)
    assert np.array_equal(few, ours[:7])


def test_masks_and_boxes_are_made_and_mapped_back_as_ultralytics_does():
    import torch
    from ultralytics.utils.ops import process_mask, scale_boxes

    rng = np.random.default_rng(2)
    protos = rng.normal(0, 1, (32, 96, 64)).astype(np.float32)
    coeffs = rng.normal(0, 0.5, (6, 32)).astype(np.float32)
    boxes = np.array([[10.3, 20.7, 200.2, 300.9], [0, 0, 256, 384], [100.5, 100.5, 101.5, 101.5],
                      [50, 60, 70, 80], [-5, -5, 30, 40], [250.1, 370.2, 256, 384]], np.float32)
    ours = yd.process_masks(protos, coeffs, boxes, (384, 256))
    theirs = process_mask(torch.from_numpy(protos), torch.from_numpy(coeffs), torch.from_numpy(boxes), (384, 256),
                          upsample=True).numpy()
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert all(_mask_iou(a, b) >= 0.999 for a, b in zip(ours, theirs))
    assert (ours[2].sum(), ours[3][:60].sum(), ours[3][:, 70:].sum()) == (theirs[2].sum(), 0, 0)
    for photo_hw in ((832, 550), (1379, 2048), (48, 2048)):
        for input_hw in ((384, 256), (384, 384)):
            expected = scale_boxes(input_hw, torch.from_numpy(boxes.copy()), photo_hw).numpy()
            assert np.allclose(yd.scale_boxes(input_hw, boxes, photo_hw), expected, atol=1e-3)


def test_unrefined_outlines_map_back_as_ultralytics_scale_coords():
    """`mask_polygons` (the outline when edge refinement is off) lost its torch: same points as before."""
    import cv2
    import torch
    from ultralytics.utils import ops

    from segmentation.masks import Letterbox, mask_polygons

    mask = np.zeros((384, 256), np.uint8)
    cv2.ellipse(mask, (120, 200), (80, 150), 15, 0, 360, 1, -1)
    mask[5:12, 240:256] = 1  # touches the edge: clipped to the photo
    photo_hw = (832, 550)
    ours = mask_polygons(mask, Letterbox.of(mask.shape, photo_hw), photo_hw)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    expected = [np.asarray(ops.scale_coords(mask.shape, torch.from_numpy(cv2.approxPolyDP(c, 0.7, True)
                                                                           .reshape(-1, 2).astype(np.float32)), photo_hw))
                for c in contours if cv2.contourArea(c) >= 6.0]
    assert len(ours) == len(expected) == 2
    for a, b in zip(ours, expected):
        assert np.allclose(a, b, atol=1e-3)


def test_an_amx_cpu_without_ultralytics_serves_the_int8_model():
    int8 = Path("int8")
    assert resolve_backend("auto", "cpu", int8, amx=True, exportable=True) == "openvino"
    assert resolve_backend("auto", "cpu", int8, amx=True, exportable=False) == "openvino-int8"
    assert resolve_backend("auto", "cpu", int8, amx=False, exportable=False) == "openvino-int8"


@needs_openvino
@pytest.mark.parametrize("install", ["lean", "full"])
def test_the_cpu_worker_path_never_imports_torch(tmp_path, install):
    """The CPU worker as it runs: tasks imported, the segmenter picked by the worker's own rule,
    a photo segmented and post-processed. Neither torch nor Ultralytics is imported on the way: an
    import of either is recorded (and, as a lean install, the `worker` extra, refused), even one a
    caller would catch. The full install serves the int8 model too, except on a CPU with AMX, where
    the rule prefers the OpenVINO export of the weights it can make there
    (segmentation.backends.resolve_backend)."""
    from segmentation.backends import has_amx

    if install == "full" and has_amx():
        pytest.skip("with AMX the full install serves the OpenVINO export, through Ultralytics")
    code = (
        "import builtins, importlib, os, sys\n"
        "WATCHED, tried = ('torch', 'ultralytics', 'torchvision'), []\n"
        "def watching(real):\n"
        "    def call(name, *a, **k):\n"
        "        if name.split('.')[0] in WATCHED: tried.append(name)\n"
        "        return real(name, *a, **k)\n"
        "    return call\n"
        "builtins.__import__ = watching(builtins.__import__)\n"
        "importlib.import_module = watching(importlib.import_module)\n"
        f"if {install == 'lean'!r}:\n"
        "    for m in WATCHED: sys.modules[m] = None  # not installed: an import fails, find_spec says None\n"
        "import worker.tasks, worker.segment\n"
        "from services.bootup import runtime\n"
        "from segmentation.serving import get_segmenter\n"
        "from worker.colors import dhash, dominant_colors, small_rgba\n"
        "from worker.cutouts import make_cutout\n"
        "import numpy as np; from PIL import Image\n"
        "seg = get_segmenter(runtime().settings)\n"
        "photo = np.asarray(Image.open(sys.argv[1]).convert('RGB'))\n"
        "dets = seg.segment([photo])[0]\n"
        "cut = make_cutout(photo, dets[0])\n"
        "dominant_colors(small_rgba(cut.rgba)); dhash(small_rgba(cut.rgba))\n"
        "print(type(seg).__name__, len(dets), sorted(set(tried)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    env.update(WARDROBE_DATA_DIR=str(tmp_path), WARDROBE_DEVICE="cpu")
    r = subprocess.run([sys.executable, "-c", code, str(PHOTOS[0])], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    name, n, tried = r.stdout.split(maxsplit=2)
    assert name == "LeanSegmenter" and int(n) > 0
    assert tried.strip() == "[]", tried


# ---- a model the decoder cannot read: one line naming the file, at start


def _model_copy(tmp_path: Path) -> tuple[Path, Path]:
    """The shipped weights' card and int8 folder under tmp_path (the .pt itself is not needed: the card
    names its hash). Returns (weights path, int8 folder)."""
    weights = tmp_path / DEFAULT_MODEL.name
    shutil.copyfile(DEFAULT_MODEL.with_suffix(".json"), weights.with_suffix(".json"))
    folder = int8_model_dir(weights, IMGSZ)
    shutil.copytree(INT8, folder)
    return weights, folder


def test_missing_files_are_named(tmp_path):
    from segmentation.lean import ModelError, read_ir

    with pytest.raises(ModelError, match=f"^{tmp_path / 'nowhere'}: no such model folder$"):
        read_ir(tmp_path / "nowhere")
    _, folder = _model_copy(tmp_path)
    assert read_ir(folder).classes == 23 and read_ir(folder).masks == 32
    bin_ = next(folder.glob("*.bin"))
    bin_.rename(bin_.with_suffix(".gone"))
    with pytest.raises(ModelError, match=f"^{bin_}: missing"):
        read_ir(folder)
    bin_.with_suffix(".gone").rename(bin_)
    (folder / "metadata.yaml").unlink()
    with pytest.raises(ModelError, match=f"^{folder / 'metadata.yaml'}: missing"):
        read_ir(folder)


def test_another_output_shape_is_refused(tmp_path):
    from segmentation.lean import ModelError, read_ir

    _, folder = _model_copy(tmp_path)
    xml = next(folder.glob("*.xml"))
    text = xml.read_text()
    assert text.count("<dim>59</dim>") >= 1
    xml.write_text(text.replace("<dim>59</dim>", "<dim>60</dim>"))  # a detection output of another width
    with pytest.raises(ModelError, match=f"^{xml}: detection output has 60 channels, expected 4 \\+ 23 classes"):
        read_ir(folder)
    xml.write_text(text.replace('type="Result"', 'type="Relu"', 1))  # one output, not two
    with pytest.raises(ModelError, match=f"^{xml}: output shapes"):
        read_ir(folder)


def _odd_model(folder: Path) -> Path:
    """A network whose declared outputs look right but whose detection output has too few anchors
    (stride 8's only), saved with the shipped model's metadata.yaml into `folder`; returns its .xml."""
    import openvino as ov
    import openvino.opset13 as ops

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(INT8 / "metadata.yaml", folder / "metadata.yaml")
    x = ops.parameter([-1, 3, -1, -1], np.float32, name="images")

    def head(channels: int, stride: int, rank3: bool):
        pooled = ops.avg_pool(x, [stride, stride], [0, 0], [0, 0], [stride, stride], exclude_pad=True)
        y = ops.convolution(pooled, ops.constant(np.ones((channels, 3, 1, 1), np.float32)), [1, 1], [0, 0], [0, 0], [1, 1])
        return ops.reshape(y, ops.constant(np.array([0, channels, -1], np.int64)), True) if rank3 else y

    ov.save_model(ov.Model([head(59, 8, True), head(32, 4, False)], [x], "odd"), folder / "odd.xml")
    return folder / "odd.xml"


@needs_openvino
def test_an_output_of_unexpected_size_stops_the_load(tmp_path):
    from segmentation.lean import LeanSegmenter, ModelError

    xml = _odd_model(tmp_path / "odd_openvino_model")
    with pytest.raises(ModelError, match=f"^{xml}: outputs \\[1, 59, 2304\\] and .* expected \\[1, 59, 3024\\]"):
        LeanSegmenter(_settings(), xml.parent, IMGSZ, "odd", 0.25)


@needs_openvino
def test_a_worker_whose_model_fails_its_warm_up_stops(tmp_path):
    """The files pass the check before the fork, but the network's output has the wrong size: the pool
    process that loads it logs one line naming the file and stops the whole worker (no retry loop)."""
    weights, folder = _model_copy(tmp_path)
    for f in folder.glob("*.xml"):
        f.unlink()
        f.with_suffix(".bin").unlink()
    xml = _odd_model(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    env.update(WARDROBE_DATA_DIR=str(tmp_path / "data"), WARDROBE_MODEL=str(weights), WARDROBE_DEVICE="cpu",
               WARDROBE_BACKEND="openvino-int8")
    r = subprocess.run([sys.executable, "-m", "cli.main", "worker", "--queues", "segment", "--concurrency", "1"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    lines = [line for line in (r.stdout + r.stderr).splitlines() if "cannot serve the model" in line]
    assert len(lines) == 1 and f"{xml}: outputs [1, 59, 2304]" in lines[0] and "stopping the worker" in lines[0], \
        (r.stdout + r.stderr)[-3000:]


def test_the_worker_stops_at_start_on_a_broken_model(tmp_path):
    weights, folder = _model_copy(tmp_path)
    bin_ = next(folder.glob("*.bin"))
    bin_.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    env.update(WARDROBE_DATA_DIR=str(tmp_path / "data"), WARDROBE_MODEL=str(weights), WARDROBE_DEVICE="cpu",
               WARDROBE_BACKEND="openvino-int8")
    r = subprocess.run([sys.executable, "-m", "cli.main", "worker", "--queues", "segment"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {bin_}: missing (the weights of {bin_.with_suffix('.xml').name})"]


def test_without_ultralytics_a_model_with_no_int8_twin_is_refused(tmp_path, monkeypatch):
    """Retrained weights whose int8 model is gone: the lean install cannot export, and says so."""
    import segmentation.serving as serving
    from segmentation.lean import ModelError

    weights, folder = _model_copy(tmp_path)
    shutil.rmtree(folder)
    monkeypatch.setattr(serving, "ultralytics_installed", lambda: False)
    s = replace(_settings(), model=str(weights))
    with pytest.raises(ModelError, match=f"^{weights}: backend .* needs torch and Ultralytics"):
        serving.lean_plan(s)
    with pytest.raises(ModelError, match=f"^{folder}: no int8 model made from"):
        serving.lean_plan(replace(s, backend="openvino-int8"))


@needs_openvino
def test_per_class_thresholds_from_the_card_serve_on_both_paths(tmp_path):
    """A card with per-class item thresholds: the lean path keeps and drops the items Ultralytics' does."""
    import json

    from segmentation.lean import LeanSegmenter
    from segmentation.segmenter import YoloSegmenter
    from segmentation.serving import lean_plan

    weights, _ = _model_copy(tmp_path)
    shutil.copyfile(DEFAULT_MODEL, weights)
    card = json.loads(weights.with_suffix(".json").read_text())
    card["serve_conf_per_class"] = {"shoe": 0.9, "top, t-shirt, sweatshirt": 0.12}
    weights.with_suffix(".json").write_text(json.dumps(card))
    s = replace(_settings(backend="openvino-int8"), model=str(weights))
    plan = lean_plan(s)
    assert plan[4] == {0: 0.9, 2: 0.12}
    lean, ultra, plain = LeanSegmenter(s, *plan), YoloSegmenter(s), LeanSegmenter(s, *plan[:4])
    changed = False
    for path in PHOTOS[:2]:
        photo = _rgb(path)
        ours, theirs = lean.segment([photo])[0], ultra.segment([photo])[0]
        changed |= [d.class_id for d in ours] != [d.class_id for d in plain.segment([photo])[0]]
        assert [(d.class_id, round(d.confidence, 4)) for d in ours] == [(d.class_id, round(d.confidence, 4)) for d in theirs]
        assert all(d.class_id != 0 or d.confidence >= 0.9 for d in ours)
    assert changed  # the thresholds made a difference on these photos
