"""Object storage in a local folder (WARDROBE_STORAGE=file:///dir)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from core.objects import AppendInProgress, ObjectNotFound, OffsetMismatch, Storage, StorageError, StoredObject


class LocalStorage(Storage):
    """A folder. Every OSError becomes a StorageError (a full disk, a path through a file, a
    permission or I/O error), so callers see the same two errors as from S3: ObjectNotFound when
    there is no such object, StorageError for everything else."""

    appendable = True

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

    def open_reader(self, key):
        try:
            return open(self._path(key), "rb")
        except OSError as e:
            raise self._wrap(e, key) from e

    def append(self, key: str, offset: int, src, limit: int) -> int:
        """Append what `src` gives (at most `limit` bytes) to the object, which must hold exactly `offset`
        bytes (else OffsetMismatch, with what it holds); the new length. Every byte read is written at
        once: when `src` fails midway (the client's connection cut), the object keeps the bytes that
        came, all at their right offsets, and its length says where to go on. One append at a time per
        object (AppendInProgress): two would interleave."""
        import fcntl

        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as e:
            raise StorageError(f"{type(e).__name__}: {e}") from e
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                size = os.fstat(fd).st_size
                os.lseek(fd, offset, os.SEEK_SET)
            except BlockingIOError:
                raise AppendInProgress(key) from None
            except OSError as e:
                raise StorageError(f"{type(e).__name__}: {e}") from e
            if size != offset:
                raise OffsetMismatch(key, size)
            left = limit
            while left > 0:
                chunk = src.read(min(left, 1024 * 1024))  # its errors (a cut connection) are the caller's
                if not chunk:
                    break
                chunk = chunk[:left]
                try:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                except OSError as e:
                    raise StorageError(f"{type(e).__name__}: {e}") from e
                left -= len(chunk)
            return offset + (limit - left)
        finally:
            os.close(fd)  # releases the lock

    def rename(self, src: str, dst: str) -> None:
        """Move an object to another key (a completed chunked upload to its job's key): one rename."""
        to = self._path(dst)
        try:
            to.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._path(src), to)
        except OSError as e:
            raise self._wrap(e, src) from e

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
