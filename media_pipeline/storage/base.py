"""The narrow storage port every backend implements, and the key layout."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Protocol, runtime_checkable

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")

ORIGINALS = "originals/"
RENDITIONS = "renditions/"
FEATURES = "features/"
INCOMING = "incoming/"  # direct uploads not yet completed: private, expire
# The Cache-Control stored with each object: renditions are cached for ever under immutable keys;
# originals and keypoint files are never served.
IMMUTABLE = "public, max-age=31536000, immutable"
PRIVATE = "private, no-store"


def validate_key(key: str) -> str:
    """Keys are relative, slash-separated names of safe characters: no ``..``, no absolute paths."""
    if not _KEY.match(key) or ".." in key.split("/") or len(key) > 512:
        raise ValueError(f"invalid storage key {key!r}")
    return key


def original_key(photo_id: str) -> str:
    return validate_key(f"{ORIGINALS}{photo_id}")


def features_key(photo_id: str) -> str:
    """A photo's keypoints (private: matching data, never served)."""
    return validate_key(f"{FEATURES}{photo_id}")


def rendition_prefix(photo_id: str) -> str:
    return f"{RENDITIONS}{photo_id}/"


def rendition_key(photo_id: str, spec: str, width: int, extension: str) -> str:
    return validate_key(f"{RENDITIONS}{photo_id}/{spec}/{width}.{extension}")


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: float  # seconds since the epoch
    content_type: str
    cache_control: str | None = None


@runtime_checkable
class Storage(Protocol):
    """Put is atomic and idempotent; delete of a missing key is fine; errors are ours, not the vendor's.

    Raises ``ObjectNotFound`` for a missing key on ``get``/``open``/``stat``, and
    ``StorageUnavailable`` when the backend cannot be reached (the only retryable failure).
    """

    def put(self, key: str, data: bytes | BinaryIO, content_type: str, cache_control: str | None = None,
            sha256: str | None = None) -> ObjectInfo:
        """Store ``data`` under ``key``. ``sha256`` is the caller's hex digest of exactly these bytes
        when it has one (an upload is hashed as it arrives): a backend may take it as its content
        hash instead of reading the bytes again."""
        ...

    def get(self, key: str) -> bytes: ...

    def open(self, key: str, byte_range: tuple[int, int] | None = None) -> tuple[ObjectInfo, BinaryIO]:
        """A stream of the object, or of bytes ``start..end`` inclusive when ``byte_range`` is given."""
        ...

    def stat(self, key: str) -> ObjectInfo: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> Iterator[str]: ...

    def check(self) -> None:
        """Raise ``StorageUnavailable`` unless the backend answers (readiness probe)."""
        ...
