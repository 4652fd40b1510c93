"""The model card beside the weights (`<weights>.json`): what was shipped and how to run it."""
from __future__ import annotations

import json
import os
from pathlib import Path


def read_card(weights: str | os.PathLike) -> dict:
    card = Path(weights).with_suffix(".json")
    try:
        return json.loads(card.read_text()) if card.exists() else {}
    except ValueError:
        return {}


def serve_imgsz(weights: str | os.PathLike, default: int = 640) -> int:
    """The input size to run the model at: the card's measured best (`serve_imgsz`), else its training size."""
    card = read_card(weights)
    return int(card.get("serve_imgsz") or card.get("imgsz") or default)


def serve_conf(weights: str | os.PathLike, default: float = 0.25) -> float:
    """The least confidence an item is kept at: the card's `serve_conf` (chosen from the catalogue's
    figures on val, `make quality`), else Ultralytics' usual 0.25."""
    return float(read_card(weights).get("serve_conf") or default)


def serve_conf_per_class(weights: str | os.PathLike) -> dict[int, float]:
    """The least confidence per class id: the card's `serve_conf_per_class` (class name -> threshold,
    chosen on val by `wardrobe thresholds` from `make quality`'s items), else none."""
    from core.taxonomy import BY_NAME

    per_class = read_card(weights).get("serve_conf_per_class") or {}
    return {BY_NAME[name].id: float(t) for name, t in per_class.items() if name in BY_NAME}


def served_thresholds(weights: str | os.PathLike, conf: float) -> tuple[float, dict[int, float]]:
    """(the item threshold, per-class thresholds) a worker serves: a deployment's `conf`
    (WARDROBE_CONF) for every class when it sets one, else the card's, per class where it has them."""
    if conf:
        return conf, {}
    return serve_conf(weights), serve_conf_per_class(weights)
