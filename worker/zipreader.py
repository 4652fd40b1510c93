"""Read entries out of an uploaded zip without trusting anything it declares.

Entry names are only ever shown back to the user; they never become paths or
keys. Sizes are enforced on the bytes actually inflated, not the header's word.
"""
from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass

from worker.rejections import ArchiveRejected, EntryRejected

JUNK_PREFIXES = ("__MACOSX/",)
JUNK_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
ARCHIVE_MAGIC = (b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!", b"BZh")


@dataclass
class Limits:
    max_entries: int
    max_entry_bytes: int
    max_total_bytes: int
    max_ratio: int


def display_name(info: zipfile.ZipInfo) -> str:
    # Printable and bounded; the raw name may hold anything.
    name = "".join(ch if ch.isprintable() else "?" for ch in info.filename)
    return name[:1000] or "(unnamed entry)"


def is_junk(info: zipfile.ZipInfo) -> bool:
    name = info.filename.replace("\\", "/")
    base = name.rsplit("/", 1)[-1]
    if not name:
        return False  # an entry with no name (a NUL first byte) is still an entry: read it, or say why not
    return name.endswith("/") or name.startswith(JUNK_PREFIXES) or base in JUNK_NAMES or base.startswith("._")


def open_zip(path) -> zipfile.ZipFile:
    """Open a zip, turning every way it can be broken into ArchiveRejected."""
    try:
        return zipfile.ZipFile(path)
    except Exception as e:  # noqa: BLE001 - BadZipFile, OSError, EOFError, ValueError, struct errors...
        raise ArchiveRejected("bad_zip", f"the upload is not a readable zip: {type(e).__name__}: {e}") from e


def candidate_entries(zf: zipfile.ZipFile, limits: Limits) -> list[tuple[int, zipfile.ZipInfo]]:
    """Entries that should each become a photo (or a per-entry error), with stable indexes."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveRejected("too_many_entries", f"the zip has {len(infos)} entries; the limit is {limits.max_entries}")
    return [(i, info) for i, info in enumerate(infos) if not is_junk(info)]


def read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits, budget: list[int]) -> bytes:
    """Inflate one entry under the per-entry, total and ratio limits.

    `budget` is a one-element list holding the bytes left for the whole archive.
    """
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise EntryRejected("symlink", "symbolic links are not accepted")
    if info.flag_bits & 0x1:
        raise EntryRejected("encrypted", "encrypted entries are not accepted")
    cap = min(limits.max_entry_bytes, budget[0])
    out = bytearray()
    try:
        with zf.open(info) as f:
            while True:
                chunk = f.read(min(256 * 1024, cap + 1 - len(out)))
                if not chunk:
                    break
                out += chunk
                # ratio first: a bomb is named for what it is, whatever cap it would also hit
                if info.compress_size and len(out) >= 256 * 1024 and len(out) / info.compress_size > limits.max_ratio:
                    raise EntryRejected("compression_ratio", "the entry's compression ratio is beyond the limit (zip bomb?)")
                if len(out) > cap:
                    if cap == budget[0] and cap < limits.max_entry_bytes:
                        raise EntryRejected("archive_too_large", "the zip inflates past the total size limit")
                    raise EntryRejected("entry_too_large", f"the entry inflates past {limits.max_entry_bytes} bytes")
    except EntryRejected:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as e:
        raise EntryRejected("corrupt_entry", f"the entry cannot be read: {e}") from e
    except Exception as e:  # noqa: BLE001 - zlib.error and other decompressor failures
        raise EntryRejected("corrupt_entry", f"the entry cannot be read: {e}") from e
    budget[0] -= len(out)
    data = bytes(out)
    if data.startswith(ARCHIVE_MAGIC):
        raise EntryRejected("nested_archive", "archives inside the zip are not opened")
    return data

