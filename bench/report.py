"""The benchmarks page of the docs site, rendered at build time (docs/hooks.py) from the newest committed
record of each kind in docs/benchmarks/, each with its command, date, machine and model version.
`make bench-report` commits what the benchmarks left in bench/out/ as such records."""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

from bench import records
from bench.records import Record

ROOT = Path(__file__).resolve().parents[1]


def _speed_table(p: dict) -> list[str]:
    """Rows 1-3d: the bare model, the backend, and the pipeline in one process and through workers."""
    b, k, q, m = p["baseline_pytorch_fp32"], p["backend_bare"], p["pipeline"], p["machine"]
    lines = [
        "| | ms per photo | photos/s |",
        "|---|---|---|",
        f"| 1. bare `YOLO.predict`, PyTorch fp32 (baseline) | {b['ms_per_photo']} | {b['photos_per_s']} |",
        f"| 2. bare `YOLO.predict`, {p['backend']} (the worker's backend) | {k['ms_per_photo']} | {k['photos_per_s']} |",
    ]
    if "openvino_export_bare" in p:
        o = p["openvino_export_bare"]
        lines.append(f"| 2a. bare `YOLO.predict`, plain OpenVINO export ({m.get('openvino_cpu_precision')}): the candidate "
                     f"the default beat | {o['ms_per_photo']} | {o['photos_per_s']} |")
    if "openvino_int8_bare" in p:
        o = p["openvino_int8_bare"]
        lines.append(f"| 2a. bare `YOLO.predict`, the shipped int8 model: the candidate the default beat on this AMX CPU | "
                     f"{o['ms_per_photo']} | {o['photos_per_s']} |")
    if "backend_bare_worker_layout" in p:
        w = p["backend_bare_worker_layout"]
        lines.append(f"| 2b. bare `YOLO.predict`, {p['backend']}, in the workers' layout ({w['processes']} processes x "
                     f"{w['threads_each']} thread) | {w['ms_per_photo']} | {w['photos_per_s']} |")
    lines.append(f"| 3. pipeline end to end, in one process | {q['ms_per_photo']} | {q['photos_per_s']} |")
    if "pipeline_postgres_s3" in p:
        x = p["pipeline_postgres_s3"]
        lines.append(f"| 3s. the same on PostgreSQL and S3 over HTTP (moto's server, on the same cores) | {x['ms_per_photo']} | "
                     f"{x['photos_per_s']} |")
    for key, label in (("pipeline_workers", "3b"), ("pipeline_one_worker", "3c"), ("pipeline_workers_large", "3d")):
        if key in p:
            w = p[key]
            size = f", their model at imgsz {'/'.join(map(str, w['imgsz']))}" if w.get("imgsz") else ""
            lines.append(f"| {label}. pipeline through real workers, {w['processes']} process(es) x {w.get('threads_each', '?')} "
                         f"thread(s){size}, PostgreSQL + Redis, {w['photos']} photos in one upload | {w['ms_per_photo']} | "
                         f"{w['photos_per_s']} |")
    return lines


