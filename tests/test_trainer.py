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
