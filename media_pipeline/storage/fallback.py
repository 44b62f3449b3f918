"""A store being moved into: every write goes to the new store, a read the new store cannot answer
is answered by the old one (``MP_STORAGE_FALLBACK_URL``), so the service runs on its new store
while ``migrate-storage`` is still copying, and nothing written meanwhile is left behind.

A delete removes the key from both, so a copy that runs after it cannot bring a deleted photo
back from the old store (``migrate-storage`` also checks, after each copy, that the key is still
in the old store, and removes what it copied when not)."""

from __future__ import annotations

import heapq
from itertools import groupby
from typing import BinaryIO, Callable, Iterator, TypeVar

from media_pipeline.errors import ObjectNotFound
from media_pipeline.storage.base import ObjectInfo, Storage

T = TypeVar("T")


class FallbackStorage:
    def __init__(self, primary: Storage, fallback: Storage) -> None:
        self.primary = primary
        self.fallback = fallback

    def _read(self, read: Callable[[Storage], T]) -> T:
        try:
            return read(self.primary)
        except ObjectNotFound:
            return read(self.fallback)

    def put(self, key: str, data: bytes | BinaryIO, content_type: str, cache_control: str | None = None,
            sha256: str | None = None) -> ObjectInfo:
        return self.primary.put(key, data, content_type, cache_control, sha256)

    def get(self, key: str) -> bytes:
        return self._read(lambda store: store.get(key))

    def open(self, key: str, byte_range: tuple[int, int] | None = None) -> tuple[ObjectInfo, BinaryIO]:
        return self._read(lambda store: store.open(key, byte_range))

    def stat(self, key: str) -> ObjectInfo:
        return self._read(lambda store: store.stat(key))

    def exists(self, key: str) -> bool:
        return self.primary.exists(key) or self.fallback.exists(key)

    def delete(self, key: str) -> None:
        self.primary.delete(key)
        self.fallback.delete(key)

    def list(self, prefix: str) -> Iterator[str]:
        """Both stores' keys, each once. The backends list in order of the segment after the key
        layout's prefix (the photo id), which ``check`` merges on: so does this."""
        def photo(key: str) -> str:
            return key[len(prefix):].split("/", 1)[0]

        for _, group in groupby(heapq.merge(self.primary.list(prefix), self.fallback.list(prefix), key=photo), key=photo):
            yield from dict.fromkeys(group)

    def check(self) -> None:
        self.primary.check()
        self.fallback.check()
