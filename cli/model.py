"""`wardrobe import-fashionpedia`, `train`, `evaluate`, `predict`, `export-model`, `export-training`, `ship`:
the model's data, training, checks and shipping."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.services import env_settings


# --- training ---------------------------------------------------------------

def cmd_import(a) -> int:
    from training.fashionpedia import import_dataset

    report = import_dataset(Path(a.train_json), Path(a.val_json), Path(a.images), Path(a.out),
                            val_images_dir=Path(a.val_images) if a.val_images else None,
                            keep_background=not a.drop_background, link=not a.copy)
    print(json.dumps(report, indent=2))
    return 0


def cmd_pseudo_label(a) -> int:
    import logging

    from training.pseudo import build

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = build(Path(a.weights), Path(a.labelled), Path(a.unlabelled), Path(a.out), precision=a.precision,
                   synth_train=a.synth_train, synth_val=a.synth_val, seed=a.seed, limit=a.limit, threads=a.threads,
                   sizes=tuple(int(v) for v in a.sizes.split(",")) if a.sizes else None)
    print(json.dumps({k: report[k] for k in ("labelled", "pseudo", "data_yaml")}, indent=2))
    print(f"report: {Path(a.out) / 'pseudo_report.json'}", file=sys.stderr)
    return 0


def cmd_train(a) -> int:
    from training.train import train

    run = train(a.data, a.preset, project=a.project, name=a.name, epochs=a.epochs, imgsz=a.imgsz, batch=a.batch,
                weights=a.weights, resume=a.resume, seed=a.seed, device=a.device, workers=a.workers,
                bf16=a.bf16, val_every=a.val_every, repeat_threshold=a.repeat_threshold,
                time_hours=a.time_hours, threads=a.threads)
    print(f"run directory: {run}")
    return 0


def cmd_soup(a) -> int:
    from training.soup import soup

    made = soup([Path(p) for p in a.checkpoints], Path(a.out),
                [float(v) for v in a.weights.split(",")] if a.weights else None)
    print(json.dumps({"out": a.out, **made}, indent=2))
    return 0


def cmd_evaluate(a) -> int:
    from training.evaluate import evaluate, print_table

    report = evaluate(a.weights, a.data, imgsz=a.imgsz, split=a.split, device=a.device, batch=a.batch)
    print_table(report)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {a.json}")
    return 0


def cmd_predict(a) -> int:
    from segmentation.preview import predict_and_draw

    dets = predict_and_draw(a.weights, Path(a.photo), Path(a.save) if a.save else None, imgsz=a.imgsz, conf=a.conf)
    for d in dets:
        print(f"{d['category']:<40} {d['confidence']:.2f}  {d['bbox']}")
    if a.save:
        print(f"wrote {a.save}", file=sys.stderr)
    return 0


def cmd_export_training(a) -> int:
    from services.bootup import bootup
    from training.export import export_training

    counts = export_training(bootup(env_settings()), Path(a.out), user_name=a.user, corrected_only=a.corrected_only,
                             val_fraction=a.val_fraction)
    print(json.dumps(counts, indent=2))
    print(f"import it with: wardrobe import-fashionpedia --train-json {a.out}/instances_train.json "
          f"--val-json {a.out}/instances_val.json --images {a.out}/images --out DATASET", file=sys.stderr)
    return 0


def cmd_export_model(a) -> int:
    """Export the configured weights for the worker's CPU backend (OpenVINO), into its cache."""
    from dataclasses import replace

    settings = env_settings()
    if a.weights:
        settings = replace(settings, model=a.weights)
    from segmentation.runtime import prepare_ultralytics
    from segmentation.backends import openvino_available, openvino_model
    from segmentation.segmenter import weights_digest

    if not openvino_available():
        print("error: openvino is not installed (pip install 'wardrobe[openvino]')", file=sys.stderr)
        return 2
    prepare_ultralytics()
    path = Path(settings.model)
    from segmentation.card import serve_imgsz

    imgsz = a.imgsz or settings.imgsz or serve_imgsz(path)
    digest = weights_digest(path)
    if a.int8:
        if not a.data:
            print("error: --int8 needs --data DATA.yaml (calibration photos come from its train split)", file=sys.stderr)
            return 2
        from training.quantize import quantize_openvino

        out = quantize_openvino(path, imgsz, Path(a.data), digest, fraction=a.fraction)
    else:
        out = openvino_model(path, imgsz, settings.data_path / "model-cache", digest)
    print(out)
    return 0


