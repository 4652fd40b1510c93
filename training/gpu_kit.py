"""The GPU kit: what a training run on the lent GPU machine needs beyond the repository.

That machine has PyTorch, torchvision, OpenCV, pandas, matplotlib, numpy, PyYAML, SciPy, Pillow,
psutil and requests, but no Ultralytics and no network, and a call carries at most 64 MiB: the
tracked tree plus the carried paths. The kit (`var/gpu-kit/`, ignored by git) holds:

- `wheels/`: Ultralytics 8.4.190 and ultralytics-thop, pure-Python wheels (any Python 3), installed
  there with `pip install --no-index --no-deps --target`. Of Ultralytics' other requirements the
  machine lacks polars, ultralytics-platform and (by its distribution name) opencv-python; training
  needs none of them (see `training/gpu_run.py`: the one unconditional polars use is replaced).
- `ccp-yolo.tar.xz`: the shared CCP data imported by `training/fashionpedia.py` (the same labels
  `make train` uses), each photo scaled to at most 640 px on its long side and re-encoded as WebP
  (q70): JPEG at q90 would take 55 MiB, and the tracked tree already takes 37 of the 64.
- `kit.json`: what was built, from what, with which settings, and the sizes.

`python -m training.gpu_kit build` makes it; `size` prints what a call would carry; `join` puts
the weights that come back in parts together again.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "var" / "gpu-kit"
SHARED = ROOT.parent / "shared" / "datasets" / "ccp-fashionpedia"
WHEELS = ("ultralytics==8.4.190", "ultralytics-thop==2.2.3")
DATASET_ARCHIVE = "ccp-yolo.tar.xz"
MAX_SIDE = 640
QUALITY = 70
CALL_LIMIT = 64 * 2**20  # what one device call may carry: working tree + carried paths
PART_BYTES = 15 * 2**20  # each file back from the device machine must be at most 16 MiB


# --- sizes ------------------------------------------------------------------------

def tree_bytes(repo: Path = ROOT) -> int:
    """Bytes of what a device call sends besides `carry`: tracked files and untracked, not-ignored ones."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                         check=True, capture_output=True).stdout
    total = 0
    for name in {n for n in out.decode().split("\0") if n}:
        try:
            total += os.lstat(repo / name).st_size
        except FileNotFoundError:  # deleted in the work tree, not yet in the index
            pass
    return total


def dir_bytes(path: Path) -> int:
    return sum(p.lstat().st_size for p in Path(path).rglob("*") if p.is_file() or p.is_symlink())


def size_report(kit: Path = KIT, repo: Path = ROOT) -> dict:
    tree = tree_bytes(repo)
    kit_size = dir_bytes(kit) if kit.exists() else 0
    total = tree + kit_size
    return {"tree_bytes": tree, "kit_bytes": kit_size, "total_bytes": total, "limit_bytes": CALL_LIMIT,
            "headroom_bytes": CALL_LIMIT - total, "fits": total < CALL_LIMIT,
            "mib": {"tree": round(tree / 2**20, 2), "kit": round(kit_size / 2**20, 2), "total": round(total / 2**20, 2)}}


# --- wheels ------------------------------------------------------------------------

def download_wheels(dest: Path, specs=WHEELS) -> list[Path]:
    """pip download the pure-Python wheels (no dependencies) into dest, keeping one version of each."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                    "--platform", "manylinux2014_x86_64", "-d", str(dest), *specs], check=True)
    wanted = {s.split("==")[0].replace("-", "_").lower(): s.split("==")[1] for s in specs}
    kept = []
    for whl in sorted(dest.glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        if wanted.get(name.lower()) == version:
            kept.append(whl)
        else:
            whl.unlink()  # two versions of one package stop the whole --target install
    return kept


# --- data ----------------------------------------------------------------------------

def shrink_photo(src: Path, max_side: int = MAX_SIDE, quality: int = QUALITY) -> bytes:
    """The photo scaled to at most max_side on its long side, as WebP. Labels are normalised, so they still fit."""
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        scale = max_side / max(im.size)
        if scale < 1:
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "WEBP", quality=quality, method=6)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def build_dataset_archive(train_json: Path, val_json: Path, images: Path, out: Path,
                          max_side: int = MAX_SIDE, quality: int = QUALITY) -> dict:
    """Import with training/fashionpedia.py, then write one reproducible tar.xz of photos and labels.

    Inside: images/{train,val}/<stem>.webp, labels/{train,val}/<stem>.txt, import_report.json.
    No data.yaml: it names an absolute path, so the run writes it where it unpacks the archive.
    """
    from training.fashionpedia import import_dataset

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "ccp-yolo"
        report = import_dataset(Path(train_json), Path(val_json), Path(images), staged, link=True)
        counts = {}
        photo_bytes = 0
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w:xz", format=tarfile.PAX_FORMAT) as tar:
            for split in ("train", "val"):
                photos = sorted((staged / "images" / split).iterdir())
                for photo in photos:
                    data = shrink_photo(photo, max_side, quality)
                    photo_bytes += len(data)
                    _add(tar, f"images/{split}/{photo.stem}.webp", data)
                    _add(tar, f"labels/{split}/{photo.stem}.txt", (staged / "labels" / split / f"{photo.stem}.txt").read_bytes())
                counts[split] = len(photos)
            report["data_yaml"] = "data.yaml"  # not the staging folder's path: the archive stays byte-identical
            _add(tar, "import_report.json", (json.dumps(report, indent=2) + "\n").encode())
        partial.replace(out)
    return {"archive": out.name, "bytes": out.stat().st_size, "photo_bytes": photo_bytes, "photos": counts,
            "max_side": max_side, "format": "webp", "quality": quality,
            "instances": {s: report[s]["instances"] for s in ("train", "val")}}


def unpack_dataset(archive: Path, dest: Path) -> Path:
    """Unpack the kit's archive into dest and write its data.yaml there (absolute path); returns data.yaml."""
    from training.fashionpedia import write_data_yaml

    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(dest, filter="data")
    return write_data_yaml(dest)


