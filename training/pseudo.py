"""`wardrobe pseudo-label`: the tagged photos labelled by the teacher, written with the labelled
ones (and the synthesized single-garment photos) as one YOLO-seg dataset, with a JSON report.

What a pseudo-label must agree with:
- **the photo's tags**: only garments of a class a person tagged on that photo are kept (tags
  outside the 23 classes, such as sock, glove or tie, are dropped; the photo keeps its others);
- **its class's threshold**, chosen on the labelled val photos for precision (`training.teacher`);
- **the labelled data's conventions**: one instance per class and photo, in as many pieces as it
  takes, except footwear, which is one instance per connected region (two touching feet stay one).
Tags also correct the teacher's class where it is weakest: a body garment (upper body, lower body,
whole body) of a class the photo's tags do not name takes the one tagged class of its supercategory
that nothing else was found for (a "shirt" on a photo tagged "top" and not "shirt" is the top).

A photo is dropped when it has no tag in the 23 classes, when nothing passes, when a tagged body
garment is still not found, or when fewer than half of its tagged classes were found: every
garment left unlabelled on a kept photo is taught as background, and a body garment is large
(a missed top teaches a torso of background), while a missed watch or belt costs little.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np

from core.taxonomy import BY_NAME, NAMES
from training.teacher import Garment, choose_thresholds, match
from training.yolo_labels import label_lines_of, load_rgb, read_yolo_masks

log = logging.getLogger("wardrobe.training")

SHOE = BY_NAME["shoe"].id
BODY = ("upperbody", "lowerbody", "wholebody")
MIN_REGION_PX = 40  # a footwear region smaller than this is a speck of a mask, not a shoe
MIN_FOUND_SHARE = 0.5


def as_labelled(garments: list[Garment]) -> list[tuple[int, np.ndarray]]:
    """The kept garments in the labelled data's convention: one mask per class (their union), and
    footwear split into connected regions."""
    import cv2

    by_class: dict[int, np.ndarray] = {}
    for g in garments:
        by_class[g.class_id] = by_class[g.class_id] | g.mask if g.class_id in by_class else g.mask.copy()
    out = []
    for c, m in sorted(by_class.items()):
        if c != SHOE:
            out.append((c, m))
            continue
        n, lab, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
        out += [(c, lab == i) for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= MIN_REGION_PX]
    return out


def by_tags(garments: list[Garment], classes: set[int]) -> tuple[list[Garment], list[tuple[int, int]]]:
    """The garments whose class the tags name, plus body garments of an untagged class relabelled to
    the one tagged, unfound class of their supercategory. Returns them and the (from, to) relabels."""
    from core.taxonomy import CLASSES

    kept = [g for g in garments if g.class_id in classes]
    found = {g.class_id for g in kept}
    relabels = []
    for g in garments:
        sup = CLASSES[g.class_id].supercategory
        if g.class_id in classes or sup not in BODY:
            continue
        open_ = [c for c in classes if CLASSES[c].supercategory == sup and c not in found]
        if len(open_) == 1:
            relabels.append((g.class_id, open_[0]))
            kept.append(Garment(open_[0], g.score, g.mask))
            found.add(open_[0])
    return sorted(kept, key=lambda g: -g.score), relabels


def tag_classes(tags: list[str]) -> tuple[set[int], list[str]]:
    """The catalogue classes a photo's tags name, and the tags outside the catalogue."""
    ids, other = set(), []
    for t in tags:
        c = BY_NAME.get(t)
        if c is None:
            other.append(t)
        else:
            ids.add(c.id)
    return ids, other


