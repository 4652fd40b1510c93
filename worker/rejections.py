"""Input the worker refuses: each carries a stable `code` (shown in the job's errors) and a message."""
from __future__ import annotations


class Rejected(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ArchiveRejected(Rejected):
    """The whole zip is unusable."""


class EntryRejected(Rejected):
    """One zip entry cannot become a photo."""


class ImageRejected(Rejected):
    """An entry's bytes are not an image the worker accepts."""