def build_kit(kit: Path = KIT, shared: Path = SHARED, max_side: int = MAX_SIDE, quality: int = QUALITY,
              wheels: bool = True, data: bool = True) -> dict:
    kit.mkdir(parents=True, exist_ok=True)
    manifest_path = kit / "kit.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if wheels:
        manifest["wheels"] = [{"file": w.name, "bytes": w.stat().st_size, "sha256": sha256(w)}
                              for w in download_wheels(kit / "wheels")]
    if data:
        manifest["dataset"] = build_dataset_archive(shared / "instances_train.json", shared / "instances_val.json",
                                                    shared / "images", kit / DATASET_ARCHIVE, max_side, quality)
        manifest["dataset"]["source"] = str(shared)
        manifest["dataset"]["sha256"] = sha256(kit / DATASET_ARCHIVE)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    manifest["size"] = size_report(kit)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# --- weights in parts -----------------------------------------------------------------

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def split_file(path: Path, dest: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """Cut path into dest/<name>.part-00, -01, ... of at most part_bytes each (`cat` joins them in name order)."""
    dest.mkdir(parents=True, exist_ok=True)
    parts = []
    with open(path, "rb") as f:
        while True:
            chunk = f.read(part_bytes)
            if not chunk and parts:
                break
            part = dest / f"{Path(path).name}.part-{len(parts):02d}"
            part.write_bytes(chunk)
            parts.append(part)
            if len(chunk) < part_bytes:
                break
    return parts


def join_parts(parts: list[Path], out: Path, expect_sha256: str | None = None) -> Path:
    """Concatenate parts (in name order) into out, checking the sha256 when one is given."""
    parts = sorted(parts, key=lambda p: p.name)
    tmp = out.with_name(out.name + ".joining")
    with open(tmp, "wb") as f:
        for p in parts:
            f.write(Path(p).read_bytes())
    if expect_sha256 and sha256(tmp) != expect_sha256:
        tmp.unlink()
        raise ValueError(f"{out.name}: the joined parts do not match sha256 {expect_sha256}")
    tmp.replace(out)
    return out


def join_run_output(folder: Path, out: Path | None = None) -> Path:
    """Join the weights parts a GPU run sent back, using its timings.json for the name and checksum."""
    folder = Path(folder)
    meta = json.loads((folder / "timings.json").read_text()).get("weights", {}) if (folder / "timings.json").exists() else {}
    name = meta.get("file")
    if not name:
        names = {p.name.rsplit(".part-", 1)[0] for p in folder.glob("*.part-*")}
        if len(names) != 1:
            raise FileNotFoundError(f"expected the parts of one file in {folder}, found {sorted(names) or 'none'}")
        name = names.pop()
    parts = sorted(folder.glob(f"{name}.part-*"))
    if meta.get("parts") and len(parts) != len(meta["parts"]):
        raise FileNotFoundError(f"{len(parts)} of {len(meta['parts'])} parts of {name} in {folder}")
    return join_parts(parts, Path(out) if out else folder / name, meta.get("sha256"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.gpu_kit", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="download the wheels and pack the shared CCP data into the kit")
    b.add_argument("--kit", type=Path, default=KIT)
    b.add_argument("--shared", type=Path, default=SHARED)
    b.add_argument("--max-side", type=int, default=MAX_SIDE)
    b.add_argument("--quality", type=int, default=QUALITY)
    b.add_argument("--no-wheels", action="store_true")
    b.add_argument("--no-data", action="store_true")
    s = sub.add_parser("size", help="what one device call would carry: the tree plus the kit")
    s.add_argument("--kit", type=Path, default=KIT)
    j = sub.add_parser("join", help="join the weights parts a GPU run sent back")
    j.add_argument("folder", type=Path)
    j.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    if a.cmd == "build":
        m = build_kit(a.kit, a.shared, a.max_side, a.quality, wheels=not a.no_wheels, data=not a.no_data)
        print(json.dumps({k: m[k] for k in ("wheels", "dataset", "size") if k in m}, indent=2))
        if not m["size"]["fits"]:
            print(f"the tree and the kit take {m['size']['mib']['total']} MiB: over a call's 64 MiB", file=sys.stderr)
            return 1
    elif a.cmd == "size":
        r = size_report(a.kit)
        print(json.dumps(r, indent=2))
        return 0 if r["fits"] else 1
    else:
        out = join_run_output(a.folder, a.out)
        print(f"{out} ({out.stat().st_size} bytes, sha256 {sha256(out)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
