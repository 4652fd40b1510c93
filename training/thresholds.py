"""Per-class serving thresholds, chosen from `make quality`'s items on val.

One threshold for every class served the common classes well and the rest badly: a shoe at 0.3 is
nearly always a shoe, while a hat at 0.3 is often hair. Given every item of a run made at a low
threshold, each with its class, confidence and outcome (a found garment, or an extra or second
item), the thresholds that find the most garments within a budget of unwanted items a photo are
chosen by a Lagrangian search: for a price `lam` on an unwanted item, each class independently takes
the threshold that maximises found - lam * unwanted; `lam` is bisected until the total fits the
budget. A class with fewer than `min_items` items on val keeps the pooled threshold (all classes
at one value, chosen the same way), so the rare classes are not fitted to a handful of photos;
every threshold stays within [lo, hi].
"""
from __future__ import annotations

from collections import defaultdict

FOUND = ("right", "wrong_class")
UNWANTED = ("extra", "second")


def _best(rows: list[tuple[float, str]], lam: float, lo: float, hi: float) -> tuple[float, int, int]:
    """(threshold, found, unwanted) maximising found - lam * unwanted; the candidates are `hi` and
    the rows' confidences within [lo, hi] (an item is kept at a threshold at or below its confidence)."""
    best = None
    for t in [hi] + sorted({c for c, _ in rows if lo <= c <= hi}, reverse=True):
        found = sum(1 for c, o in rows if c >= t and o in FOUND)
        unwanted = sum(1 for c, o in rows if c >= t and o in UNWANTED)
        if best is None or found - lam * unwanted > best[1] - lam * best[2]:
            best = (t, found, unwanted)
    return best


def choose(items: list[tuple[int, float, str]], photos: int, budget: float, min_items: int = 8,
           lo: float = 0.15, hi: float = 0.6) -> dict:
    """`items`: (class, confidence, outcome) of every item on `photos` val photos; `budget`:
    unwanted (extra + second) items a photo. Returns the thresholds and what they gave on val."""
    by_class: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for c, conf, outcome in items:
        by_class[c].append((conf, outcome))
    pooled_rows = [(conf, o) for c, conf, o in items]

    def fit(lam: float) -> tuple[dict[int, float], int, int, float]:
        pooled, f, u = _best(pooled_rows, lam, lo, hi)
        chosen, found, unwanted = {}, 0, 0
        for c, rows in by_class.items():
            if len(rows) >= min_items:
                t, f, u = _best(rows, lam, lo, hi)
            else:
                t = pooled
                f = sum(1 for conf, o in rows if conf >= t and o in FOUND)
                u = sum(1 for conf, o in rows if conf >= t and o in UNWANTED)
            chosen[c] = t
            found += f
            unwanted += u
        return chosen, found, unwanted, pooled

    lo_lam, hi_lam = 0.0, 50.0
    result = fit(hi_lam)
    for _ in range(40):
        mid = (lo_lam + hi_lam) / 2
        trial = fit(mid)
        if trial[2] <= budget * photos:
            result, hi_lam = trial, mid
        else:
            lo_lam = mid
    chosen, found, unwanted, pooled = result
    # each threshold is an item's own confidence (or `hi`): kept as it is, since rounding it up would
    # drop that item from what is served while the val figures below count it
    return {"per_class": {int(c): float(t) for c, t in sorted(chosen.items())},
            "pooled": float(pooled), "budget_unwanted_per_photo": budget,
            "val_found_items": found, "val_unwanted_per_photo": round(unwanted / max(1, photos), 3)}


def review_threshold(items: list[tuple[int, float, str]], accuracy: float = 0.6, step: float = 0.1,
                     default: float = 0.5) -> float:
    """The deployment's default review threshold: the lowest confidence from which items are right
    (a found garment, the right class) at least `accuracy` of the time in every band of `step` above
    it; below it an item is more often wrong than a user should have to find by chance."""
    n = round(1 / step)
    bands = [round(step * k, 4) for k in range(n)]
    # each item in one band by its index (lo + step in floating point puts 0.3 in two bands); the top band holds 1.0
    index = [(min(int(conf / step + 1e-9), n - 1), o) for _c, conf, o in items]
    chosen = None
    for k in reversed(range(n)):
        lo = bands[k]
        band = [o for i, o in index if i == k]
        if band and sum(o == "right" for o in band) / len(band) < accuracy:
            break
        if band:
            chosen = lo
    return default if chosen is None else chosen
