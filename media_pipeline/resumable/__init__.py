"""Resumable uploads (the tus 1.0 protocol's server state): the narrow port and its backends.

The web layer (``media_pipeline/web/tus.py``) speaks tus; a ``TusStore`` keeps what an upload has
received, durably, before its offset is acknowledged:

- ``local.LocalTusStore``: a folder (``<MP_DATA_DIR>/tus/``), one ``.part`` file per upload;
- ``s3.S3TusStore``: the S3 bucket itself, as a multipart upload under ``incoming/tus/<id>/``
  (with the S3 storage backend), so every API host sees every upload.

One contract suite (``tests/contract/test_tus_contract.py``) runs against both.
"""

from __future__ import annotations

import base64
import fcntl
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator, Protocol

from media_pipeline.errors import NotFound

if TYPE_CHECKING:
    from media_pipeline.storage.base import Storage

ID_LENGTH = 32


@dataclass(frozen=True)
class UploadState:
    id: str
    length: int
    offset: int
    owner: str | None
    metadata: dict[str, str]
    created_at: float
    expires_at: float
    photo_id: str | None = None  # set once the last byte made it a photo

    @property
    def complete(self) -> bool:
        return self.offset == self.length


class TusStore(Protocol):
    """What a tus server needs kept. Offsets are acknowledged only after the bytes below them are
    durable; a request that finds the offset moved (another client, another host) gets
    ``OffsetMismatch`` and changes nothing."""

    def create(self, length: int, owner: str | None, metadata: dict[str, str], now: float) -> UploadState: ...

    def get(self, upload_id: str, now: float, settle: float = 0.0) -> UploadState:
        """The upload, or ``NotFound`` when it never existed, was terminated or has expired.
        ``settle``: first wait up to so many seconds for a request writing to it (on this host) to
        finish, so a client asking right after its connection broke learns what that request kept."""
        ...

    def append(self, upload_id: str, offset: int, stream: BinaryIO, now: float, sha256: bytes | None = None) -> UploadState:
        """Add ``stream`` at ``offset``; the new state. ``OffsetMismatch`` when the upload is not at
        ``offset`` (or moved meanwhile), ``UploadTooLarge`` past the announced length (the chunk is
        dropped), ``ChecksumMismatch`` when ``sha256`` was given and the body differs (dropped). A
        body cut off mid-way keeps what arrived, unless it carried a checksum."""
        ...

    def open(self, upload_id: str) -> AbstractContextManager[BinaryIO]:
        """The whole upload's bytes, once complete."""
        ...

    def finish(self, upload_id: str, photo_id: str, now: float) -> UploadState:
        """Record the photo the upload became and drop its bytes (the original holds them now)."""
        ...

    def terminate(self, upload_id: str) -> None: ...

    def expire(self, now: float) -> int:
        """Remove the uploads past their expiry, finished or not, and any leftovers; how many uploads."""
        ...

    def leftovers(self, now: float) -> list[str]:
        """What ``expire`` would remove now (for ``media-pipeline check``)."""
        ...


def valid_id(upload_id: str) -> str:
    if len(upload_id) != ID_LENGTH or not all(c in "0123456789abcdef" for c in upload_id):
        raise NotFound("no such upload")
    return upload_id


@contextmanager
def upload_lock(path: Path, timeout: float | None = None) -> Iterator[bool]:
    """An exclusive lock of one upload on this host (a file lock); whether it was taken: always
    without ``timeout``, else unless another request held it all that time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as lock:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX if deadline is None else fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.02)
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def make_tus_store(tus_dir: Path, expire_seconds: int, storage: Storage) -> TusStore:
    """On S3 storage, the bucket keeps the parts (any API host can take any request); otherwise
    the local folder does."""
    from media_pipeline.resumable.local import LocalTusStore
    from media_pipeline.resumable.s3 import MultipartStorage, S3TusStore

    if isinstance(storage, MultipartStorage):
        return S3TusStore(storage, expire_seconds, lock_dir=tus_dir)
    return LocalTusStore(tus_dir, expire_seconds)


def parse_metadata(header: str | None) -> dict[str, str]:
    """tus' ``Upload-Metadata``: comma-separated ``key base64value`` pairs (the value optional)."""
    found: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in (header or "").split(","))):
        key, _, value = pair.partition(" ")
        try:
            found[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8") if value.strip() else ""
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"Upload-Metadata: the value of {key!r} is not base64 UTF-8") from None
    return found
