"""A weight soup: the average of checkpoints fine-tuned from the same weights.

Checkpoints continued from one start stay in one basin, so their average is a model of its own, often
as good as the best of them on the data they share and better on what only some of them learned
(e.g. the shipped weights and a student that saw garments alone). No training and no cost at serving.
"""
from __future__ import annotations

from pathlib import Path

from segmentation.runtime import prepare_ultralytics


def _module(ckpt: dict):
    """The weights a checkpoint serves: its EMA while training, else its model (stripped files)."""
    return (ckpt.get("ema") or ckpt["model"]).float()


def soup(paths: list[Path], out: Path, weights: list[float] | None = None) -> dict:
    """Average the float tensors of `paths` (Ultralytics checkpoints of one architecture), weighted by
    `weights` (default: uniform; normalised to sum 1), and write a checkpoint in the first one's format
    to `out`; integer buffers (BatchNorm's batch count) come from the first. Returns what it wrote."""
    if len(paths) < 2:
        raise SystemExit("a soup needs two checkpoints or more")
    weights = list(weights or [1.0] * len(paths))
    if len(weights) != len(paths) or min(weights) < 0 or sum(weights) <= 0:
        raise SystemExit(f"{len(paths)} checkpoints need as many weights, none negative: got {weights}")
    weights = [w / sum(weights) for w in weights]
    prepare_ultralytics()
    import torch

    ckpts = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
    models = [_module(c) for c in ckpts]
    states = [m.state_dict() for m in models]
    for p, state in zip(paths[1:], states[1:]):
        if state.keys() != states[0].keys() or any(state[k].shape != v.shape for k, v in states[0].items()):
            raise SystemExit(f"{p}: not the architecture of {paths[0]}")
    mean = {k: (sum(w * s[k].float() for w, s in zip(weights, states)) if v.is_floating_point() else v)
            for k, v in states[0].items()}
    model = models[0]
    model.load_state_dict(mean)
    base = ckpts[0]
    base["ema" if base.get("ema") is not None else "model"] = model.half()
    base["optimizer"] = None
    base["soup"] = {"from": [str(p) for p in paths], "weights": [round(w, 4) for w in weights]}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(base, out)
    return base["soup"]
