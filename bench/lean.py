"""`python -m bench.lean`: the lean CPU path (OpenVINO + NumPy, no torch) against the Ultralytics
path on the same int8 model, each in fresh processes as a worker would load it, in one run.

For each path, `--rounds` child processes, alternated (lean, Ultralytics, lean, ...) so that a
busy machine weighs on both alike. Each child, from the moment the parent starts it:
  - imports the worker's tasks and loads the segmenter: cold start, process start -> model ready;
  - segments `-n` photos one by one, each decoded when its turn comes as the worker does, and
    post-processes them (cut-out, colours, hash): ms a photo for segment() and for the rest;
  - reports its resident memory after them (VmRSS) and its peak (VmHWM), and which of torch and
    Ultralytics it had imported.
With `--lean-python`, the lean children run under that interpreter (an environment with the lean
set only, e.g. a venv of `pip install '.[api,worker]'`), and `--sizes` adds the installed size of
that environment and of this one. Prints the figures and the ratios lean / Ultralytics; writes JSON.

`--layouts 2x1,1x2` instead times the worker's layouts (processes x threads each) on one upload of
`-n` photos: the bare backend in that layout (the worker's segmenter, model and decoding only:
bench.pipeline.time_bare_layout) against real worker processes on PostgreSQL and Redis
(bench.pipeline.run_worker_pipeline; BENCH_REDIS picks the Redis database), and prints the ratio.
With `--baseline REF` it runs them for git's REF too, alternated with this tree (`layouts_against`).

`--parity` instead runs both paths in this process on the `-n` photos, at the worker's settings and
at validation's (conf 0.001, up to 300 detections, as Ultralytics' val): photos whose detections
are identical (classes, and masks to the pixel), and the largest score and box differences and the
smallest mask IoU over all. Identical detections at validation's settings give the same mask
mAP50(M) under any evaluator.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_VAL = ROOT.parent / "shared" / "datasets" / "ccp-fashionpedia" / "images"


def _status(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB -> MiB
    return float("nan")


def child(mode: str, photos: list[str], threads: int) -> dict:
    t0 = float(os.environ["BENCH_T0"])  # the parent's clock just before it started this process
    import worker.tasks  # noqa: F401 - what a worker process imports before its first task
    from dataclasses import replace

    from core.config import Settings

    s = Settings.from_env(segmenter="yolo", device="cpu", threads=threads, worker_concurrency=1)
    if mode == "lean":
        from segmentation.serving import get_segmenter

        seg = get_segmenter(s)
        assert type(seg).__name__ == "LeanSegmenter", type(seg)
    else:
        from segmentation.segmenter import YoloSegmenter

        seg = YoloSegmenter(replace(s, backend="openvino-int8"))
    ready = time.time() - t0
    import cv2

    from worker.colors import dhash, dominant_colors, small_rgba
    from worker.cutouts import make_cutout

    t_seg = t_post = 0.0
    items = 0
    for path in photos:
        rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        t1 = time.perf_counter()
        dets = seg.segment([rgb])[0]
        t2 = time.perf_counter()
        for d in dets:
            cut = make_cutout(rgb, d, s.cutout_format, s.cutout_quality, s.cutout_max_side)
            if cut is not None:
                thumb = small_rgba(cut.rgba)
                dominant_colors(thumb), dhash(thumb)
                items += 1
        t_seg += t2 - t1
        t_post += time.perf_counter() - t2
    n = len(photos)
    return {"mode": mode, "python": sys.executable, "ready_s": round(ready, 2), "photos": n, "items": items,
            "segment_ms_per_photo": round(1000 * t_seg / n, 2), "post_ms_per_photo": round(1000 * t_post / n, 2),
            "rss_mib": round(_status("VmRSS")), "peak_rss_mib": round(_status("VmHWM")),
            "imported": [m for m in ("torch", "ultralytics") if m in sys.modules]}


def run_child(mode: str, python: str, photos: list[str], threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDROBE_")}
    env["WARDROBE_LOG_LEVEL"] = "WARNING"
    env["BENCH_T0"] = repr(time.time())
    r = subprocess.run([python, "-m", "bench.lean", "--child", mode, "--threads", str(threads), *photos], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def du_mib(path: str) -> int:
    out = subprocess.run(["du", "-sm", path], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def parity(paths: list[str], threads: int) -> dict:
    from dataclasses import replace

    import cv2

    from core.config import Settings
    from segmentation.lean import LeanSegmenter
    from segmentation.segmenter import YoloSegmenter
    from segmentation.serving import lean_plan

    s = Settings.from_env(segmenter="yolo", device="cpu", threads=threads, worker_concurrency=1, backend="openvino-int8")
    lean, ultra = LeanSegmenter(s, *lean_plan(s)), YoloSegmenter(s)
    out = {}
    for name, over in (("serving", {}), ("validation", {"conf": 0.001, "alternatives_conf": 0.001, "max_det": 300})):
        lean.settings, ultra.settings = replace(lean.settings, **over), replace(ultra.settings, **over)
        same = dets = 0
        worst = {"score": 0.0, "box_px": 0.0, "mask_iou": 1.0}
        for path in paths:
            rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
            a, b = lean.candidates([rgb])[0], ultra.candidates([rgb])[0]
            if a is None or b is None:
                same += a is None and b is None
                continue
            dets += len(b.classes)
            if a.classes.tolist() != b.classes.tolist() or a.masks.shape != b.masks.shape:
                worst["mask_iou"] = 0.0
                continue
            same += bool((a.masks == b.masks).all())
            worst["score"] = max(worst["score"], float(abs(a.confs - b.confs).max()))
            worst["box_px"] = max(worst["box_px"], float(abs(a.boxes - b.boxes).max()))
            inter = (a.masks & b.masks).reshape(len(a.masks), -1).sum(1)
            union = (a.masks | b.masks).reshape(len(a.masks), -1).sum(1)
            worst["mask_iou"] = min(worst["mask_iou"], float((inter / np.maximum(union, 1)).min()))
        out[name] = {"photos": len(paths), "identical_photos": same, "detections": dets, **worst}
        print(f"{name:11} settings: {same}/{len(paths)} photos identical ({dets} detections); largest score difference "
              f"{worst['score']:.2g}, box difference {worst['box_px']:.2g} px; smallest mask IoU {worst['mask_iou']:.4f}",
              flush=True)
    return out


def time_layouts(layouts: list[tuple[int, int]], paths: list[Path]) -> dict:
    import tempfile

    from bench.pipeline import run_worker_pipeline, time_bare_layout
    from core.config import Settings

    settings = Settings.from_env(segmenter="yolo")
    tmp = Path(tempfile.mkdtemp(prefix="wardrobe-bench-lean-"))
    out = {}
    for procs, threads in layouts:
        bare = time_bare_layout(settings, paths, procs, threads)
        workers = run_worker_pipeline(paths, procs, tmp, threads=threads, tag="-lean")
        out[f"{procs}x{threads}"] = {"bare": bare, "workers": workers,
                                     "workers_vs_bare_same_layout": round(workers["photos_per_s"] / bare["photos_per_s"], 3)}
        print(f"{procs} process(es) x {threads} thread(s): bare {bare['photos_per_s']} photos/s, workers "
              f"{workers['photos_per_s']} photos/s ({workers['status']}, {workers['items']} items): "
              f"{out[f'{procs}x{threads}']['workers_vs_bare_same_layout']}x", flush=True)
    best_bare = max(v["bare"]["photos_per_s"] for v in out.values())
    for v in out.values():
        v["workers_vs_best_bare"] = round(v["workers"]["photos_per_s"] / best_bare, 3)
    return out


def layouts_against(ref: str, layouts: str, photos: list[str], rounds: int) -> dict:
    """`--layouts` run by git's `ref` and by this tree, each in its own processes with its own code,
    alternated (ref, this, ref, this ...) so that a busy machine weighs on both alike; per layout the
    medians over the rounds, and this tree's figures over ref's."""
    import shutil
    import tempfile

    from bench.api import checkout

    folder = str(Path(photos[0]).resolve().parent)  # the baseline's children run in another folder
    tmp = Path(tempfile.mkdtemp(prefix="wardrobe-bench-layouts-"))
    try:
        trees = {"baseline": tmp / "baseline", "this_tree": ROOT}
        commit = checkout(ref, trees["baseline"])
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for r in range(rounds):
            for name, tree in trees.items():
                out = tmp / f"{name}-{r}" / "lean.json"  # --layouts writes lean-layouts.json beside it
                subprocess.run([sys.executable, "-m", "bench.lean", "--layouts", layouts, "-n", str(len(photos)),
                                "--photos", folder, "--out", str(out)], cwd=tree, check=True,
                               env=os.environ | {"PYTHONPATH": str(tree)})
                runs[name].append(json.loads(out.with_name("lean-layouts.json").read_text())["layouts"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = {"photos": len(photos), "folder": folder, "rounds": rounds,
              "baseline": {"ref": ref, "commit": commit}, "runs": runs, **summarize_layouts(runs)}
    for layout, med in report["median"].items():
        for name, m in med.items():
            print(f"{layout} {name:9}: bare {m['bare']:.1f} photos/s, workers {m['workers']:.1f} photos/s "
                  f"({m['workers_vs_bare_same_layout']}x)")
        print(f"{layout} this tree / {ref}: {report['this_tree_vs_baseline'][layout]}")
    return report


def summarize_layouts(runs: dict[str, list[dict]]) -> dict:
    """Per layout, each tree's median photos/s over its rounds (bare model, workers) and their ratio;
    and this tree's medians over the baseline's."""
    report: dict = {"median": {}, "this_tree_vs_baseline": {}}
    for layout in runs["this_tree"][0]:
        med = {name: {part: round(statistics.median(run[layout][part]["photos_per_s"] for run in rs), 2)
                      for part in ("bare", "workers")}
               for name, rs in runs.items()}
        for m in med.values():
            m["workers_vs_bare_same_layout"] = round(m["workers"] / m["bare"], 3)
        report["median"][layout] = med
        report["this_tree_vs_baseline"][layout] = {part: round(med["this_tree"][part] / med["baseline"][part], 3)
                                                   for part in ("bare", "workers")}
    return report


def _write_beside(out: str, name: str, report: dict) -> int:
    """Write a report under `name` in --out's folder (each mode has its own file); the exit status."""
    path = Path(out).with_name(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", choices=["lean", "ultralytics"], help=argparse.SUPPRESS)
    ap.add_argument("photos_", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--photos", default=str(SHARED_VAL if SHARED_VAL.exists() else ROOT / "examples" / "photos"))
    ap.add_argument("-n", type=int, default=100, help="photos per child (the folder's, repeated if it has fewer)")
    ap.add_argument("--rounds", type=int, default=2, help="children per path")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="OpenVINO threads (default: every core)")
    ap.add_argument("--lean-python", default=sys.executable, help="the interpreter of the lean children")
    ap.add_argument("--sizes", action="store_true", help="also the installed size of both environments (du)")
    ap.add_argument("--parity", action="store_true", help="compare the two paths' detections instead (see above)")
    ap.add_argument("--layouts", default="", help="e.g. 2x1,1x2: time the worker's layouts instead (see above)")
    ap.add_argument("--baseline", metavar="REF", help="with --layouts: also git's REF (e.g. main), alternated with "
                    "this tree for --rounds rounds; ratios this tree / REF")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "lean.json"))
    args = ap.parse_args(argv)
    if args.baseline and not args.layouts:
        ap.error("--baseline needs --layouts")
    if args.child:
        print(json.dumps(child(args.child, args.photos_, args.threads)))
        return 0

    folder = sorted(str(p) for p in Path(args.photos).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    photos = [folder[i % len(folder)] for i in range(args.n)]
    if args.parity:
        report = {"folder": args.photos, "parity": parity(photos, args.threads)}
        return _write_beside(args.out, "lean-parity.json", report)
    if args.layouts and args.baseline:
        from bench.provenance import stamp
        from core.config import DEFAULT_MODEL
        from segmentation.card import read_card

        report = layouts_against(args.baseline, args.layouts, photos, args.rounds)
        report["model_version"] = read_card(DEFAULT_MODEL).get("version")
        return _write_beside(args.out, "lean-layouts.json", stamp(report, "bench.lean", argv))
    if args.layouts:
        layouts = [tuple(int(v) for v in item.split("x")) for item in args.layouts.split(",")]
        report = {"photos": args.n, "folder": args.photos, "layouts": time_layouts(layouts, [Path(p) for p in photos])}
        for name, v in report["layouts"].items():
            print(f"{'workers_vs_bare_same_layout ' + name:50} {v['workers_vs_bare_same_layout']}")
            print(f"{'workers_vs_best_bare ' + name:50} {v['workers_vs_best_bare']}")
        return _write_beside(args.out, "lean-layouts.json", report)
    runs: dict[str, list[dict]] = {"lean": [], "ultralytics": []}
    for _ in range(args.rounds):
        runs["lean"].append(run_child("lean", args.lean_python, photos, args.threads))
        runs["ultralytics"].append(run_child("ultralytics", sys.executable, photos, args.threads))
    med = {mode: {k: statistics.median(r[k] for r in rs) for k in
                  ("ready_s", "segment_ms_per_photo", "post_ms_per_photo", "rss_mib", "peak_rss_mib")}
           for mode, rs in runs.items()}
    report = {"photos": args.n, "folder": args.photos, "threads": args.threads, "runs": runs, "median": med}
    lean, ultra = med["lean"], med["ultralytics"]
    report["ratios"] = {f"lean_vs_ultralytics_{k}": round(lean[k] / ultra[k], 3) for k in lean}
    if args.sizes:
        # the venv's own folder: its bin/python is a link to the system's interpreter, so no resolve()
        lean_env = str(Path(os.path.abspath(args.lean_python)).parents[1]) if args.lean_python != sys.executable else None
        report["sizes_mib"] = {"this_env": du_mib(sys.prefix), **({"lean_env": du_mib(lean_env)} if lean_env else {})}
        if lean_env:
            report["ratios"]["lean_env_vs_this_env_size"] = round(report["sizes_mib"]["lean_env"] / report["sizes_mib"]["this_env"], 3)

    print(f"{args.n} photos from {args.photos}, {args.threads} OpenVINO thread(s), {args.rounds} process(es) a path; medians")
    print(f"{'':14} {'ready s':>8} {'segment ms':>11} {'post ms':>8} {'RSS MiB':>8} {'peak MiB':>9}  imported")
    for mode, rs in runs.items():
        m = med[mode]
        print(f"{mode:14} {m['ready_s']:8.2f} {m['segment_ms_per_photo']:11.1f} {m['post_ms_per_photo']:8.1f} "
              f"{m['rss_mib']:8.0f} {m['peak_rss_mib']:9.0f}  {rs[0]['imported']}  ({rs[0]['python']})")
    for k, v in report.get("sizes_mib", {}).items():
        print(f"installed size, {k}: {v} MiB")
    for k, v in report["ratios"].items():
        print(f"{k:50} {v}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
