"""`wardrobe ship`: weights continued from the shipped ones get a card that adds up their runs."""
from __future__ import annotations

import json

from core.config import DEFAULT_MODEL


def results_csv(tmp_path, rows):
    """An Ultralytics results.csv with the columns `wardrobe ship` reads."""
    cols = ["epoch", "time", "metrics/mAP50(M)", "metrics/mAP50-95(M)", "metrics/mAP50(B)", "metrics/mAP50-95(B)",
            "val/seg_loss", "val/cls_loss"]
    csv = tmp_path / "results.csv"
    csv.write_text(",".join(cols) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return csv


def ship_run_file(tmp_path, name, rows):
    """Ship a copy of the shipped weights as the run's weights/`name`, continued from the shipped card;
    returns the new card and the previous one."""
    import shutil

    from training.ship import ship

    tmp_path.mkdir(parents=True, exist_ok=True)
    csv = results_csv(tmp_path, rows)
    weights = tmp_path / "weights" / name
    weights.parent.mkdir()
    shutil.copyfile(DEFAULT_MODEL, weights)
    card = ship(weights, tmp_path / "models" / "w.pt", preset="cpu-continue", data="ccp", hardware="2-core CPU",
                results_csv=csv, previous_card=DEFAULT_MODEL.with_suffix(".json"))
    return card, json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())


def test_ship_a_continued_run_counts_every_run_and_records_the_served_settings(tmp_path):
    from training.ship import ship

    rows = [[1, 60.0, 0.30, 0.15, 0.32, 0.18, 2.9, 1.6], [2, 125.5, 0.33, 0.16, 0.35, 0.19, 2.8, 1.5]]
    csv = results_csv(tmp_path, rows)
    quality = tmp_path / "quality.json"
    quality.write_text(json.dumps({"photos": 100, "garments": 556, "found": 0.55, "right_class": 0.47,
                                   "extra_items_per_photo": 0.9, "second_items_per_photo": 0.0, "mask_iou": 0.79,
                                   "boundary_f": 0.61, "items_per_photo": 4.2, "per_class": {}}))
    out = tmp_path / "models" / "w.pt"
    card = ship(DEFAULT_MODEL, out, preset="cpu-continue", data="ccp", hardware="2-core CPU", results_csv=csv,
                previous_card=DEFAULT_MODEL.with_suffix(".json"), serve_conf=0.3, quality_json=quality)
    previous = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    assert card["training_runs"][-1]["epochs"] == 2 and card["training_runs"][-1]["minutes"] == 2
    assert len(card["training_runs"]) == len(previous.get("training_runs") or [previous]) + 1
    assert card["epochs_total"] == sum(r["epochs"] for r in card["training_runs"])
    assert card["epochs_total"] == (previous.get("epochs_total") or previous["training"]["epochs_run"]) + 2
    assert previous["version"] in card["architecture"]
    assert card["serve_conf"] == 0.3 and card["catalogue_quality"]["found"] == 0.55
    assert json.loads(out.with_suffix(".json").read_text()) == card
    doc = (out.parent / "README.md").read_text()
    assert "| 55.0 % | 47.0 % | 0.9 | 0.0 | 0.79 | 0.61 |" in doc and "cpu-continue" in doc


def test_a_run_shipped_from_best_pt_counts_the_epochs_up_to_its_best(tmp_path):
    """best.pt holds the best epoch's weights, not the last's: the run adds only the epochs up to it."""
    rows = [[1, 60.0, 0.30, 0.15, 0.32, 0.18, 2.9, 1.6], [2, 120.0, 0.36, 0.19, 0.38, 0.21, 2.7, 1.4],
            [3, 180.0, 0.33, 0.16, 0.35, 0.19, 2.8, 1.5]]
    card, previous = ship_run_file(tmp_path, "best.pt", rows)
    run = card["training_runs"][-1]
    assert (run["epochs"], run["epochs_run"], card["training"]["best_epoch"]) == (2, 3, 2)
    assert card["epochs"] == 2
    assert card["epochs_total"] == previous["epochs_total"] + 2


