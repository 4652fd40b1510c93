"""The segmentation trainer `wardrobe train` runs: Ultralytics' own, plus two CPU-training hooks.

- **bf16 autocast on the CPU.** Ultralytics accepts `amp="bf16"` but its `autocast()` helper
  refuses bfloat16 anywhere but CUDA. On a CPU with native bf16 (AVX512-BF16 / AMX) a training
  step under `torch.autocast("cpu", dtype=torch.bfloat16)` is about twice as fast as fp32 (see
  `bench/train_step.py`). While this trainer runs, the trainer module's `autocast` name is
  pointed at a helper that allows exactly that case and defers to Ultralytics for the rest.
  bf16 keeps fp32's exponent range, so no gradient scaler is needed (Ultralytics already turns
  its scaler off for bf16).
- **Validate every N epochs.** On 2 cores validating 100 photos is a sizeable part of an epoch;
  `val_every` skips it in between. A skipped epoch reports no fitness, so `best.pt` is only ever
  written from a validated epoch and early stopping only counts validated ones; the final epoch
  (by count or by the `time=` budget) is always validated.
- **Repeat-factor sampling** (`repeat_threshold` > 0): photos with rare garments are drawn more
  often; see `training/sampling.py`. Ultralytics' loader takes no sampler, so the one inside its
  batch sampler is swapped before the loader's first iteration starts its workers.
"""
from __future__ import annotations

import contextlib
import time

import torch
from ultralytics.engine import trainer as _trainer_module
from ultralytics.models.yolo.segment import SegmentationTrainer


@contextlib.contextmanager
def _cpu_bf16_autocast():
    original = _trainer_module.autocast

    def autocast(enabled, device: str = "cuda"):
        if enabled is torch.bfloat16 and device == "cpu":
            return torch.amp.autocast("cpu", dtype=torch.bfloat16)
        return original(enabled, device=device)

    _trainer_module.autocast = autocast
    try:
        yield
    finally:
        _trainer_module.autocast = original


class WardrobeSegmentationTrainer(SegmentationTrainer):
    """SegmentationTrainer with CPU bf16 autocast and validation every `val_every` epochs.

    `val_every` is read from the class attribute (Ultralytics builds the trainer itself from
    `model.train(trainer=cls, ...)`, so per-run values are set on a subclass: see `configured`).
    """

    val_every: int = 1
    repeat_threshold: float = 0.0

    @classmethod
    def configured(cls, val_every: int = 1, repeat_threshold: float = 0.0) -> type["WardrobeSegmentationTrainer"]:
        return type(cls.__name__, (cls,), {"val_every": max(1, int(val_every)),
                                           "repeat_threshold": max(0.0, float(repeat_threshold))})

    def get_dataloader(self, dataset_path: str, batch_size: int = 16, rank: int = 0, mode: str = "train"):
        loader = super().get_dataloader(dataset_path, batch_size, rank, mode)
        if mode == "train" and self.repeat_threshold > 0 and rank in (-1, 0) and loader.iterator is None:
            from training.sampling import repeat_factor_sampler

            batches = loader.batch_sampler.sampler  # _RepeatSampler(BatchSampler(RandomSampler))
            batches.sampler = repeat_factor_sampler(loader.dataset, self.repeat_threshold, seed=self.args.seed)
        return loader

    def _do_train(self):
        with _cpu_bf16_autocast():
            return super()._do_train()

    def _last_epoch_now(self) -> bool:
        if self.epoch + 1 >= self.epochs:
            return True
        if self.args.time:
            # Ultralytics decides a time-budget stop only after validating; look one epoch ahead.
            elapsed = time.time() - self.train_time_start
            per_epoch = elapsed / max(1, self.epoch - self.start_epoch + 1)
            return elapsed + per_epoch > self.args.time * 3600
        return False

    def validate(self):
        if self.val_every > 1 and (self.epoch + 1) % self.val_every and not self._last_epoch_now() and not self.stop:
            return self.metrics, None
        return super().validate()
