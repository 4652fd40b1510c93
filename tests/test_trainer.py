"""training/trainer.py: CPU bf16 autocast inside Ultralytics' trainer, and validation every N epochs."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from training.fashionpedia import import_dataset

MINI = Path(__file__).resolve().parent / "fixtures" / "ccp-mini"


def test_bf16_autocast_is_allowed_on_the_cpu_only_inside_the_trainer():
    from ultralytics.engine import trainer as module

    from training.trainer import _cpu_bf16_autocast

    a = torch.randn(8, 8)
    with pytest.raises(RuntimeError):  # Ultralytics' own helper: bf16 on CUDA only
        module.autocast(torch.bfloat16, device="cpu")
    with _cpu_bf16_autocast():
        with module.autocast(torch.bfloat16, device="cpu"):
            assert (a @ a).dtype == torch.bfloat16
        with module.autocast(False, device="cpu"):  # fp32 runs still defer to Ultralytics
            assert (a @ a).dtype == torch.float32
    with pytest.raises(RuntimeError):
        module.autocast(torch.bfloat16, device="cpu")


def test_amp_setting_per_device():
    from training.train import _amp

    assert _amp("cpu", None, lambda: True) == "bf16"
    assert _amp("cpu", None, lambda: False) is False
    assert _amp("cpu", False, lambda: True) is False
    assert _amp("cpu", True, lambda: False) == "bf16"
    assert _amp("0", None, lambda: False) is True  # fp16 AMP on a GPU


def test_bf16_run_validates_every_n_epochs_and_always_the_last(tmp_path):
    from training.train import train

    import_dataset(MINI / "instances_train.json", MINI / "instances_val.json", MINI / "images", tmp_path / "data")
    validated: list[int] = []
    precisions: list[str] = []

    def on_val_end(validator):
        validated.append(1)

    def on_train_epoch_end(tr):
        precisions.append(str(tr.args.amp))

    run = train(tmp_path / "data" / "data.yaml", "smoke", project=tmp_path, name="r", epochs=5, device="cpu",
                workers=0, threads=2, cache=False, bf16=True, val_every=2,
                callbacks={"on_val_end": on_val_end, "on_train_epoch_end": on_train_epoch_end})
    rows = list(csv.DictReader(open(run / "results.csv")))
    assert len(rows) == 5 and set(precisions) == {"bf16"}
    # epochs 2 and 4 by the cadence, 5 as the last, plus Ultralytics' final validation of best.pt
    assert len(validated) == 4
    assert (run / "weights" / "best.pt").exists()


def test_repeat_factors_follow_lvis_rule():
    from training.sampling import repeat_factors

    # class 0 in every photo, class 1 in one of ten: r_1 = sqrt(0.4 / 0.1) = 2
    photos = [[0]] * 9 + [[0, 1]]
    r = repeat_factors(photos, threshold=0.4)
    assert list(r[:9]) == [1.0] * 9 and r[9] == pytest.approx(2.0)
    assert list(repeat_factors(photos + [[]], threshold=0.0)) == [1.0] * 11  # off: uniform, empty photos too


def test_repeat_factor_sampler_draws_rare_photos_more_often():
    from types import SimpleNamespace

    import numpy as np

    from training.sampling import repeat_factor_sampler

    labels = [{"cls": np.array([[0.0]])}] * 95 + [{"cls": np.array([[0.0], [1.0]])}] * 5
    sampler = repeat_factor_sampler(SimpleNamespace(labels=labels), threshold=0.45, seed=1)
    draws = [i for _ in range(200) for i in sampler]
    assert len(sampler) == 100 and len(draws) == 20000
    rare_share = sum(i >= 95 for i in draws) / len(draws)
    # r_rare = 3, so 15 of 110 weight: 13.6 % of draws against 5 % uniformly
    assert 0.12 < rare_share < 0.155


def test_training_with_repeat_threshold_uses_the_repeat_factor_sampler(tmp_path):
    from training.train import train

    import_dataset(MINI / "instances_train.json", MINI / "instances_val.json", MINI / "images", tmp_path / "data")
    samplers: list = []

    def on_train_epoch_start(tr):
        samplers.append(tr.train_loader.batch_sampler.sampler.sampler)

    train(tmp_path / "data" / "data.yaml", "smoke", project=tmp_path, name="r", epochs=1, device="cpu",
          workers=0, threads=2, cache=False, bf16=False, repeat_threshold=0.5,
          callbacks={"on_train_epoch_start": on_train_epoch_start})
    assert len(samplers) == 1 and isinstance(samplers[0], torch.utils.data.WeightedRandomSampler)
    assert float(samplers[0].weights.max()) > 1.0  # the mini set has rare classes: some photos weigh more


def test_every_preset_passes_only_arguments_ultralytics_knows():
    """A preset's `hyp` goes to Ultralytics' train() as it is (less our own keys), and a misspelt key
    there fails only when a long run starts: pin them to Ultralytics' configuration now."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    from training.presets import PRESETS

    ours = {"val_every", "repeat_threshold"}  # read by training/train.py, never passed on
    for p in PRESETS.values():
        unknown = set(p.hyp) - ours - set(DEFAULT_CFG_DICT)
        assert not unknown, (p.name, unknown)
    cp = PRESETS["cpu-continue-copypaste"].hyp
    assert cp["copy_paste"] > 0 and cp["copy_paste_mode"] in ("flip", "mixup")
    assert "copy_paste" not in PRESETS["cpu-continue"].hyp  # the plain preset stays as it was
