"""An upload on its way in: streamed to a nameless temp file while counted and hashed, then read
through a memory map, so no upload is ever held in the heap."""

from __future__ import annotations

import hashlib
import mmap
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from media_pipeline.errors import EmptyUpload, UploadTooLarge

# Each read goes through the WSGI server's Python body reader: fewer, larger reads cost less (1 MB of
# memory per upload in flight).
_CHUNK = 1 << 20


class SpooledUpload:
    """An upload streamed to a temp file while counting bytes and hashing; nothing is held in memory."""

    def __init__(self, tmp_dir: Path) -> None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.file: BinaryIO = _unnamed_file(tmp_dir)
        self.size = 0
        self._sha = hashlib.sha256()
        self._map: mmap.mmap | None = None

    @classmethod
    def receive(cls, stream: BinaryIO, tmp_dir: Path, limit: int) -> "SpooledUpload":
        upload = cls(tmp_dir)
        try:
            while chunk := stream.read(_CHUNK):
                upload.size += len(chunk)
                if upload.size > limit:
                    raise UploadTooLarge(f"the upload is larger than {limit} bytes")
                upload._sha.update(chunk)
                upload.file.write(chunk)
            if upload.size == 0:
                raise EmptyUpload("the upload is empty")
            upload.file.flush()
        except BaseException:
            upload.close()
            raise
        return upload

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def buffer(self) -> mmap.mmap:
        """The bytes, mapped from the temp file (the page cache holds them, not the heap)."""
        if self._map is None:
            self._map = mmap.mmap(self.file.fileno(), 0, access=mmap.ACCESS_READ)
        return self._map

    def rewind(self) -> BinaryIO:
        self.file.seek(0)
        return self.file

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # an image made from it still reads it: the map goes when the last one does
            self._map = None
        self.file.close()


def _unnamed_file(folder: Path) -> BinaryIO:
    """A temp file with no name that vanishes when closed, like ``tempfile.TemporaryFile``, but
    opened without ``O_EXCL`` so the local storage backend can link it into place rather than
    copy the upload a second time. Where ``O_TMPFILE`` is missing, an ordinary temp file."""
    try:
        fd = os.open(folder, os.O_TMPFILE | os.O_RDWR, 0o600)
    except (AttributeError, OSError):
        return tempfile.TemporaryFile(dir=folder)  # type: ignore[return-value]
    return os.fdopen(fd, "w+b")