def test_card_only_update_keeps_the_weights_and_refuses_a_card_of_other_weights(tmp_path):
    import shutil

    import pytest

    from training.ship import sha256, update_card

    w = tmp_path / "w.pt"
    shutil.copyfile(DEFAULT_MODEL, w)
    shutil.copyfile(DEFAULT_MODEL.with_suffix(".json"), w.with_suffix(".json"))
    before = sha256(w)
    q = tmp_path / "q.json"
    q.write_text(json.dumps({"found": 0.5, "right_class": 0.4, "extra_items_per_photo": 1.0,
                             "second_items_per_photo": 0.1, "mask_iou": 0.78, "boundary_f": 0.6}))
    card = update_card(w, serve_conf=0.22, quality_json=q)
    assert sha256(w) == before and card["serve_conf"] == 0.22 and card["catalogue_quality"]["boundary_f"] == 0.6
    assert json.loads(w.with_suffix(".json").read_text())["serve_conf"] == 0.22
    w.write_bytes(b"other weights")
    with pytest.raises(SystemExit):
        update_card(w, serve_conf=0.3)


def test_a_run_shipped_from_an_epoch_checkpoint_counts_the_epochs_up_to_it(tmp_path):
    """Ultralytics' save_period files are named for its 0-based epoch counter: epoch1.pt holds the
    second epoch's weights. Shipping one (chosen by mask mAP50, not by Ultralytics' fitness) adds the
    epochs up to it and records that epoch's validation, not the fitness-best one's."""
    rows = [[1, 60.0, 0.30, 0.15, 0.32, 0.18, 2.9, 1.6], [2, 120.0, 0.38, 0.17, 0.38, 0.19, 2.7, 1.4],
            [3, 180.0, 0.36, 0.20, 0.37, 0.22, 2.8, 1.5]]
    card, previous = ship_run_file(tmp_path, "epoch1.pt", rows)
    run = card["training_runs"][-1]
    assert (run["epochs"], run["epochs_run"], card["training"]["best_epoch"]) == (2, 3, 2)
    assert card["training"]["best_epoch_val"]["mAP50(M)"] == 0.38
    assert card["epochs"] == 2 and card["epochs_total"] == previous["epochs_total"] + 2


def test_an_epoch_checkpoint_from_another_run_is_refused(tmp_path):
    """epoch7.pt with a results.csv of one epoch: the card would describe other weights, so nothing ships."""
    import pytest

    with pytest.raises(SystemExit, match="no row for epoch 8"):
        ship_run_file(tmp_path, "epoch7.pt", [[1, 60.0, 0.30, 0.15, 0.32, 0.18, 2.9, 1.6]])
    assert not (tmp_path / "models").exists()  # nothing was written in place of the shipped weights


def test_best_pt_is_the_epoch_ultralytics_fitness_picks(tmp_path):
    """Ultralytics 8.4 keeps best.pt by mask + box mAP50-95 alone. Epoch 2 has the higher mAP50 and
    the older 0.1/0.9 blend would pick it; Ultralytics saved epoch 3."""
    rows = [[1, 60.0, 0.30, 0.15, 0.32, 0.18, 2.9, 1.6], [2, 120.0, 0.40, 0.22, 0.42, 0.24, 2.7, 1.4],
            [3, 180.0, 0.36, 0.225, 0.38, 0.24, 2.8, 1.5]]
    card, _ = ship_run_file(tmp_path, "best.pt", rows)
    assert card["training"]["best_epoch"] == 3 and card["training"]["best_epoch_val"]["mAP50(M)"] == 0.36


def test_an_epoch_checkpoint_of_an_unvalidated_epoch_records_no_validation(tmp_path):
    """With validation every 3 epochs, epoch 4's row repeats epoch 3's figures: they are not epoch 4's."""
    rows = [[1, 60.0, 0, 0, 0, 0, 0, 0], [2, 120.0, 0, 0, 0, 0, 0, 0],  # before the first validation
            [3, 180.0, 0.36, 0.20, 0.37, 0.22, 2.8, 1.5], [4, 240.0, 0.36, 0.20, 0.37, 0.22, 2.8, 1.5]]
    card, _ = ship_run_file(tmp_path, "epoch3.pt", rows)
    assert card["training"]["best_epoch"] == 4 and card["training"]["best_epoch_val"] is None
    card, _ = ship_run_file(tmp_path / "again", "epoch2.pt", rows)
    assert card["training"]["best_epoch_val"]["mAP50(M)"] == 0.36  # epoch 3 was validated
    card, _ = ship_run_file(tmp_path / "first", "epoch0.pt", rows)
    assert card["training"]["best_epoch_val"] is None


