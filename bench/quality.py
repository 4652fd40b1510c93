"""`make quality`: the catalogue as a user sees it, on labelled photos.

    python -m bench.quality [--images DIR] [--labels instances_val.json] [--limit N]
                            [--url URL --token TOKEN] [--json bench/out/quality.json]

Zips the labelled photos, uploads them through the real API to a worker (by default both
started here on the embedded default, as `make demo` runs them; `--url/--token` use a running
deployment), waits for the job, reads the items back over the API as a client does
(`GET /v1/items`, default filters) and the stored photos' sizes (`GET /v1/jobs/<id>/photos`), and
scores the items against the labels (training/quality.py): garments found, found with the right
class, extra and second items per photo, mask IoU and boundary F of the found garments, per class,
items per photo and the seconds from upload to the job's end. Prints a table; writes JSON.

The default labels are the shared val split (../shared/datasets/ccp-fashionpedia): 100 photos
the model never trained on.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.provenance import stamp
from core.config import REPO_ROOT
from training.quality import (Found, LabelledPhoto, garments_at, load_labels, print_report, rasterize_polygons,
                              score_photo, summarise, summarise_alone)

SHARED = REPO_ROOT.parent / "shared" / "datasets" / "ccp-fashionpedia"


def measure(client, photos: list[Path], labels: dict, alone: bool = False) -> dict:
    """Upload `photos` through `client`'s API, wait, and score what the catalogue holds (`alone`:
    photos of garments on their own, scored by the kind of their most confident item too)."""
    from cli.demo import zip_photos

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        job = client.upload(zip_photos(photos, Path(tmp) / "quality.zip"), progress=False)
    job = client.wait(job["id"], progress=False)
    seconds = time.monotonic() - t0
    if job["status"] not in ("succeeded", "partially_succeeded"):
        raise SystemExit(f"job {job['id']} {job['status']}: {job['errors'][:3]}")
    items = client.all_items(job_id=job["id"])
    stored = {p["id"]: p for p in client.all_pages(f"/v1/jobs/{job['id']}/photos", "photos")}
    by_photo: dict[str, list[dict]] = {}
    for it in items:
        by_photo.setdefault(it["photo_id"], []).append(it)
    scores, all_found, all_garments = [], [], []
    for pid, p in stored.items():
        if p["status"] != "done":
            raise SystemExit(f"photo {p['entry']} is {p['status']}: {p['error']}")
        w, h = p["width"], p["height"]
        garments = garments_at(labels[p["entry"]], w, h)
        found = [Found(it["class_id"], it["confidence"], rasterize_polygons(it["mask"]["polygons"], w, h))
                 for it in by_photo.get(pid, [])]
        scores.append(score_photo(garments, found))
        all_found.append(found)
        all_garments.append(garments)
    if alone:
        return summarise_alone(scores, all_found, all_garments)
    report = summarise(scores)
    # every item's class, confidence and outcome: what `wardrobe thresholds` chooses per-class thresholds from
    report["items_scored"] = [[k, round(c, 4), o] for s in scores for c, o, k in s.outcomes]
    report.update(seconds=round(seconds, 1), job_id=job["id"],
                  model_version=items[0]["model_version"] if items else None)
    return report


def alone_photos(labels_json: Path, images: Path, count: int, tmp: Path) -> tuple[list[Path], dict]:
    """`count` photos of garments on their own, synthesized from the val split's garments only
    (training/synth.py), and their labels as load_labels gives them."""
    from training.fashionpedia import import_split
    from training.synth import synthesize_split
    from training.yolo_labels import read_yolo_rings

    val = tmp / "val-yolo"
    import_split(labels_json, images, val, "val")
    out = tmp / "alone"
    synthesize_split(val, "val", out / "images", out / "labels", count, seed=1)
    photos, labels = [], {}
    for img in sorted((out / "images").iterdir()):
        from PIL import Image

        with Image.open(img) as im:
            w, h = im.size
        garments = [(c, [ring.reshape(-1).tolist()])
                    for c, ring in read_yolo_rings(out / "labels" / (img.stem + ".txt"), w, h)]
        photos.append(img)
        labels[img.name] = LabelledPhoto(img.name, w, h, garments)
    return photos, labels


def measure_alone(client, labels_json: Path, images: Path, count: int, tmp: Path) -> dict:
    photos, labels = alone_photos(labels_json, images, count, tmp)
    return measure(client, photos, labels, alone=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=str(SHARED / "images"))
    ap.add_argument("--labels", default=str(SHARED / "instances_val.json"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N labelled photos")
    ap.add_argument("--url", help="a running API (default: start one here on the embedded default)")
    ap.add_argument("--token")
    ap.add_argument("--data-dir", help="where the embedded services keep their data (default: a temporary folder)")
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--json", default="bench/out/quality.json")
    ap.add_argument("--alone", type=int, default=100,
                    help="also score N photos of garments on their own, synthesized from the val labels (0: not)")
    a = ap.parse_args(argv)
    from cli.client import ApiClient

    if not Path(a.labels).exists():
        raise SystemExit(f"no labels at {a.labels} (the shared val split is only on developers' machines and CI)")
    labels = load_labels(a.labels, images_dir=a.images)
    names = sorted(labels)[: a.limit or None]
    photos = [Path(a.images) / n for n in names]
    if a.url:
        report = measure(ApiClient(a.url, a.token or os.environ.get("WARDROBE_TOKEN")), photos, labels)
    else:
        from cli.demo import embedded_stack

        with tempfile.TemporaryDirectory(prefix="wardrobe-quality-") as tmp:
            data_dir = Path(a.data_dir).resolve() if a.data_dir else Path(tmp)
            # the served settings come from the environment and the model card, as for any deployment
            passed = tuple(k for k in os.environ if k.startswith("WARDROBE_") and k != "WARDROBE_DATA_DIR")
            with embedded_stack(data_dir, a.port, pass_env=passed) as (url, token, _procs):
                client = ApiClient(url, token)
                report = measure(client, photos, labels)
                if a.alone:
                    report["alone"] = measure_alone(client, Path(a.labels), Path(a.images), a.alone, Path(tmp))
    report["settings"] = {k: v for k, v in os.environ.items() if k.startswith("WARDROBE_")}
    print_report(report)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(stamp(report, "bench.quality"), indent=2))
        print(f"\nwrote {a.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