def cmd_thresholds(a) -> int:
    from core.taxonomy import NAMES
    from training.ship import update_card
    from training.thresholds import choose, review_threshold

    try:
        q = json.loads(Path(a.quality_json).read_text())
    except ValueError as e:
        raise SystemExit(f"{a.quality_json} is not make quality's JSON ({e})") from None
    if not isinstance(q, dict) or "items_scored" not in q or not isinstance(q.get("photos"), int):
        print(f"error: {a.quality_json} has no items_scored and photos (made by an older make quality?)", file=sys.stderr)
        return 2
    try:
        items = [(int(k), float(c), str(o)) for k, c, o in q["items_scored"]]
    except (TypeError, ValueError) as e:
        raise SystemExit(f"{a.quality_json}: items_scored holds something other than [class, confidence, outcome] "
                         f"({e})") from None
    chosen = choose(items, q["photos"], a.budget)
    named = {NAMES[c]: t for c, t in chosen["per_class"].items()}
    # the review default from the items the thresholds keep
    kept = [(k, c, o) for k, c, o in items if c >= chosen["per_class"].get(k, chosen["pooled"])]
    review = review_threshold(kept)
    print(json.dumps(chosen | {"per_class": named, "review_below": review}, indent=2))
    if a.write:
        update_card(Path(a.weights), serve_conf_per_class=named, review_below=review)
        print(f"wrote serve_conf_per_class on {Path(a.weights).with_suffix('.json')}", file=sys.stderr)
    return 0


def cmd_ship(a) -> int:
    from training.ship import ship, update_card

    if a.card_only:
        card = update_card(Path(a.best), serve_conf=a.serve_conf, serve_imgsz=a.serve_imgsz,
                           quality_json=Path(a.quality_json) if a.quality_json else None)
        print(json.dumps(card, indent=2))
        return 0
    if not (a.preset and a.data_desc and a.hardware):
        print("error: shipping weights needs --preset, --data-desc and --hardware", file=sys.stderr)
        return 2

    card = ship(Path(a.best), Path(a.out), preset=a.preset, data=a.data_desc, hardware=a.hardware,
                eval_json=Path(a.eval_json) if a.eval_json else None, results_csv=Path(a.results_csv) if a.results_csv else None,
                serve_imgsz=a.serve_imgsz, previous_card=Path(a.previous_card) if a.previous_card else None,
                serve_conf=a.serve_conf, quality_json=Path(a.quality_json) if a.quality_json else None,
                pseudo_report=Path(a.pseudo_report) if a.pseudo_report else None)
    print(json.dumps(card, indent=2))
    return 0


