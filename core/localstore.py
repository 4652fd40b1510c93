"""Object storage in a local folder (WARDROBE_STORAGE=file:///dir)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from core.objects import ObjectNotFound, Storage, StorageError, StoredObject


class LocalStorage(Storage):
    """A folder. Every OSError becomes a StorageError (a full disk, a path through a file, a
    permission or I/O error), so callers see the same two errors as from S3: ObjectNotFound when
    there is no such object, StorageError for everything else."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root not in p.parents:
            raise StorageError(f"key escapes the storage root: {key!r}")
        return p

    @staticmethod
    def _wrap(e: OSError, key: str) -> StorageError:
        if isinstance(e, (FileNotFoundError, NotADirectoryError)):
            return ObjectNotFound(key)  # no such file, or a path through a file: no such object either way
        return StorageError(f"{type(e).__name__}: {e}")

    def put_file(self, key, fileobj, content_type="application/octet-stream"):
        dst = self._path(key)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            # write then rename: readers never see half an object
            fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".tmp-")
        except OSError as e:
            raise StorageError(f"{type(e).__name__}: {e}") from e
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(fileobj, out, 1024 * 1024)
            os.replace(tmp, dst)
        except BaseException as e:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(e, OSError):
                raise StorageError(f"{type(e).__name__}: {e}") from e
            raise

    def get_bytes(self, key):
        try:
            return self._path(key).read_bytes()
        except OSError as e:
            raise self._wrap(e, key) from e

    def download_to(self, key, path):
        src = self._path(key)
        try:
            f = open(src, "rb")
        except OSError as e:
            raise self._wrap(e, key) from e
        try:
            with f, open(path, "wb") as out:
                shutil.copyfileobj(f, out, 1024 * 1024)
        except OSError as e:
            raise StorageError(f"{type(e).__name__}: {e}") from e

    def iter_chunks(self, key, chunk_size=1024 * 1024):
        try:
            f = open(self._path(key), "rb")
        except OSError as e:
            raise self._wrap(e, key) from e

        def gen():
            with f:
                while True:
                    try:
                        chunk = f.read(chunk_size)
                    except OSError as e:
                        raise StorageError(f"{type(e).__name__}: {e}") from e
                    if not chunk:
                        return
                    yield chunk

        return gen()

    def size(self, key):
        try:
            return self._path(key).stat().st_size
        except OSError as e:
            raise self._wrap(e, key) from e

    def delete(self, key):
        try:
            self._path(key).unlink(missing_ok=True)
        except NotADirectoryError:
            pass  # a path through a file: nothing there to delete
        except OSError as e:
            raise StorageError(f"{type(e).__name__}: {e}") from e

    def delete_prefix(self, prefix):
        base = self._path(prefix.rstrip("/"))
        try:
            if base.is_dir():
                n = sum(1 for p in base.rglob("*") if p.is_file())
                shutil.rmtree(base)
                return n
        except OSError as e:
            raise StorageError(f"{type(e).__name__}: {e}") from e
        return 0

    TMP_PREFIX = ".tmp-"

    def list(self, prefix):
        base = self.root / prefix
        top = base if prefix.endswith("/") or base.is_dir() else base.parent
        try:
            paths = sorted(top.rglob("*")) if top.is_dir() else []
            for p in paths:
                if p.name.startswith(self.TMP_PREFIX) or not p.is_file() or p.is_symlink():
                    continue
                key = p.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = p.stat()
                    yield StoredObject(key, st.st_size, st.st_mtime)
        except FileNotFoundError:
            return  # removed while listed
        except OSError as e:
            raise StorageError(f"{type(e).__name__}: {e}") from e

    def stale_partials(self, older_than):
        try:
            return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob(self.TMP_PREFIX + "*")
                          if p.is_file() and p.stat().st_mtime < older_than)
        except OSError as e:
            raise StorageError(f"{type(e).__name__}: {e}") from e

    def drop_partial(self, name):
        path = self._path(name)
        if not path.name.startswith(self.TMP_PREFIX):
            raise StorageError(f"not a temp file: {name!r}")
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise StorageError(f"{type(e).__name__}: {e}") from e

    def ping(self):
        if not os.access(self.root, os.W_OK) or not self.root.is_dir():
            raise StorageError(f"{self.root} is not a writable folder")
