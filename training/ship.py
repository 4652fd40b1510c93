"""Ship a training run's best weights: half precision, plus a model card beside them."""
from __future__ import annotations

import csv
import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

from segmentation.runtime import prepare_ultralytics
from training.gpu_kit import sha256  # stdlib only: the same helper serves the GPU kit


def checkpoint_epoch(weights: Path) -> int | None:
    """The 1-based epoch a save_period checkpoint holds: Ultralytics names them `epoch{N}.pt` after
    its 0-based epoch counter. None for any other file."""
    m = re.fullmatch(r"epoch(\d+)\.pt", weights.name)
    return int(m.group(1)) + 1 if m else None


METRICS = ("metrics/mAP50(M)", "metrics/mAP50-95(M)", "metrics/mAP50(B)", "metrics/mAP50-95(B)")


def _fitness(row: dict) -> float:
    """What Ultralytics (8.4, pinned) keeps best.pt by: mask plus box mAP50-95 (its Metric.fitness
    weighs P, R and mAP50 by 0)."""
    return float(row["metrics/mAP50-95(M)"]) + float(row["metrics/mAP50-95(B)"])


def _validated(rows: list[dict], i: int) -> bool:
    """Whether epoch row i was validated: with `val_every` > 1 a skipped epoch's row repeats the last
    validated one's metrics (training/trainer.py), or zeros before the first, and two validations
    never agree to the digit."""
    before = rows[i - 1] if i else {k: "0" for k in METRICS}
    return any(float(rows[i][k]) != float(before[k]) for k in METRICS)


def _soup(ckpt: dict, previous: dict | None) -> dict | None:
    """What a weight soup (`wardrobe soup`, e.g. of the previous weights and a run's last.pt) averaged:
    `from` as written, `of` with the previous weights named by their version (the ship may replace that
    file), `weights`. None for weights that are no soup."""
    made = ckpt.get("soup")
    if not made:
        return None
    return {"from": made["from"], "weights": made["weights"],
            "of": [previous["version"] if previous and Path(p).is_file() and sha256(Path(p)) == previous.get("sha256")
                   else p for p in made["from"]]}


def _soup_epoch(results_csv: Path, ingredients: list[str]) -> int:
    """The epoch of results.csv a soup holds: that of its ingredient from the run (last.pt: the last
    row, best.pt: the one Ultralytics' fitness picks, epochN.pt: N; of two, the later)."""
    epochs = []
    for p in map(Path, ingredients):
        if p.name == "last.pt":
            epochs.append(_results_summary(results_csv, last=True)["best_epoch"])
        elif p.name == "best.pt":
            epochs.append(_results_summary(results_csv)["best_epoch"])
        elif (n := checkpoint_epoch(p)) is not None:
            epochs.append(n)
    if not epochs:
        raise SystemExit(f"none of the soup's checkpoints {ingredients} is a run's last.pt, best.pt or epochN.pt: "
                         f"which epoch of {results_csv} it holds is unknown (ship it without --results-csv)")
    return max(epochs)


def _results_summary(results_csv: Path, epoch: int | None = None, last: bool = False) -> dict:
    """`best_epoch`: the epoch whose weights ship, `epoch` when given, else the one Ultralytics'
    fitness picks for best.pt (the first to reach it: the validated one), the last with `last`.
    `best_epoch_val` is that epoch's validation, None when it was not validated."""
    with open(results_csv) as f:
        rows = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(f)]
    if not rows:
        return {}
    if last:
        i = len(rows) - 1
    elif epoch is not None:
        i = next((i for i, r in enumerate(rows) if int(r["epoch"]) == epoch), None)
        if i is None:  # the checkpoint is not from this run
            raise SystemExit(f"{results_csv} has no row for epoch {epoch}")
    else:
        i = max(range(len(rows)), key=lambda j: (_fitness(rows[j]), -j))
    best = rows[i]
    val = ({"seg_loss": float(best["val/seg_loss"]), "cls_loss": float(best["val/cls_loss"]),
            "mAP50(M)": float(best["metrics/mAP50(M)"]), "mAP50-95(M)": float(best["metrics/mAP50-95(M)"])}
           if _validated(rows, i) else None)
    return {"epochs_run": len(rows), "best_epoch": int(best["epoch"]), "train_seconds": float(rows[-1]["time"]),
            "best_epoch_val": val}


