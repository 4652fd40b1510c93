"""What a user types for what the API wants: a short id (the 8 characters in a cut-out's file name)
for a full one, a near miss of a category or colour for a suggestion, photo ids for file names."""
from __future__ import annotations

import difflib
import re

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PREFIX = re.compile(r"[0-9a-f-]{1,36}")


def nearest(word: str, choices, what: str) -> str:
    """'unknown category 'shoes'; did you mean 'shoe'?' (or the choices, when nothing is near)."""
    names = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(names), n=3, cutoff=0.6)
    if close:
        hint = " or ".join(repr(names[c]) for c in close)
        return f"unknown {what} {word!r}; did you mean {hint}?"
    return f"unknown {what} {word!r}; one of: {', '.join(sorted(choices))}"


def check_category(name: str) -> None:
    """Exit with a suggestion when `name` is none of the 23 classes' names (any of a class's names, any case)."""
    from core.taxonomy import ALIASES, find_class

    if find_class(name) is None:
        raise SystemExit(nearest(name, ALIASES, "category"))


def check_supercategory(name: str) -> None:
    from core.taxonomy import SUPERCATEGORIES

    if name not in SUPERCATEGORIES:
        raise SystemExit(nearest(name, SUPERCATEGORIES, "supercategory"))


def check_color(name: str) -> None:
    from core.palette import COLOR_NAMES

    if name not in COLOR_NAMES:
        raise SystemExit(nearest(name, COLOR_NAMES, "colour"))


def resolve(c, kind: str, given: str) -> str:
    """The full id of the user's item or job (`kind`) that `given` is, or starts with: a full id as
    it is; a unique prefix (the short id of a cut-out's file name) looked up in the user's list.
    Exits with one line when none or several match."""
    given = given.strip().lower()
    if UUID.fullmatch(given):
        return given
    if not PREFIX.fullmatch(given):
        raise SystemExit(f"{given!r} is not a{'n' if kind == 'item' else ''} {kind} id "
                         f"(a full id, or its first characters as in a cut-out's file name)")
    if kind == "item":
        rows = c.all_pages("/v1/items", "items", include_not_garment="true")
    else:
        rows = c.all_pages("/v1/jobs", "jobs")
    found = [r["id"] for r in rows if r["id"].startswith(given)]
    if not found:
        raise SystemExit(f"no {kind} of yours has an id starting {given!r}")
    if len(found) > 1:
        raise SystemExit(f"{len(found)} {kind}s have ids starting {given!r} ({', '.join(f[:13] for f in found[:4])}"
                         f"{' ...' if len(found) > 4 else ''}): give more characters")
    return found[0]


def photo_names(c, items: list[dict]) -> dict[str, str]:
    """photo id -> the photo's file name in its upload, for the photos of `items` (one list per job)."""
    from cli.client import ApiRefused

    names: dict[str, str] = {}
    for job_id in dict.fromkeys(it["job_id"] for it in items if it.get("job_id")):
        try:
            for p in c.all_pages(f"/v1/jobs/{job_id}/photos", "photos"):
                names[p["id"]] = p["entry"]
        except ApiRefused as e:
            if e.status != 404:
                raise  # 404: the job is gone (its data deleted); its items show their photo ids
    return names
