"""Repeat-factor sampling: photos holding rare garments are drawn more often in an epoch.

The catalogue's rare classes (cardigan, watch, jumpsuit, cape, vest …) are in 1–4 % of the
training photos, and a class averaged into mask mAP counts as much as shoe. Following LVIS'
repeat-factor sampling (Gupta et al., 2019), class c gets r_c = max(1, sqrt(t / f_c)), where f_c is
the fraction of training photos that hold c, and a photo gets the largest r_c of its classes.
Ultralytics' loader has no sampler hook, so instead of repeating photos (which would change the
epoch's length and with it the schedule) an epoch draws len(dataset) photos with replacement,
each with probability proportional to its repeat factor.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import torch


def repeat_factors(image_classes: Sequence[Iterable[int]], threshold: float) -> np.ndarray:
    """Each photo's repeat factor from the classes it holds (a photo with none gets 1)."""
    sets = [set(int(c) for c in cs) for cs in image_classes]
    n = max(1, len(sets))
    counts = Counter(c for s in sets for c in s)
    per_class = {c: max(1.0, math.sqrt(threshold / (k / n))) for c, k in counts.items()}
    return np.array([max((per_class[c] for c in s), default=1.0) for s in sets], dtype=np.float64)


def dataset_image_classes(dataset) -> list[list[int]]:
    """The classes in each photo of an Ultralytics YOLODataset, in its order."""
    return [np.asarray(label["cls"]).reshape(-1).astype(int).tolist() for label in dataset.labels]


def repeat_factor_sampler(dataset, threshold: float, seed: int = 0) -> torch.utils.data.WeightedRandomSampler:
    weights = repeat_factors(dataset_image_classes(dataset), threshold)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return torch.utils.data.WeightedRandomSampler(torch.as_tensor(weights), num_samples=len(weights),
                                                  replacement=True, generator=generator)