QUALITY_KEYS = ("photos", "garments", "found", "right_class", "extra_items_per_photo", "second_items_per_photo",
                "mask_iou", "boundary_f", "items_per_photo", "alone")


def _training_runs(previous: dict | None, card: dict, preset: str, hardware: str, shipped: Path) -> list[dict]:
    """Every run behind these weights: the previous card's (or the previous card itself), then this one.
    A run's `epochs` are those that went into the shipped weights: Ultralytics' best.pt holds the
    best epoch's, a save_period checkpoint its epoch's, any other file (last.pt) the whole run's;
    `epochs_run` is how many ran."""
    runs = list((previous or {}).get("training_runs") or ([{
        "version": previous["version"], "preset": previous.get("preset"), "imgsz": previous.get("imgsz"),
        "epochs": (previous.get("training") or {}).get("epochs_run", previous.get("epochs")),
        "minutes": round((previous.get("training") or {}).get("train_seconds", 0) / 60),
        "precision": previous.get("train_precision", "fp32"), "hardware": previous.get("hardware")}] if previous else []))
    t = card.get("training") or {}
    ran = t.get("epochs_run", card["epochs"])
    held = checkpoint_epoch(shipped) or (t.get("best_epoch") if shipped.name == "best.pt" else None)
    runs.append({"version": card["version"], "preset": preset, "imgsz": card["imgsz"],
                 "epochs": held or ran, "epochs_run": ran,
                 "minutes": round(t.get("train_seconds", 0) / 60),
                 "precision": card["train_precision"], "hardware": hardware})
    return runs


