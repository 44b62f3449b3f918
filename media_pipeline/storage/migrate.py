"""Copy every object of one store into another (``media-pipeline migrate-storage``): originals
first (the only objects nothing can make again), then keypoint features, then renditions.

Each object is verified after its copy, by size and SHA-256 of what the target gives back. A copy
is resumable and idempotent because nothing is assumed: run again, an object already in the
target with the same size and checksum is counted ``verified`` and not written; anything else is
copied again. An object deleted from the source while the copy runs is not brought back: it is
``vanished`` whether the delete came before the read or between the read and the write (the key
is looked for in the source again after the write, and removed from the target when gone).
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Iterable

from media_pipeline.errors import ObjectNotFound, StorageError, StorageUnavailable
from media_pipeline.storage.base import FEATURES, ORIGINALS, RENDITIONS, Storage

PREFIXES = (ORIGINALS, FEATURES, RENDITIONS)
_TRIES = 4  # per object, on StorageUnavailable, beyond the backends' own retries


@dataclass
class StorageCopy:
    copied: int = 0
    copied_bytes: int = 0
    verified: int = 0  # already in the target with the same size and checksum
    vanished: int = 0  # deleted from the source while the copy ran
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, reason)

    @property
    def seen(self) -> int:
        return self.copied + self.verified + self.vanished + len(self.failed)


def copy_storage(source: Storage, target: Storage, prefixes: Iterable[str] = PREFIXES, workers: int = 4,
                 progress: Callable[[str, StorageCopy], None] = lambda key, report: None,
                 pause: Callable[[float], None] = time.sleep) -> StorageCopy:
    """Copy every key under ``prefixes`` from ``source`` to ``target``, ``workers`` at a time;
    ``progress`` is called after each key (an exception from it stops the copy, as a kill would)."""
    report = StorageCopy()
    with ThreadPoolExecutor(workers) as pool:
        pending: dict[Future[tuple[str, int]], str] = {}

        def settle(done: set[Future[tuple[str, int]]]) -> None:
            for future in done:
                key = pending.pop(future)
                try:
                    outcome, size = future.result()
                except StorageError as exc:
                    report.failed.append((key, str(exc)))
                else:
                    if outcome == "copied":
                        report.copied += 1
                        report.copied_bytes += size
                    elif outcome == "verified":
                        report.verified += 1
                    else:
                        report.vanished += 1
                progress(key, report)

        try:
            for prefix in prefixes:
                for key in source.list(prefix):
                    pending[pool.submit(_copy_with_retries, source, target, key, pause)] = key
                    if len(pending) >= workers * 4:  # a bounded window: keys are listed as they are copied
                        settle(wait(pending, return_when=FIRST_COMPLETED).done)
            while pending:
                settle(wait(pending, return_when=FIRST_COMPLETED).done)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return report


def _copy_with_retries(source: Storage, target: Storage, key: str, pause: Callable[[float], None]) -> tuple[str, int]:
    for attempt in range(_TRIES):
        try:
            return copy_object(source, target, key)
        except StorageUnavailable:
            if attempt == _TRIES - 1:
                raise
            pause(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def copy_object(source: Storage, target: Storage, key: str) -> tuple[str, int]:
    """``("copied" | "verified" | "vanished", bytes)`` for one key."""
    try:
        info, stream = source.open(key)
        with stream:
            data = stream.read()
    except ObjectNotFound:
        return "vanished", 0
    digest = hashlib.sha256(data).hexdigest()
    if _holds(target, key, len(data), digest):
        return "verified", len(data)
    target.put(key, data, info.content_type, info.cache_control, sha256=digest)
    if not _holds(target, key, len(data), digest):
        raise StorageError(f"{key}: the target does not give back what was written")
    if not source.exists(key):  # deleted while it was being copied: do not bring it back
        target.delete(key)
        return "vanished", 0
    return "copied", len(data)


def _holds(store: Storage, key: str, size: int, sha256: str) -> bool:
    try:
        if store.stat(key).size != size:
            return False
        return hashlib.sha256(store.get(key)).hexdigest() == sha256
    except ObjectNotFound:
        return False
