"""`wardrobe soup`: checkpoints averaged tensor by tensor, in the format the rest of the tools read."""
from __future__ import annotations

import pytest

from core.config import DEFAULT_MODEL


def _state(path):
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return (ckpt.get("ema") or ckpt["model"]).float().state_dict()


def test_a_soup_is_the_weighted_mean_and_loads_as_a_model(tmp_path):
    import torch

    from training.soup import soup

    shifted = tmp_path / "shifted.pt"
    ckpt = torch.load(DEFAULT_MODEL, map_location="cpu", weights_only=False)
    model = ckpt["model"].float()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ckpt["model"] = model.half()
    torch.save(ckpt, shifted)

    out = tmp_path / "soup.pt"
    made = soup([DEFAULT_MODEL, shifted], out, [3, 1])
    assert made["weights"] == [0.75, 0.25]
    base, other, mixed = _state(DEFAULT_MODEL), _state(shifted), _state(out)
    name = next(k for k, v in base.items() if k.endswith("conv.weight"))
    expected = 0.75 * base[name] + 0.25 * other[name]
    assert torch.allclose(mixed[name], expected, atol=2e-3)  # fp16 storage
    assert not torch.allclose(mixed[name], base[name], atol=0.1)
    from ultralytics import YOLO

    assert YOLO(str(out)).model.names == YOLO(str(DEFAULT_MODEL)).model.names


def test_a_soup_refuses_one_checkpoint_or_mismatched_weights(tmp_path):
    from training.soup import soup

    with pytest.raises(SystemExit, match="two checkpoints"):
        soup([DEFAULT_MODEL], tmp_path / "x.pt")
    with pytest.raises(SystemExit, match="as many weights"):
        soup([DEFAULT_MODEL, DEFAULT_MODEL], tmp_path / "x.pt", [1.0])