def val_thresholds(teacher, val_images: Path, val_labels: Path, precision: float, limit: int | None = None) -> dict:
    """Per-class thresholds from the teacher's fused garments on the labelled val photos, with the
    tag filter simulated by the photos' own label classes."""
    scored = []
    photos = sorted(p for p in val_images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
    for i, path in enumerate(photos, 1):
        rgb = load_rgb(path)
        h, w = rgb.shape[:2]
        truth = read_yolo_masks(val_labels / (path.stem + ".txt"), w, h)
        present = {c for c, _ in truth}
        garments = [g for g in teacher.garments(rgb) if g.class_id in present]
        scored += [(g.class_id, g.score, ok) for g, ok in zip(garments, match(garments, truth))]
        if i % 20 == 0:
            log.info("thresholds: %d/%d val photos", i, len(photos))
    return choose_thresholds(scored, precision)


def pseudo_label(teacher, images: Path, tags: dict[str, list[str]], thresholds: dict, out_images: Path,
                 out_labels: Path, limit: int | None = None) -> dict:
    """Label the tagged photos into out_images/out_labels; returns the report's counts."""
    out_images.mkdir(parents=True, exist_ok=True)
    out_labels.mkdir(parents=True, exist_ok=True)
    per_class = {int(c): v["threshold"] for c, v in thresholds["per_class"].items()}
    pooled = thresholds["pooled"]
    from core.taxonomy import CLASSES

    instances, tagged, found, dropped, outside = Counter(), Counter(), Counter(), Counter(), Counter()
    relabelled: Counter = Counter()
    kept_photos = 0
    names = sorted(tags)[:limit]
    for i, name in enumerate(names, 1):
        classes, other = tag_classes(tags[name])
        outside.update(other)
        tagged.update(classes)
        if not classes:
            dropped["no tag in the 23 classes"] += 1
            continue
        rgb = load_rgb(images / name)
        h, w = rgb.shape[:2]
        passed = [g for g in teacher.garments(rgb)
                  if per_class.get(g.class_id, pooled) is not None and g.score >= per_class.get(g.class_id, pooled)]
        kept, relabels = by_tags(passed, classes)
        got = {g.class_id for g in kept}
        found.update(got)
        if not kept:
            dropped["nothing passed its class's threshold"] += 1
            continue
        if any(CLASSES[c].supercategory in BODY and c not in got for c in classes):
            dropped["a tagged body garment not found"] += 1
            continue
        relabelled.update(f"{NAMES[a]} -> {NAMES[b]}" for a, b in relabels)
        if len(got) < MIN_FOUND_SHARE * len(classes):
            dropped["fewer than half the tagged classes found"] += 1
            continue
        lines = label_lines_of(as_labelled(kept), w, h)
        if not lines:
            dropped["masks too small to trace"] += 1
            continue
        dst = out_images / f"pseudo-{name}"
        if not dst.exists():
            os.symlink((images / name).resolve(), dst)
        (out_labels / f"pseudo-{Path(name).stem}.txt").write_text("\n".join(lines) + "\n")
        kept_photos += 1
        instances.update(int(line.split()[0]) for line in lines)
        if i % 50 == 0:
            log.info("pseudo-labels: %d/%d photos, %d kept", i, len(names), kept_photos)
    return _report(len(names), kept_photos, dropped, instances, tagged, found, outside, relabelled)


def _report(photos: int, kept_photos: int, dropped: Counter, instances: Counter, tagged: Counter, found: Counter,
            outside: Counter, relabelled: Counter) -> dict:
    return {
        "photos": photos,
        "photos_kept": kept_photos,
        "photos_dropped": dict(dropped),
        "instances": sum(instances.values()),
        "instances_per_class": {NAMES[c]: n for c, n in sorted(instances.items())},
        "tagged_photos_per_class": {NAMES[c]: n for c, n in sorted(tagged.items())},
        "found_photos_per_class": {NAMES[c]: n for c, n in sorted(found.items())},
        # tagged classes the teacher never found on any photo: where it is blind
        "tagged_never_found": sorted(NAMES[c] for c in tagged if c not in found),
        "tags_outside_the_23": dict(outside),
        "relabelled_by_tags": dict(relabelled.most_common()),
    }


def link_labelled(src: Path, dst: Path, split: str) -> int:
    """The labelled split's photos and labels into the combined dataset (symlinks and copies)."""
    (dst / "images" / split).mkdir(parents=True, exist_ok=True)
    (dst / "labels" / split).mkdir(parents=True, exist_ok=True)
    n = 0
    for img in sorted((src / "images" / split).iterdir()):
        target = dst / "images" / split / img.name
        if not target.exists():
            os.symlink(img.resolve(), target)
        label = src / "labels" / split / (img.stem + ".txt")
        (dst / "labels" / split / (img.stem + ".txt")).write_text(label.read_text() if label.exists() else "")
        n += 1
    return n


def build(weights: Path, labelled: Path, unlabelled: Path, out: Path, precision: float = 0.75,
          synth_train: int = 0, synth_val: int = 0, seed: int = 0, limit: int | None = None,
          threads: int = 2, sizes: tuple[int, ...] | None = None) -> dict:
    """The whole command: thresholds on val, pseudo-labels, synthesized photos, data.yaml, report."""
    from training.fashionpedia import write_data_yaml
    from segmentation.segmenter import model_version
    from training.synth import synthesize_split
    from training.teacher import SIZES, Teacher

    out.mkdir(parents=True, exist_ok=True)
    sizes = tuple(sizes or SIZES)
    teacher = Teacher(weights, sizes=sizes, threads=threads)
    thresholds = val_thresholds(teacher, labelled / "images" / "val", labelled / "labels" / "val", precision, limit)
    log.info("thresholds: %s", {NAMES[int(c)]: v["threshold"] for c, v in thresholds["per_class"].items()})
    report = {
        "teacher": {"weights": str(weights), "version": model_version(weights), "sizes": list(sizes), "mirrored": True, "views": teacher.n_views},
        "thresholds": {**thresholds, "per_class": {NAMES[int(c)]: v for c, v in thresholds["per_class"].items()}},
        "labelled": {"train": link_labelled(labelled, out, "train"), "val": link_labelled(labelled, out, "val")},
    }
    tags = json.loads((unlabelled / "tags.json").read_text())
    report["pseudo"] = pseudo_label(teacher, unlabelled, tags, thresholds, out / "images" / "train",
                                    out / "labels" / "train", limit)
    if synth_train:
        report["synth_train"] = synthesize_split(labelled, "train", out / "images" / "train", out / "labels" / "train",
                                                 synth_train, seed=seed)
    if synth_val:
        alone = out / "alone"
        report["synth_val"] = synthesize_split(labelled, "val", alone / "images" / "val", alone / "labels" / "val",
                                               synth_val, seed=seed + 1)
        write_data_yaml(alone)
    report["data_yaml"] = str(write_data_yaml(out))
    (out / "pseudo_report.json").write_text(json.dumps(report, indent=2))
    return report
