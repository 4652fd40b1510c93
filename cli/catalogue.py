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

    path = source = Path(a.path)
    if not path.exists():
        raise SystemExit(f"no such file or folder: {path}")
    if not (path.is_dir() or path.is_file()):
        raise SystemExit(f"{path} is neither a zip nor a folder of photos")
    c = ApiClient(a.url, a.token)
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
    from cli.lookup import resolve

    c = ApiClient(a.url, a.token)
    job = c.delete(f"/v1/jobs/{resolve(c, 'job', a.job_id)}")
    print(f"job {job['id']} {job['status']}")
    return 0


def cmd_retry(a) -> int:
    """Run a finished job's photos that failed for a passing reason again (POST /v1/jobs/<id>/retry)."""
    from cli.client import ApiClient
    from cli.lookup import resolve

    c = ApiClient(a.url, a.token)
    job = c.post(f"/v1/jobs/{resolve(c, 'job', a.job_id)}/retry")
    n = job["retried_photos"]
    print(f"job {job['id']} {job['status']}: {n} photo{'' if n == 1 else 's'} going again", file=sys.stderr)
    if a.wait:
        job = c.wait(job["id"])
    print(json.dumps(job, indent=2))
    return 0 if job["status"] in ("queued", "running", "succeeded", "partially_succeeded") else 1


def cmd_item(a) -> int:
    from cli.client import ApiClient
    from cli.lookup import resolve

    c = ApiClient(a.url, a.token)
    print(json.dumps(c.get(f"/v1/items/{resolve(c, 'item', a.item_id)}"), indent=2))
    return 0


def cmd_delete(a) -> int:
    from cli.client import ApiClient
    from cli.lookup import resolve

    c = ApiClient(a.url, a.token)
    ids = [resolve(c, "item", given) for given in a.item_ids]  # every one checked before any is deleted
    for item_id in ids:
        c.delete(f"/v1/items/{item_id}")
        print(f"deleted item {item_id}")
    return 0


def cmd_jobs(a) -> int:
    from cli.client import ApiClient

    c = ApiClient(a.url, a.token)
    if a.job_id:
        from cli.lookup import resolve

        job_id = resolve(c, "job", a.job_id)
        job = c.wait(job_id) if a.wait else c.get(f"/v1/jobs/{job_id}")
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


def print_catalogue(items: list[dict], out=sys.stdout, photo_names: dict[str, str] | None = None) -> None:
    """The items by category, most first; each with its short id (as in the cut-outs' file names, and
    accepted by `wardrobe item/delete`) and its photo's file name in the upload."""
    names = photo_names or {}
    by_cat: dict[str, list[dict]] = {}
    for it in items:
        by_cat.setdefault(it["category"], []).append(it)
    cats = len(by_cat)
    print(f"{len(items)} item{'' if len(items) == 1 else 's'} in {cats} categor{'y' if cats == 1 else 'ies'}", file=out)
    for cat in sorted(by_cat, key=lambda c: (-len(by_cat[c]), c)):
        rows = by_cat[cat]
        print(f"\n{cat} ({rows[0]['supercategory']}): {len(rows)}", file=out)
        print(f"  {'item':<8}  {'photo':<24}  {'conf':>5}  {'area':>6}  bbox", file=out)
        for it in sorted(rows, key=lambda r: -r["confidence"]):
            photo = names.get(it["photo_id"], it["photo_id"])
            review = "  needs review" if it.get("needs_review") else ""
            print(f"  {it['id'][:8]:<8}  {photo:<24}  {it['confidence']:5.2f}  {it['area_fraction'] * 100:5.1f}%  "
                  f"{it['bbox']}{review}", file=out)


def cmd_items(a) -> int:
    from cli.client import ApiClient

    from cli import lookup

    if a.category is not None:
        lookup.check_category(a.category)
    if a.supercategory is not None:
        lookup.check_supercategory(a.supercategory)
    if a.color is not None:
        lookup.check_color(a.color)
    if a.min_confidence is not None and not 0 <= a.min_confidence <= 1:
        raise SystemExit("--min-confidence is from 0 to 1")
    c = ApiClient(a.url, a.token)
    job_id = lookup.resolve(c, "job", a.job_id) if a.job_id else None
    filters = {k: v for k, v in {"category": a.category, "supercategory": a.supercategory, "job_id": job_id,
                                  "color": a.color, "min_confidence": a.min_confidence,
                                  "needs_review": "true" if a.needs_review else None}.items() if v is not None}
    items = c.all_items(**filters)
    if a.json:
        print(json.dumps(items, indent=2))
    else:
        print_catalogue(items, photo_names=lookup.photo_names(c, items))
    return 0


def client_args(sp):
    sp.add_argument("--url", default=None,
                    help="the API's address (default: WARDROBE_URL, else http://127.0.0.1:8000; no scheme means http)")
    sp.add_argument("--token", default=None, help="your API token (default: WARDROBE_TOKEN)")


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
    s.add_argument("job_id", nargs="?", help="show this job, by its id or first characters (default: list them)")
    s.add_argument("--wait", action="store_true", help="follow the job to the end")
    client_args(s)
    s.set_defaults(fn=cmd_jobs)

    s = sub.add_parser("cancel", help="cancel a queued or running job")
    s.add_argument("job_id", help="the job's id, or its first characters")
    client_args(s)
    s.set_defaults(fn=cmd_cancel)

    s = sub.add_parser("retry", help="run a finished job's photos that failed for a passing reason again")
    s.add_argument("job_id", help="the job's id, or its first characters")
    s.add_argument("--wait", action="store_true", help="follow the job to the end")
    client_args(s)
    s.set_defaults(fn=cmd_retry)

    s = sub.add_parser("items", help="print the catalogue")
    s.add_argument("--category", help="any of a class's names, any case: bag, \"bag, wallet\", Shoe")
    s.add_argument("--supercategory", help="e.g. upperbody, lowerbody, wholebody (GET /v1/categories)")
    s.add_argument("--color", help="the item's main colour: black, white, grey, red, blue, ... (GET /v1/categories)")
    s.add_argument("--needs-review", action="store_true",
                   help="only the items the model was unsure of and nobody checked yet, least certain first")
    s.add_argument("--job-id", help="only the items of this upload (its id or first characters)")
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

    s = sub.add_parser("item", help="show one item as the API returns it")
    s.add_argument("item_id", help="the item's id, or its first characters (the 8 in a cut-out's file name)")
    client_args(s)
    s.set_defaults(fn=cmd_item)

    s = sub.add_parser("delete", help="delete items (and their cut-outs) for good")
    s.add_argument("item_ids", nargs="+", metavar="item_id",
                   help="ids, or their first characters (the 8 in a cut-out's file name)")
    client_args(s)
    s.set_defaults(fn=cmd_delete)
