"""In-memory backend: a shipped fake for unit tests of code that needs storage. Passes the contract suite."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from typing import BinaryIO, Iterator

from media_pipeline.errors import ObjectNotFound
from media_pipeline.storage.base import ObjectInfo, validate_key


class MemoryStorage:
    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, ObjectInfo]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes | BinaryIO, content_type: str, cache_control: str | None = None,
            sha256: str | None = None) -> ObjectInfo:
        validate_key(key)
        body = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else data.read()
        info = ObjectInfo(key, len(body), hashlib.md5(body, usedforsecurity=False).hexdigest(), time.time(), content_type, cache_control)
        with self._lock:
            self._objects[key] = (body, info)
        return info

    def _entry(self, key: str) -> tuple[bytes, ObjectInfo]:
        validate_key(key)
        try:
            return self._objects[key]
        except KeyError:
            raise ObjectNotFound(key) from None

    def stat(self, key: str) -> ObjectInfo:
        return self._entry(key)[1]

    def get(self, key: str) -> bytes:
        return self._entry(key)[0]

    def open(self, key: str, byte_range: tuple[int, int] | None = None) -> tuple[ObjectInfo, BinaryIO]:
        body, info = self._entry(key)
        if byte_range is not None:
            body = body[byte_range[0] : byte_range[1] + 1]
        return info, io.BytesIO(body)

    def exists(self, key: str) -> bool:
        return validate_key(key) in self._objects

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(validate_key(key), None)

    def list(self, prefix: str) -> Iterator[str]:
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        yield from keys

    def check(self) -> None:
        return None