def pipeline_lines(p: dict, level: str = "##") -> list[str]:
    """One `make bench` record: the speed table, where a photo's time goes, the encoders, accuracy, ratios."""
    q = p["pipeline"]
    r = p["ratios"]
    lines = [f"{level} Inference and the pipeline (`make bench`)", ""]
    lines += _speed_table(p)
    lines += [
        "",
        f"Pipeline breakdown per photo (3): ingest {q['ingest_ms_per_photo']} ms, waiting for photos "
        f"{q['load_ms_per_photo']} ms, model {q['infer_ms_per_photo']} ms; post-processing (cut-outs, colours, hashes, "
        f"encoding, storage, rows) {q['post_ms_per_photo']} ms on its own thread, overlapping the model. "
        f"{q['items']} items from {q['photos']} photos.",
        "",
    ]
    if "pipeline_postgres_s3" in p:
        x = p["pipeline_postgres_s3"]
        lines += [f"On PostgreSQL and moto's S3 server (3s): ingest {x['ingest_ms_per_photo']} ms a photo, waiting on the "
                  f"cut-outs' uploads before writing rows {x['post_breakdown_ms_per_photo']['store']} ms a photo; the model "
                  f"{x['infer_ms_per_photo']} ms, slowed by moto's server on the same cores.", ""]
    if "post_breakdown_ms_per_photo" in q:
        pb = q["post_breakdown_ms_per_photo"]
        lines += [
            f"CPU time per photo (3), all threads of the process: {q['cpu_ms_per_photo']} ms, of which post-processing "
            f"{q['post_cpu_ms_per_photo']} ms (cut-out mask, crop and WebP encoding {pb['cutout']} ms; colours and hash "
            f"{pb['features']} ms; catalogue rows {pb['commit']} ms); uploads waited on {pb['store']} ms. The post-processing "
            "share below is post-processing CPU time over all the process's CPU time.",
            "",
        ]
    if "cutout_encoders" in p:
        enc = p["cutout_encoders"]
        lines += [f"Cut-out encoders, timed on {enc['cutouts']} cut-outs ({enc['mean_pixels']} pixels on average) of the "
                  "first val photos, one thread:", "", "| encoder | ms of CPU per cut-out | KiB per cut-out |", "|---|---|---|"]
        lines += [f"| {k} | {v['ms_per_cutout']} | {v['kib_per_cutout']} |" for k, v in enc.items() if isinstance(v, dict)]
        lines.append("")
    if "cutout_cap" in p:
        cap = p["cutout_cap"]
        lines += [f"Cut-outs of working-size photos ({cap['photos']} val photos upscaled to {cap['photo_size'][0]} x "
                  f"{cap['photo_size'][1]}, a stand-in for phone photos; mask, crop and encoding, one thread): at full size "
                  f"{cap['full_size']['ms_per_photo']} ms and {cap['full_size']['kib_per_photo']} KiB a photo; scaled to at most "
                  f"{cap['max_side']} px on the long side (`WARDROBE_CUTOUT_MAX_SIDE`, the default) {cap['capped']['ms_per_photo']} ms "
                  f"and {cap['capped']['kib_per_photo']} KiB.", ""]
    if "accuracy" in p:
        lines += ["| mask accuracy on the val labels | mAP50(M) | mAP50-95(M) |", "|---|---|---|"]
        for name, acc in p["accuracy"].items():
            lines.append(f"| {name} | {acc['map50_m']} | {acc['map50_95_m']} |")
        lines.append("")
    lines += ["| ratio | measured | target |", "|---|---|---|"]
    targets = {
        "backend_speedup_vs_pytorch_fp32": "≥ 2.5",
        "mask_map50_delta_backend_minus_pytorch": "within ±0.01",
        "pipeline_throughput_vs_bare_backend": "≥ 0.9",
        "pipeline_postgres_s3_throughput_vs_bare_backend": "",
        "worker_pipeline_throughput_vs_bare_backend_same_layout": "≥ 0.9",
        "worker_pipeline_throughput_vs_bare_backend": "",
        "large_upload_worker_pipeline_throughput_vs_bare_backend_same_layout": "",
        "one_worker_pipeline_throughput_vs_bare_backend": "",
        "post_processing_share_of_photo_time": "≤ 0.10",
        "cutout_encoding_alone_share_of_photo_time": "(floor of the line above)",
    }
    for key, v in r.items():
        lines.append(f"| {key.replace('_', ' ')} | {v} | {targets.get(key, '')} |")
    return lines