def test_a_student_s_card_records_its_teacher_round_and_data(tmp_path):
    """Shipped with `--pseudo-report`, the card says what the student saw; a student taught by the model it
    continued from is one round further than that model."""
    from training.ship import ship

    previous = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    report = {"teacher": {"version": previous["version"], "sizes": [384], "mirrored": True},
              "thresholds": {"precision_target": 0.75}, "labelled": {"train": 804, "val": 100},
              "pseudo": {"photos": 794, "photos_kept": 354, "instances": 1605, "photos_dropped": {"x": 440}},
              "synth_train": {"photos": 400}}
    path = tmp_path / "pseudo_report.json"
    path.write_text(json.dumps(report))
    out = tmp_path / "models" / "w.pt"
    card = ship(DEFAULT_MODEL, out, preset="cpu-student-384", data="ccp + pseudo", hardware="2-core CPU",
                previous_card=DEFAULT_MODEL.with_suffix(".json"), pseudo_report=path)
    w = card["weak_supervision"]
    assert w["round"] == (previous.get("weak_supervision") or {}).get("round", 0) + 1
    assert w["teacher"]["version"] == previous["version"] and w["pseudo_photos"] == 354 and w["synthesized_photos"] == 400
    assert "804 labelled + 354 pseudo-labelled (1605 instances, of 794 tagged) + 400 synthesized" in \
        (out.parent / "README.md").read_text()
    report["teacher"]["version"] = "someone-else"
    path.write_text(json.dumps(report))
    other = ship(DEFAULT_MODEL, tmp_path / "m2" / "w.pt", preset="cpu-student-384", data="d", hardware="h",
                 previous_card=DEFAULT_MODEL.with_suffix(".json"), pseudo_report=path)
    assert other["weak_supervision"]["round"] == 1


def test_a_weight_soup_s_card_names_what_it_averaged_and_the_run_s_last_epoch(tmp_path):
    """A soup of the shipped weights and a run's last.pt (`wardrobe soup`) shipped with that run's
    results.csv: the card says it is a soup, of what, and takes the run's last epoch, not its best."""
    import pytest

    from training.ship import ship
    from training.soup import soup

    run = tmp_path / "run" / "weights"
    run.mkdir(parents=True)
    for name in ("last.pt", "epoch0.pt"):  # files of their own (not copies of the previous weights' bytes)
        soup([DEFAULT_MODEL, DEFAULT_MODEL], run / name)
    made = tmp_path / "soup.pt"
    soup([DEFAULT_MODEL, run / "last.pt"], made)
    csv = results_csv(tmp_path, [(1, 60, 0.30, 0.18, 0.33, 0.20, 2.1, 1.4), (2, 120, 0.41, 0.25, 0.44, 0.27, 2.0, 1.3),
                                 (3, 180, 0.38, 0.23, 0.40, 0.24, 2.0, 1.3)])
    out = tmp_path / "models" / "w.pt"
    card = ship(made, out, preset="cpu-student-384", data="d", hardware="h", results_csv=csv,
                previous_card=DEFAULT_MODEL.with_suffix(".json"))
    version = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())["version"]
    assert card["soup"] == {"of": [version, str(run / "last.pt")], "weights": [0.5, 0.5]}  # the previous weights by version
    assert card["training"]["best_epoch"] == 3 and card["training"]["best_epoch_val"]["mAP50(M)"] == 0.38
    assert f"| weight soup | 0.5 x `{version}` + 0.5 x `{run / 'last.pt'}` |" in (out.parent / "README.md").read_text()
    other = ship(made, tmp_path / "m3" / "w.pt", preset="p", data="d", hardware="h")  # no previous card: paths
    assert other["soup"]["of"] == [str(DEFAULT_MODEL), str(run / "last.pt")]
    # of a run's first epoch and a copy: that epoch; of two copies: which epoch is unknown, refused
    soup([run / "epoch0.pt", DEFAULT_MODEL], made)
    assert ship(made, tmp_path / "m4" / "w.pt", preset="p", data="d", hardware="h", results_csv=csv)["training"]["best_epoch"] == 1
    soup([DEFAULT_MODEL, DEFAULT_MODEL], made)
    with pytest.raises(SystemExit, match="which epoch"):
        ship(made, tmp_path / "m5" / "w.pt", preset="p", data="d", hardware="h", results_csv=csv)
    plain = ship(out, tmp_path / "m2" / "w.pt", preset="p", data="d", hardware="h", results_csv=csv)
    assert "soup" not in plain and plain["training"]["best_epoch"] == 2  # the shipped soup's file is plain weights
