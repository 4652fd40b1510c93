"""A seekable, read-only file over ranged reads of a remote object (S3's GET with a Range header).

zipfile needs only the end of a zip (the end-of-central-directory record) and its central
directory; read through this, a 2 GB upload is checked with a handful of small requests. A
budget caps the bytes fetched in all, so a zip that declares a huge central directory costs
an error, not a download.
"""
from __future__ import annotations

import io
from typing import Callable


class BudgetExceeded(OSError):
    """More bytes were asked for than the reader may fetch."""


class RangedReader(io.RawIOBase):
    """`fetch(start, end)` returns bytes start..end inclusive (as HTTP's Range: bytes=start-end)."""

    def __init__(self, fetch: Callable[[int, int], bytes], size: int, budget: int | None = None):
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._pos = 0
        self.budget = budget
        self.fetched = 0  # bytes fetched so far
        self.requests = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        pos = base + offset
        if pos < 0:
            raise OSError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buf) -> int:
        want = min(len(buf), self._size - self._pos)
        if want <= 0:
            return 0
        if self.budget is not None and self.fetched + want > self.budget:
            raise BudgetExceeded(f"reading {want} more bytes would pass the budget of {self.budget} bytes")
        data = self._fetch(self._pos, self._pos + want - 1)
        self.requests += 1
        self.fetched += len(data)
        n = len(data)
        buf[:n] = data
        self._pos += n
        return n


def open_ranged(fetch: Callable[[int, int], bytes], size: int, budget: int | None = None,
                buffer_size: int = 256 * 1024) -> io.BufferedReader:
    """A buffered reader: zipfile's many small reads near the end of the file cost one request."""
    return io.BufferedReader(RangedReader(fetch, size, budget), buffer_size=buffer_size)