def api_lines(a: dict | None, level: str = "##") -> list[str]:
    """One `make bench-api` record: latency at a fixed rate per route, and the upload's memory."""
    lines = []
    if a:
        lines += [
            "",
            f"{level} The API under load (`make bench-api`)",
            "",
            f"gunicorn ({a.get('workers', 2)} workers x {a.get('threads', 8)} threads) on PostgreSQL; an open-loop client at {a['rate']:.0f} requests/s for "
            f"{a['seconds']:.0f} s; latency from each request's scheduled send time.",
            "",
            "| route | p50 ms | p90 ms | p99 ms | max ms | achieved req/s | errors | CPU ms a request: API, PostgreSQL |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, route in (("poll", "GET /v1/jobs/<id>"), ("catalogue", "GET /v1/items?limit=50 (2,000 items)")):
            x = a[name]
            cpu = f"{x['api_cpu_ms_per_request']}, {x.get('db_cpu_ms_per_request')}" if "api_cpu_ms_per_request" in x else ""
            lines.append(f"| {route} | {x['p50_ms']} | {x['p90_ms']} | {x['p99_ms']} | {x['max_ms']} | {x['achieved_rps']} | {x['errors']} | {cpu} |")
        if u := a.get("upload"):
            lines += ["", f"Upload of a {u['bytes'] / (1 << 30):.2f} GiB zip as a raw body: HTTP {u['status']} in {u['seconds']} s "
                      f"({u['mb_per_s']} MB/s); the serving process's RSS rose {u['rss_rise_mb']} MB above idle "
                      f"({u['idle_rss_mb']} MB). Target: under 100 MB."]
    return lines


def _provenance(rec: Record, shipped: str) -> list[str]:
    lines = ["| record | command | date | machine | model version |", "|---|---|---|---|---|",
             f"| [{rec.path.name}](benchmarks/{rec.path.name}) | {rec.command} | {rec.date} | {rec.machine} | "
             f"{rec.model} |", ""]
    if rec.model_version and rec.model_version != shipped:
        lines += ['!!! warning "Not the shipped model"',
                  f"    This record measured `{rec.model_version}`; the shipped model is `{shipped}`. No newer record of "
                  "this kind is committed.", ""]
    return lines


def quality_lines(q: dict) -> list[str]:
    pct = lambda x: f"{100 * x:.1f} %"  # noqa: E731
    lines = [f"{q['photos']} photos, {q['garments']} labelled garments, {q['items']} items kept "
             f"({q['items_per_photo']} a photo), {q.get('seconds', '?')} s.", "",
             "| found | right class | extra items / photo | second items / photo | mask IoU | boundary F (2 px) |",
             "|---|---|---|---|---|---|",
             f"| {pct(q['found'])} | {pct(q['right_class'])} | {q['extra_items_per_photo']} | "
             f"{q['second_items_per_photo']} | {q['mask_iou']} | {q['boundary_f']} |", ""]
    if q.get("per_class"):
        lines += ["| class | garments | found | right class |", "|---|---|---|---|"]
        lines += [f"| {name} | {c['garments']} | {pct(c['found'])} | {pct(c['right_class'])} |"
                  for name, c in q["per_class"].items()]
        lines.append("")
    if q.get("right_by_confidence"):
        lines += ["| item confidence | items | right |", "|---|---|---|"]
        lines += [f"| {b['from']}–{b['to']} | {b['items']} | {pct(b['right'])} |" for b in q["right_by_confidence"]]
        lines.append("")
    return lines


def chaos_lines(c: dict) -> list[str]:
    delay = c.get("standin_delay_ms", c.get("fake_delay_ms"))  # the records before bench.standin say fake_delay_ms
    lines = [f"{c['jobs']} jobs of {c['photos_per_job']} photos each, the stand-in model at {delay} ms a photo. "
             "Faults, seconds after the uploads:", ""]
    lines += [f"- {f['at']} s: {f['fault']}" for f in c.get("faults", [])]
    lines += ["", "| zip | fault-free | with faults | ended after the last fault | same photos and items |",
              "|---|---|---|---|---|"]
    for r in c.get("runs", []):
        ff, wf = r["fault_free"], r["with_faults"]
        lines.append(f"| {r['zip']} | {ff['status']}, {ff['seconds']} s, {ff['photos_done']} photos, {ff['item_rows']} items | "
                     f"{wf['status']}, {wf['seconds']} s, {wf['photos_done']} photos, {wf['item_rows']} items | "
                     f"{r['ended_after_last_fault_s']} s | {r['same_counts']} |")
    return lines + ["", f"The stale-job sweep re-sent {c.get('reaper_resent')} job(s); verdict: "
                    f"{'none lost, none doubled' if c.get('ok') else 'FAILED'}.", ""]


def scale_lines(s: dict) -> list[str]:
    lines = ["| worker processes | photos/s | × the first step | bottleneck |", "|---|---|---|---|"]
    lines += [f"| {x.get('processes')} | {x.get('photos_per_s')} | {x.get('photos_per_s_vs_first_step')} | "
              f"{x.get('bottleneck', '')} |" for x in s.get("steps", [])]
    return lines + ["", "[Scaling](scaling.md) reads these figures.", ""]


def other_size_lines(p: dict) -> list[str]:
    lines = _speed_table(p) + [""]
    if "accuracy" in p:
        lines += ["Mask mAP50 at this size: " + ", ".join(f"{n} {a['map50_m']}" for n, a in p["accuracy"].items()) + ".", ""]
    return lines + ["| ratio | measured |", "|---|---|"] + [f"| {k.replace('_', ' ')} | {v} |" for k, v in p["ratios"].items()]


def _md_text(line: str) -> str:
    """A rendered line with `<` outside code spans escaped: `GET /v1/jobs/<id>` is text, not an HTML tag."""
    parts = line.split("`")
    return "`".join(p.replace("<", "&lt;") if i % 2 == 0 else p for i, p in enumerate(parts))


def _generic_lines(d: dict) -> list[str]:
    return [f"- `{k}`: {v}" for k, v in d.items() if isinstance(v, (int, float, str, bool)) and k != "date"]


def layout_lines(d: dict) -> list[str]:
    """Photos/s of the bare model and of real workers per layout (processes x threads each); with a
    baseline, its row first."""
    lines = [f"One upload of {d.get('photos')} photos.", "",
             "| layout | code | bare model, photos/s | workers, photos/s | workers / bare |", "|---|---|---|---|---|"]
    if "median" in d:
        base = d.get("baseline") or {}
        for layout, med in d["median"].items():
            for name, m in med.items():
                commit = base.get("commit") if name == "baseline" else (d.get("recorded") or {}).get("commit")
                code = f"{'baseline' if name == 'baseline' else 'change'} `{commit}`"
                lines.append(f"| {layout} | {code} | {m['bare']} | {m['workers']} | {m['workers_vs_bare_same_layout']} |")
    else:
        for layout, v in d.get("layouts", {}).items():
            lines.append(f"| {layout} | | {v['bare']['photos_per_s']} | {v['workers']['photos_per_s']} | "
                         f"{v['workers_vs_bare_same_layout']} |")
    return lines


def lean_lines(d: dict) -> list[str]:
    """The lean path against the Ultralytics path: medians over the children, the ratios, the sizes."""
    med = d.get("median") or {}
    keys = ("ready_s", "segment_ms_per_photo", "post_ms_per_photo", "rss_mib", "peak_rss_mib")
    lines = [f"{d.get('photos')} photos a child, {d.get('threads')} OpenVINO thread(s); medians.", "",
             "| path | " + " | ".join(k.replace("_", " ") for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {mode} | " + " | ".join(str(round(m[k], 2)) for k in keys) + " |" for mode, m in med.items()]
    lines += [""] + [f"- installed size, {k.replace('_', ' ')}: {v} MiB" for k, v in (d.get("sizes_mib") or {}).items()]
    return lines + [f"- {k.replace('_', ' ')}: {v}" for k, v in (d.get("ratios") or {}).items()]


BODIES = {"quality": quality_lines, "lean-layouts": layout_lines, "lean": lean_lines, "api": lambda a: api_lines(a, "###")[3:], "chaos": chaos_lines, "scale": scale_lines}
NOT_MEASURED = {
    "scale": "No committed record: the run that [Scaling](scaling.md) reports (2026-11-30) kept its JSON in "
             "`bench/out/scale.json`, which git ignores, and it was not kept. `make bench-scale` then `make bench-report` "
             "commits the next one here.",
}


def benchmarks_page(root: Path = ROOT) -> str:
    card = json.loads((root / "models" / "wardrobe-yolov8s-seg.json").read_text())
    shipped, size = card["version"], card.get("serve_imgsz") or card.get("imgsz")
    recs = records.load(root / "docs" / "benchmarks")
    lines = ["# Benchmarks: the current figures", "",
             '!!! note "Generated"',
             "    Rendered at build time from the newest committed record of each kind in `docs/benchmarks/` "
             "(`bench/report.py`). Each section names its record, the command that made it, its date, machine and "
             "model version. [Speed, run by run](speed.md) tells the history and what set the defaults.", "",
             f"The shipped model is `{shipped}`, served at imgsz {size} (`models/wardrobe-yolov8s-seg.json`).", ""]
    for kind, (make, what) in records.KINDS.items():
        rec = records.newest(recs, kind, **({"imgsz": size} if kind == "pipeline" else {}))
        lines += [f"## {what[0].upper() + what[1:]} (`{make}`)", ""]
        if rec is None:
            lines += [NOT_MEASURED.get(kind, "No committed record of this kind yet."), ""]
            continue
        lines += _provenance(rec, shipped)
        body = pipeline_lines(rec.data, "###")[2:] if kind == "pipeline" else BODIES.get(kind, _generic_lines)(rec.data)
        lines += [_md_text(line) for line in body] + [""]
    sizes = sorted({r.data.get("imgsz") for r in recs if r.kind == "pipeline"} - {size, None})
    for other in sizes:
        rec = records.newest(recs, "pipeline", imgsz=other)
        lines += [f"## The pipeline at imgsz {other}", "", *_provenance(rec, shipped),
                  *map(_md_text, other_size_lines(rec.data)), ""]
    lines += ["## Every committed record", "",
              "Newest first. A record measured with settings other than the defaults (an experiment) says which; "
              "the sections above take the newest record at the defaults.", "",
              "| record | kind | date | machine | model version | imgsz | settings changed |", "|---|---|---|---|---|---|---|"]
    for rec in sorted(recs, key=lambda r: r.sort_key, reverse=True):
        lines.append(f"| [{rec.path.name}](benchmarks/{rec.path.name}) | {rec.kind} | {rec.date} | {rec.machine} | "
                     f"{rec.model} | {rec.data.get('imgsz', '')} | "
                     f"{', '.join(f'`{k}={v}`' for k, v in records.changed_settings(rec).items())} |")
    gpu = [r for r in recs if "GPU" in r.machine and "no GPU" not in r.machine]
    lines += ["", "## GPU", "", "Measured on a GPU: " + ", ".join(r.path.name for r in gpu) if gpu else
              "No committed record was measured on a GPU."]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Commit what the benchmarks left in bench/out/ as records under docs/benchmarks/ (a dated name, the
    machine's CPU in it), so the docs site renders them; prints each record written."""
    out, dest = ROOT / "bench" / "out", ROOT / "docs" / "benchmarks"
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(out.glob("*.json")):
        kind = records.kind_of(path)
        if kind is None:
            continue
        data = json.loads(path.read_text())
        when = ((data.get("recorded") or {}).get("date") or data.get("date") or "")[:10] or "undated"
        cpu = re.sub(r"[^a-z0-9]+", "-", ((data.get("recorded") or {}).get("machine") or data.get("machine") or {})
                     .get("cpu", "").lower()).strip("-")[:20]
        stem = path.stem if kind != "pipeline" or re.search(r"-\d+$", path.stem) else f"{path.stem}-{data.get('imgsz')}"
        target = dest / f"{stem}-{when}{'-' + cpu if cpu else ''}.json"
        shutil.copyfile(path, target)
        print(f"{path} -> {target.relative_to(ROOT)}", file=sys.stderr)
    print("make docs renders the newest record of each kind (docs/benchmarks.md)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
