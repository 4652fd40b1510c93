"""Which inference backend a CPU worker picks, and the int8 model shipped beside the weights."""
from __future__ import annotations

import json
import shutil

import pytest

from core.config import DEFAULT_MODEL
from segmentation.backends import INT8_RECORD, int8_model_dir, resolve_backend, shipped_int8_model
from segmentation.card import serve_imgsz
from segmentation.segmenter import model_card, weights_sha256


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="WARDROBE_BACKEND"):
        resolve_backend("tensorrt", "cpu")


def test_gpu_stays_on_pytorch():
    assert resolve_backend("auto", "cuda:0", int8_model=int8_model_dir(DEFAULT_MODEL, 320)) == "pytorch"


def test_a_cpu_worker_picks_int8_unless_the_cpu_has_amx(monkeypatch):
    import segmentation.backends as backends

    monkeypatch.setattr(backends, "openvino_available", lambda: True)
    int8 = int8_model_dir(DEFAULT_MODEL, 320)
    assert resolve_backend("auto", "cpu", int8, amx=False) == "openvino-int8"
    # on AMX the plain export (bf16 on the matrix units) timed faster than int8 in make bench
    assert resolve_backend("auto", "cpu", int8, amx=True) == "openvino"
    assert resolve_backend("auto", "cpu", None, amx=False) == "openvino"
    # a setting other than auto is taken as it is
    assert resolve_backend("openvino-int8", "cpu", int8, amx=True) == "openvino-int8"


def test_cpu_flags_name_amx_and_bf16():
    from core.cpu import has_amx, has_native_bf16

    epyc = frozenset({"avx2", "avx512f", "avx512_bf16"})
    sapphire_rapids = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"})
    assert has_native_bf16(epyc) and not has_amx(epyc)
    assert has_native_bf16(sapphire_rapids) and has_amx(sapphire_rapids)
    assert not has_native_bf16(frozenset({"avx2"})) and not has_amx(frozenset())


def test_the_shipped_int8_model_was_made_from_the_shipped_weights():
    imgsz = serve_imgsz(DEFAULT_MODEL)
    digest = weights_sha256(DEFAULT_MODEL)
    assert model_card(DEFAULT_MODEL)["sha256"] == digest
    folder = shipped_int8_model(DEFAULT_MODEL, imgsz, digest)
    assert folder is not None, "models/ lacks the int8 model for the shipped weights: wardrobe export-model --int8"
    assert json.loads((folder / INT8_RECORD).read_text())["source_sha256"] == digest


def test_an_int8_model_of_other_weights_is_not_used(tmp_path):
    weights = tmp_path / DEFAULT_MODEL.name
    shutil.copyfile(DEFAULT_MODEL, weights)
    imgsz = serve_imgsz(DEFAULT_MODEL)
    shutil.copytree(int8_model_dir(DEFAULT_MODEL, imgsz), int8_model_dir(weights, imgsz))
    digest = weights_sha256(weights)
    assert shipped_int8_model(weights, imgsz, digest) is not None
    # retrained weights: the old int8 model no longer matches them, so the worker exports fp32 instead
    assert shipped_int8_model(weights, imgsz, "0" * 64) is None
    assert shipped_int8_model(weights, imgsz * 2, digest) is None
    assert resolve_backend("auto", "cpu", shipped_int8_model(weights, imgsz, "0" * 64)) in ("openvino", "pytorch")
    record = int8_model_dir(weights, imgsz) / INT8_RECORD
    record.write_text("{not json")
    assert shipped_int8_model(weights, imgsz, digest) is None


def test_an_amx_worker_whose_export_fails_serves_the_int8_model(monkeypatch, tmp_path):
    """On AMX, auto asks for the plain export; if making it fails, the shipped int8 model is
    still there and serves, rather than PyTorch at a fraction of its speed."""
    import segmentation.backends as backends
    from core.config import Settings
    from segmentation.segmenter import YoloSegmenter

    if not backends.openvino_available():
        pytest.skip("OpenVINO is not installed")

    def no_export(*args, **kwargs):
        raise RuntimeError("onnx is not installed")

    monkeypatch.setattr(backends, "has_amx", lambda: True)
    monkeypatch.setattr(backends, "openvino_model", no_export)
    seg = YoloSegmenter(Settings.from_env(model=str(DEFAULT_MODEL), segmenter="yolo", backend="auto", device="cpu",
                                          data_dir=str(tmp_path)))
    assert seg.backend == "openvino-int8"
    assert seg.model.predictor.model.backend.ov_compiled_model is not None