def ship(best: Path, out: Path, preset: str, data: str, hardware: str, eval_json: Path | None = None,
         results_csv: Path | None = None, serve_imgsz: int | None = None, previous_card: Path | None = None,
         serve_conf: float | None = None, quality_json: Path | None = None, pseudo_report: Path | None = None) -> dict:
    """Write `best` as the shipped weights with their card. `previous_card`: the card of the weights
    this run continued from (the card then counts every run's epochs); `serve_conf`: the item
    threshold chosen from `quality_json` (make quality's report at the served settings);
    `pseudo_report`: `wardrobe pseudo-label`'s report of the data it trained on (teacher, counts)."""
    previous = json.loads(previous_card.read_text()) if previous_card else None
    prepare_ultralytics()
    import torch

    souped = _soup(torch.load(best, map_location="cpu", weights_only=False), previous)
    # read before the weights are replaced, so a results.csv that does not fit them stops the ship
    epoch = _soup_epoch(results_csv, souped["from"]) if souped and results_csv else checkpoint_epoch(best)
    training = _results_summary(results_csv, epoch) if results_csv else None

    ckpt = _write_weights(best, out)
    args = ckpt.get("train_args", {})
    digest = sha256(out)
    card = {
        "version": f"wardrobe-yolov8s-seg-{datetime.now(timezone.utc):%Y%m%d}-{digest[:8]}",
        "file": out.name,
        "sha256": digest,
        "architecture": "yolov8s-seg.yaml, nc=23, trained from random initialisation"
        + (f", continued from {previous['version']}" if previous else ""),
        "classes": list(ckpt["model"].names.values()),
        "precision": "fp16",
        "data": data,
        "preset": preset,
        "epochs": args.get("epochs"),
        "imgsz": args.get("imgsz"),
        "serve_imgsz": serve_imgsz or args.get("imgsz"),
        "batch": args.get("batch"),
        "seed": args.get("seed"),
        "hardware": hardware,
        "ultralytics": ckpt.get("version"),
        "train_precision": "bf16 autocast" if args.get("amp") == "bf16" else ("fp16 AMP" if args.get("amp") else "fp32"),
        "shipped_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if souped:
        card["soup"] = {"of": souped["of"], "weights": souped["weights"]}
    if serve_conf:
        card["serve_conf"] = serve_conf
    if training is not None:
        card["training"] = training
    runs = _training_runs(previous, card, preset, hardware, best)
    card["training_runs"] = runs
    # Ultralytics' args hold the planned epochs (a time budget rewrites them as it goes), not the
    # epochs these weights hold.
    card["epochs"] = runs[-1]["epochs"]
    card["epochs_total"] = sum(int(r["epochs"] or 0) for r in runs)
    _add_reports(card, quality_json, eval_json)
    if pseudo_report:
        card["weak_supervision"] = weak_supervision(json.loads(pseudo_report.read_text()), previous)
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    (out.parent / "README.md").write_text(card_markdown(card))
    return card


def _write_weights(best: Path, out: Path) -> dict:
    """`best` written to `out` as shipped: EMA weights in fp16, no optimizer state, no soup marker (the
    card says it; a copy of the shipped file is no soup). Returns the checkpoint written."""
    import torch
    from ultralytics.utils.torch_utils import strip_optimizer

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.pt")
    shutil.copyfile(best, tmp)
    strip_optimizer(str(tmp))
    ckpt = torch.load(tmp, map_location="cpu", weights_only=False)
    if ckpt.pop("soup", None) is not None:
        torch.save(ckpt, tmp)
    tmp.replace(out)
    return ckpt


def weak_supervision(report: dict, previous: dict | None) -> dict:
    """What the card says of a student's data: its teacher, the round (one more than the teacher's own
    round when the teacher is the model it continued from), and the labelled, pseudo-labelled and
    synthesized photos it saw."""
    teacher = report.get("teacher") or {}
    before = (previous or {}).get("weak_supervision") or {}
    same = previous is not None and teacher.get("version") == previous.get("version")
    pseudo, synth = report.get("pseudo") or {}, report.get("synth_train") or {}
    return {
        "round": (before.get("round", 0) if same else 0) + 1,
        "teacher": {k: teacher.get(k) for k in ("version", "sizes", "mirrored")},
        "pseudo_precision_target": (report.get("thresholds") or {}).get("precision_target"),
        "labelled_train_photos": (report.get("labelled") or {}).get("train"),
        "pseudo_photos": pseudo.get("photos_kept"), "pseudo_photos_tagged": pseudo.get("photos"),
        "pseudo_instances": pseudo.get("instances"), "pseudo_photos_dropped": pseudo.get("photos_dropped"),
        "synthesized_photos": synth.get("photos"),
    }


def _add_reports(card: dict, quality_json: Path | None, eval_json: Path | None) -> None:
    """make quality's figures and the evaluation's, where given, on the card."""
    if quality_json:
        q = json.loads(quality_json.read_text())
        card["catalogue_quality"] = {k: q.get(k) for k in QUALITY_KEYS}
    if eval_json:
        ev = json.loads(eval_json.read_text())
        card["val_metrics"] = {k: ev.get(k) for k in ("split", "images", "imgsz", "seg_loss", "cls_loss", "precision_m",
                                                      "recall_m", "map50_m", "map50_95_m", "map50_b", "map50_95_b")}
        card["val_per_class"] = ev.get("per_class", [])


def update_card(weights: Path, serve_conf: float | None = None, quality_json: Path | None = None,
                serve_imgsz: int | None = None, serve_conf_per_class: dict[str, float] | None = None,
                review_below: float | None = None) -> dict:
    """Record served settings and make quality's figures on the card of weights already shipped
    (the weights, and so the int8 model made from them, stay as they are)."""
    card_path = weights.with_suffix(".json")
    card = json.loads(card_path.read_text())
    if card.get("sha256") != sha256(weights):
        raise SystemExit(f"{card_path.name} does not describe {weights.name} (sha256 differs)")
    if serve_conf:
        card["serve_conf"] = serve_conf
    if serve_imgsz:
        card["serve_imgsz"] = serve_imgsz
    if serve_conf_per_class:
        card["serve_conf_per_class"] = serve_conf_per_class
    if review_below:
        card["review_below"] = review_below
    if quality_json:
        q = json.loads(quality_json.read_text())
        card["catalogue_quality"] = {k: q.get(k) for k in QUALITY_KEYS}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    (weights.parent / "README.md").write_text(card_markdown(card))
    return card


def _weak_row(w: dict | None) -> list[str]:
    if not w:
        return []
    return [f"| weak supervision | round {w['round']}, teacher {w['teacher'].get('version')}: {w['labelled_train_photos']} "
            f"labelled + {w['pseudo_photos']} pseudo-labelled ({w['pseudo_instances']} instances, of "
            f"{w['pseudo_photos_tagged']} tagged) + {w['synthesized_photos']} synthesized single-garment photos |"]


def card_markdown(card: dict) -> str:
    """models/README.md: the card as a person reads it."""
    v = card.get("val_metrics", {})
    t = card.get("training", {})
    lines = [
        f"# {card['version']}",
        "",
        f"`{card['file']}` — YOLOv8s-seg ({card['architecture']}), {card['precision']}, sha256 `{card['sha256']}`.",
        "",
        "| | |",
        "|---|---|",
        f"| data | {card['data']} |",
        *_weak_row(card.get("weak_supervision")),
        *([f"| weight soup | {' + '.join(f'{w:g} x `{p}`' for p, w in zip(card['soup']['of'], card['soup']['weights']))} |"]
          if card.get("soup") else []),
        f"| preset | {card['preset']} (imgsz {card['imgsz']}, batch {card['batch']}, seed {card['seed']}) |",
        f"| epochs | {t.get('epochs_run', card['epochs'])} run, best epoch {t.get('best_epoch', '?')}"
        f"{', ' + str(card['epochs_total']) + ' in all' if card.get('epochs_total') else ''} |",
        f"| training time | {t.get('train_seconds', 0) / 60:.0f} min ({card.get('train_precision', 'fp32')}) |",
        f"| hardware | {card['hardware']} |",
        f"| Ultralytics | {card.get('ultralytics')} |",
        "",
        f"Validation ({v.get('split')}, {v.get('images')} photos, imgsz {v.get('imgsz')}), measured by `wardrobe evaluate`:",
        "",
        "| seg_loss | cls_loss | Precision(M) | Recall(M) | mAP50(M) | mAP50-95(M) | mAP50(B) |",
        "|---|---|---|---|---|---|---|",
        f"| {v.get('seg_loss')} | {v.get('cls_loss')} | {v.get('precision_m')} | {v.get('recall_m')} | "
        f"{v.get('map50_m')} | {v.get('map50_95_m')} | {v.get('map50_b')} |",
        "",
        "| class | val instances | P(M) | R(M) | mAP50(M) | mAP50-95(M) |",
        "|---|---|---|---|---|---|",
    ]
    for c in card.get("val_per_class", []):
        lines.append(f"| {c['name']} | {c['instances']} | {c['precision_m']} | {c['recall_m']} | {c['map50_m']} | {c['map50_95_m']} |")
    if card.get("training_runs"):
        lines += ["", "Training runs, oldest first:", "", "| version | preset | imgsz | epochs | minutes | precision | hardware |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['version']} | {r['preset']} | {r['imgsz']} | {r['epochs']} | {r['minutes']} | {r['precision']} | "
                  f"{r['hardware']} |" for r in card["training_runs"]]
    q = card.get("catalogue_quality")
    if q:
        lines += ["", f"The catalogue on the val photos at the served settings (imgsz {card.get('serve_imgsz')}, "
                  f"items from confidence {card.get('serve_conf', 0.25)}), measured by `make quality`:", "",
                  "| garments found | right class | extra items / photo | second items / photo | mask IoU | boundary F |",
                  "|---|---|---|---|---|---|",
                  f"| {100 * q['found']:.1f} % | {100 * q['right_class']:.1f} % | {q['extra_items_per_photo']} | "
                  f"{q['second_items_per_photo']} | {q['mask_iou']} | {q['boundary_f']} |"]
    return "\n".join(lines) + "\n"