def add_parsers(sub) -> None:
    from core.config import DEFAULT_MODEL

    s = sub.add_parser("import-fashionpedia", help="Fashionpedia COCO JSON -> YOLO-seg dataset of the 23 classes")
    s.add_argument("--train-json", required=True, help="Fashionpedia/COCO instances JSON of the train split")
    s.add_argument("--val-json", required=True, help="the same for the val split")
    s.add_argument("--images", required=True, help="train images folder (and val, unless --val-images)")
    s.add_argument("--val-images", help="val images folder, when apart from --images")
    s.add_argument("--out", required=True, help="folder for the YOLO dataset (data.yaml, images, labels)")
    s.add_argument("--drop-background", action="store_true", help="skip images with no kept instance")
    s.add_argument("--copy", action="store_true", help="copy images instead of symlinking")
    s.set_defaults(fn=cmd_import)

    s = sub.add_parser("pseudo-label", help="label the tagged photos with the teacher and write labelled + "
                                             "pseudo-labelled + synthesized single-garment photos as one dataset")
    s.add_argument("--weights", default=str(DEFAULT_MODEL), help="the teacher (default: the shipped model)")
    s.add_argument("--labelled", required=True, help="the dataset import-fashionpedia wrote (its train and val)")
    s.add_argument("--unlabelled", required=True, help="folder of the tagged photos with their tags.json")
    s.add_argument("--out", required=True, help="folder for the combined dataset and pseudo_report.json")
    s.add_argument("--precision", type=float, default=0.75,
                   help="per-class thresholds keep garments this often right on the val photos")
    s.add_argument("--synth-train", type=int, default=0, help="single-garment photos synthesized from train")
    s.add_argument("--synth-val", type=int, default=0, help="the same from val, into OUT/alone (for evaluation only)")
    s.add_argument("--seed", type=int, default=0, help="seed of the synthesized photos")
    s.add_argument("--limit", type=int, help="only the first N photos of each set (a quick check)")
    s.add_argument("--threads", type=int, default=2, help="PyTorch threads of the teacher")
    s.add_argument("--sizes", help="the teacher's input sizes, comma-separated (default 384,480; each also mirrored)")
    s.set_defaults(fn=cmd_pseudo_label)

    from training.presets import PRESETS

    s = sub.add_parser("train", help="train YOLOv8s-seg (offline, from the architecture yaml)")
    s.add_argument("--data", required=True, help="data.yaml written by import-fashionpedia")
    s.add_argument("--preset", default="shared-cpu", choices=sorted(PRESETS), help="training settings (training/presets.py)")
    s.add_argument("--project", default="runs/train", help="runs are written to PROJECT/NAME")
    s.add_argument("--name", default="wardrobe", help="see --project")
    s.add_argument("--epochs", type=int, help="default: the preset's")
    s.add_argument("--imgsz", type=int, help="training image size in pixels (default: the preset's)")
    s.add_argument("--batch", type=int, help="default: the preset's")
    s.add_argument("--weights", help="start from these weights (fine-tune) instead of random init")
    s.add_argument("--resume", action="store_true", help="continue project/name/weights/last.pt")
    s.add_argument("--seed", type=int, default=0, help="random seed")
    s.add_argument("--device", help="cpu, 0 (the first GPU) ... (default: the preset's)")
    s.add_argument("--workers", type=int, help="data loader processes")
    s.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast on the CPU (default: on where the CPU has native bf16)")
    s.add_argument("--val-every", type=int, default=1, help="validate every N epochs (the last one always)")
    s.add_argument("--repeat-threshold", type=float, default=None,
                   help="repeat-factor sampling: classes in fewer than this fraction of photos are drawn more "
                        "often (default: the preset's; 0 = off)")
    s.add_argument("--time-hours", type=float, help="wall-clock budget; sets the epoch count to fit")
    s.add_argument("--threads", type=int, help="PyTorch threads (default: every core)")
    s.set_defaults(fn=cmd_train)

    _add_checks_and_shipping(sub, DEFAULT_MODEL)
    _add_soup(sub)


def _add_soup(sub) -> None:
    s = sub.add_parser("soup", help="average checkpoints fine-tuned from the same weights into one (a weight soup)")
    s.add_argument("checkpoints", nargs="+", help="two or more .pt of one architecture (e.g. the shipped and a student)")
    s.add_argument("--out", required=True, help="the averaged checkpoint (evaluate it, then ship it like best.pt)")
    s.add_argument("--weights", help="comma-separated, one per checkpoint (default: uniform)")
    s.set_defaults(fn=cmd_soup)


