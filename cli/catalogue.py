"""`wardrobe upload`, `jobs`, `cancel`, `items`, `delete`, `export`: the API's client commands, and how the
catalogue is printed (shared with the demo)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


# --- client -----------------------------------------------------------------

def _zip_dir(folder: Path, dst: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(folder.iterdir()):
            if p.is_file() and p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif"}:
                zf.write(p, p.name)
    return dst


def cmd_upload(a) -> int:
    import tempfile

    from cli import resume
    from cli.client import ApiClient

    c = ApiClient(a.url, a.token)
    path = source = Path(a.path)
    with tempfile.TemporaryDirectory() as tmp:
        if path.is_dir():
            path = _zip_dir(path, Path(tmp) / f"{path.name}.zip")  # the same photos make the same bytes
        job = None
        if a.resumable == "always" or (a.resumable == "auto" and path.stat().st_size >= resume.RESUMABLE_OVER):
            job = resume.upload(c, path, source)  # None: the API takes no resumable uploads
        if job is None:
            job = c.upload(path)
        print(f"job {job['id']} {job['status']}", file=sys.stderr)
        if a.wait:
            job = c.wait(job["id"])
    print(json.dumps(job, indent=2))
    if (note := duplicate_note(job)):
        print(note, file=sys.stderr)
    return 0 if job["status"] in ("queued", "running", "succeeded", "partially_succeeded") else 1


def duplicate_note(job: dict) -> str | None:
    """Say so when photos were skipped as already uploaded (else '0 items' reads as a failure)."""
    p = job["progress"]
    if not p["photos_duplicate"]:
        return None
    dup = p["photos_duplicate"]
    whole = "all " if dup == p["photos_total"] else ""
    return (f"{whole}{dup} photo{'' if dup == 1 else 's'} of this upload {'was' if dup == 1 else 'were'} already in "
            f"your catalogue (same file uploaded before): skipped, no new items from {'it' if dup == 1 else 'them'}")


def cmd_cancel(a) -> int:
    from cli.client import ApiClient

    job = ApiClient(a.url, a.token).delete(f"/v1/jobs/{a.job_id}")
    print(f"job {job['id']} {job['status']}")
    return 0


def cmd_delete(a) -> int:
    from cli.client import ApiClient

    c = ApiClient(a.url, a.token)
    for item_id in a.item_ids:
        c.delete(f"/v1/items/{item_id}")
        print(f"deleted item {item_id}")
    return 0


def cmd_jobs(a) -> int:
    from cli.client import ApiClient

    c = ApiClient(a.url, a.token)
    if a.job_id:
        job = c.wait(a.job_id) if a.wait else c.get(f"/v1/jobs/{a.job_id}")
        print(json.dumps(job, indent=2))
    else:
        for j in c.all_pages("/v1/jobs", "jobs"):
            p = j["progress"]
            print(f"{j['id']}  {j['status']:<20} {p['photos_done']}/{p['photos_total']} photos  {p['items_found']} items  {j['created_at']}")
    return 0


def cmd_export(a) -> int:
    """Start an export of the catalogue (or join the one under way), follow it, download the zip."""
    from cli.client import ApiClient

    c = ApiClient(a.url, a.token)
    e = c.post("/v1/exports")
    print(f"export {e['id']} {e['status']}", file=sys.stderr)
    e = c.wait_export(e["id"])
    if e["status"] != "succeeded":
        err = e.get("error") or {}
        print(f"export {e['id']} {e['status']}: {err.get('code')}: {err.get('message')}", file=sys.stderr)
        return 1
    out = Path(a.out or f"wardrobe-export-{e['id'][:8]}.zip")
    size = c.download(e["links"]["download"], out, total=e["size_bytes"])
    p = e["progress"]
    print(f"wrote {out}: {p['photos_done']} photos, {p['items_done']} items, {size} bytes "
          "(annotations.json is COCO; README.txt inside says what is where)", file=sys.stderr)
    print(out)
    return 0


def print_catalogue(items: list[dict], out=sys.stdout) -> None:
    by_cat: dict[str, list[dict]] = {}
    for it in items:
        by_cat.setdefault(it["category"], []).append(it)
    cats = len(by_cat)
    print(f"{len(items)} item{'' if len(items) == 1 else 's'} in {cats} categor{'y' if cats == 1 else 'ies'}", file=out)
    for cat in sorted(by_cat, key=lambda c: (-len(by_cat[c]), c)):
        rows = by_cat[cat]
        print(f"\n{cat} ({rows[0]['supercategory']}): {len(rows)}", file=out)
        print(f"  {'item':<36}  {'photo':<36}  {'conf':>5}  {'area':>6}  bbox", file=out)
        for it in sorted(rows, key=lambda r: -r["confidence"]):
            print(f"  {it['id']:<36}  {it['photo_id']:<36}  {it['confidence']:5.2f}  {it['area_fraction'] * 100:5.1f}%  {it['bbox']}", file=out)


def cmd_items(a) -> int:
    from cli.client import ApiClient

    c = ApiClient(a.url, a.token)
    filters = {k: v for k, v in {"category": a.category, "supercategory": a.supercategory, "job_id": a.job_id,
                                  "min_confidence": a.min_confidence}.items() if v is not None}
    items = c.all_items(**filters)
    if a.json:
        print(json.dumps(items, indent=2))
    else:
        print_catalogue(items)
    return 0


def client_args(sp):
    sp.add_argument("--url", default=None, help="API address (WARDROBE_URL)")
    sp.add_argument("--token", default=None, help="API token (WARDROBE_TOKEN)")


def add_parsers(sub) -> None:

    s = sub.add_parser("upload", help="upload a zip (or a folder of photos)")
    s.add_argument("path")
    s.add_argument("--wait", action="store_true", help="follow the job to the end")
    s.add_argument("--resumable", choices=("auto", "always", "never"), default="auto",
                   help="send the zip through a resumable upload session, which the same command resumes after a "
                        "cut connection: auto (the default) for zips of 16 MiB and more")
    client_args(s)
    s.set_defaults(fn=cmd_upload)

    s = sub.add_parser("jobs", help="list jobs, or show one")
    s.add_argument("job_id", nargs="?", help="show this job (default: list them)")
    s.add_argument("--wait", action="store_true", help="follow the job to the end")
    client_args(s)
    s.set_defaults(fn=cmd_jobs)

    s = sub.add_parser("cancel", help="cancel a queued or running job")
    s.add_argument("job_id")
    client_args(s)
    s.set_defaults(fn=cmd_cancel)

    s = sub.add_parser("items", help="print the catalogue")
    s.add_argument("--category", help="any of a class's names, any case: bag, \"bag, wallet\", Shoe")
    s.add_argument("--supercategory", help="e.g. upperbody, lowerbody, wholebody (GET /v1/categories)")
    s.add_argument("--job-id", help="only the items of this upload")
    s.add_argument("--min-confidence", type=float, help="0 to 1")
    s.add_argument("--json", action="store_true", help="the items as the API returns them")
    client_args(s)
    s.set_defaults(fn=cmd_items)

    s = sub.add_parser("export", help="download your catalogue as a zip: COCO JSON, photos and cut-outs")
    s.add_argument("--out", help="where to write the zip (default: wardrobe-export-<id>.zip here)")
    client_args(s)
    s.set_defaults(fn=cmd_export)

    from cli import webhooks

    webhooks.add_parsers(sub, client_args)

    s = sub.add_parser("delete", help="delete items (and their cut-outs) for good")
    s.add_argument("item_ids", nargs="+", metavar="item_id")
    client_args(s)
    s.set_defaults(fn=cmd_delete)
