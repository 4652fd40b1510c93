"""CPU training speed and accuracy, fp32 against bf16 autocast, from the same start and seed.

    python -m bench.train_step [--data var/datasets/ccp-yolo/data.yaml] [--fraction 0.5] [--epochs 1]

Each precision trains `--epochs` from the shipped weights on the same fraction of the train split
(same seed, same augmentation draws) and validates once at the end. Printed per precision: seconds
per epoch split into the training pass and validation, seconds per optimizer step, the data
loader's own share (one pass over the same loader with no model), and val mAP50(M); then the
bf16/fp32 ratios. Writes bench/out/train_step.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from core.config import DEFAULT_MODEL


def _one(data: str, bf16: bool, fraction: float, epochs: int, imgsz: int, out: Path) -> dict:
    from training.train import train

    marks: dict[str, list[float]] = {"train": [], "val": []}
    loader_seconds: list[float] = []

    def on_train_epoch_start(tr):
        tr._bench_t0 = time.perf_counter()

    def on_train_epoch_end(tr):
        marks["train"].append(time.perf_counter() - tr._bench_t0)
        tr._bench_t1 = time.perf_counter()

    def on_fit_epoch_end(tr):
        marks["val"].append(time.perf_counter() - tr._bench_t1)

    def on_train_end(tr):
        # The loader alone (decode from the RAM cache, mosaic, augmentation, collate), one pass.
        t0 = time.perf_counter()
        for _ in tr.train_loader:
            pass
        loader_seconds.append(time.perf_counter() - t0)
        tr._bench_steps = len(tr.train_loader)

    name = "bf16" if bf16 else "fp32"
    steps: list[int] = []

    def on_train_end_count(tr):
        on_train_end(tr)
        steps.append(tr._bench_steps)

    callbacks = {"on_train_epoch_start": on_train_epoch_start, "on_train_epoch_end": on_train_epoch_end,
                 "on_fit_epoch_end": on_fit_epoch_end, "on_train_end": on_train_end_count}
    run = train(data, "shared-cpu", project=out, name=name, epochs=epochs, imgsz=imgsz, weights=DEFAULT_MODEL,
                device="cpu", threads=os.cpu_count(), bf16=bf16, val_every=epochs, callbacks=callbacks,
                extra=dict(fraction=fraction, plots=False, close_mosaic=0))
    import csv

    rows = list(csv.DictReader(open(Path(run) / "results.csv")))
    last = {k.strip(): v for k, v in rows[-1].items()}
    train_s = sum(marks["train"]) / len(marks["train"])
    return {
        "precision": name,
        "epochs": epochs,
        "steps_per_epoch": steps[0] if steps else None,
        "train_seconds_per_epoch": round(train_s, 1),
        "val_seconds": round(marks["val"][-1], 1) if marks["val"] else None,
        "seconds_per_step": round(train_s / steps[0], 3) if steps else None,
        "loader_seconds_per_epoch": round(loader_seconds[0], 1) if loader_seconds else None,
        "map50_m": round(float(last["metrics/mAP50(M)"]), 4),
        "map50_95_m": round(float(last["metrics/mAP50-95(M)"]), 4),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="var/datasets/ccp-yolo/data.yaml")
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--out", default="bench/out/train_step.json")
    a = ap.parse_args(argv)
    work = Path("var/bench-train")
    results = [_one(a.data, bf16, a.fraction, a.epochs, a.imgsz, work) for bf16 in (False, True)]
    fp32, bf16 = results
    ratios = {
        "train_speedup_bf16_over_fp32": round(fp32["train_seconds_per_epoch"] / bf16["train_seconds_per_epoch"], 2),
        "step_speedup_bf16_over_fp32": round(fp32["seconds_per_step"] / bf16["seconds_per_step"], 2),
        "epoch_speedup_with_val": round((fp32["train_seconds_per_epoch"] + fp32["val_seconds"])
                                        / (bf16["train_seconds_per_epoch"] + bf16["val_seconds"]), 2),
        "map50_m_bf16_minus_fp32": round(bf16["map50_m"] - fp32["map50_m"], 4),
    }
    report = {"imgsz": a.imgsz, "fraction": a.fraction, "threads": os.cpu_count(), "runs": results, "ratios": ratios}
    for r in results:
        print(f"{r['precision']}: {r['train_seconds_per_epoch']} s train + {r['val_seconds']} s val per epoch, "
              f"{r['seconds_per_step']} s/step over {r['steps_per_epoch']} steps, loader alone "
              f"{r['loader_seconds_per_epoch']} s, mAP50(M) {r['map50_m']}")
    for k, v in ratios.items():
        print(f"{k}: {v}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