def _add_checks_and_shipping(sub, default_model) -> None:
    s = sub.add_parser("evaluate", help="mask and box metrics on a split, as a table and JSON")
    s.add_argument("--weights", default=str(default_model), help="the .pt to evaluate (default: the shipped model)")
    s.add_argument("--data", required=True, help="data.yaml written by import-fashionpedia")
    s.add_argument("--split", default="val", help="the data.yaml split to score: val (default), train, test")
    s.add_argument("--imgsz", type=int, default=None, help="default: the model card's imgsz")
    s.add_argument("--batch", type=int, default=8, help="photos per forward pass")
    s.add_argument("--device", help="cpu, 0 (the first GPU) ...")
    s.add_argument("--json", help="write the report here")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("predict", help="segment one photo and draw masks and labels")
    s.add_argument("photo")
    s.add_argument("--weights", default=str(default_model), help="the .pt to run (default: the shipped model)")
    s.add_argument("--save", help="write the drawing here (PNG/JPEG)")
    s.add_argument("--imgsz", type=int, default=None, help="default: the model card's served size, as the worker")
    s.add_argument("--conf", type=float, default=None, help="default: the model card's serve_conf, as the worker")
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("export-model", help="export the model for the CPU backend: OpenVINO fp32 into the cache, or --int8 beside the weights")
    s.add_argument("--weights", help="default: WARDROBE_MODEL")
    s.add_argument("--imgsz", type=int, help="input size to export at (default: WARDROBE_IMGSZ, else the card's served size)")
    s.add_argument("--int8", action="store_true",
                   help="quantise to int8 with NNCF and write it beside the weights (the CPU worker's first choice)")
    s.add_argument("--data", help="with --int8: a YOLO data.yaml whose train split calibrates the quantiser")
    s.add_argument("--fraction", type=float, default=0.4, help="with --int8: share of the train split to calibrate on")
    s.set_defaults(fn=cmd_export_model)

    s = sub.add_parser("export-training", help="write the corrected catalogue as a Fashionpedia-format dataset")
    s.add_argument("--out", required=True, help="folder for the dataset (instances_*.json, images)")
    s.add_argument("--user", help="only this user's catalogue")
    s.add_argument("--corrected-only", action="store_true", help="only photos with at least one corrected item")
    s.add_argument("--val-fraction", type=float, default=0.1, help="share of the photos held out for val")
    s.set_defaults(fn=cmd_export_training)

    s = sub.add_parser("thresholds", help="per-class item thresholds from make quality's items (run at a low "
                                          "WARDROBE_CONF): the most garments found within a budget of unwanted items")
    s.add_argument("quality_json", help="make quality's JSON, made with e.g. WARDROBE_CONF=0.15")
    s.add_argument("--budget", type=float, default=0.8, help="extra + second items a photo allowed (default 0.8)")
    s.add_argument("--weights", default=str(default_model), help="whose card to write (with --write)")
    s.add_argument("--write", action="store_true", help="record them on the model card (serve_conf_per_class)")
    s.set_defaults(fn=cmd_thresholds)

    s = sub.add_parser("ship", help="write half-precision weights and their model card")
    s.add_argument("best", help="best.pt from a training run (with --card-only: the shipped weights)")
    s.add_argument("--out", default=str(default_model), help="where the fp16 weights go (the card beside them)")
    s.add_argument("--card-only", action="store_true",
                   help="only record --serve-conf/--serve-imgsz/--quality-json on the card of weights already shipped")
    s.add_argument("--preset", help="the preset it was trained with (for the card)")
    s.add_argument("--data-desc", help="what it was trained on")
    s.add_argument("--hardware", help="what it was trained on, e.g. '2 CPU cores' (for the card)")
    s.add_argument("--eval-json", help="report from `wardrobe evaluate --json`")
    s.add_argument("--results-csv", help="the run's results.csv")
    s.add_argument("--serve-imgsz", type=int, help="the input size the workers run it at (default: the training size)")
    s.add_argument("--previous-card", help="the card of the weights this run continued from (epochs add up)")
    s.add_argument("--serve-conf", type=float, help="the item threshold the workers use (chosen from make quality)")
    s.add_argument("--quality-json", help="make quality's report at the served settings, for the card")
    s.add_argument("--pseudo-report", help="a student's data: pseudo_report.json from wardrobe pseudo-label")
    s.set_defaults(fn=cmd_ship)
