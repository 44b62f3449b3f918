"""Snapshots of the memory indexes on a host's disk (MP_INDEX_SNAPSHOT_DIR), memory-mapped by
every process that starts there.

Without one, a process with MP_DUPLICATE_INDEX=memory reads both tables at start (minutes at a
million photos) into memory of its own, so a host's processes each hold a copy.
``media-pipeline index-snapshot`` writes what a process would hold, with the change log's number
it stands at; a process starting maps the newest snapshot the log's pruning has not overtaken and
reads the log from there. The keypoint postings and the hash bucket tables, most of the memory,
are mapped read-only, never copied: a segment or a bucket table is never changed in place (a
merge or a rebuild makes new ones), so every process of the host reads one copy in the page cache
until its own merges replace its segments. The row arrays, ids and owners, which removals and
filings write, are read into each process's memory.

A snapshot is a directory of ``.npy`` files and JSON lists, with ``meta.json`` giving the format,
the position and every file's size. It is written under a temporary name and renamed whole, so a
reader sees a complete one or none; the sizes catch a file cut short since.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from media_pipeline.hashindex.key_segment import KeySegment
from media_pipeline.hashindex.key_table import Direct
from media_pipeline.hashindex.memory import HashState
from media_pipeline.hashindex.memory_features import FeatureState
from media_pipeline.hashindex.photo_numbers import PhotoNumbers
from media_pipeline.storage.local import fsync_dir

FORMAT = 1
_PREFIX = "snapshot-"
_WRITING = ".writing-"
_ABANDONED_SECONDS = 6 * 3600  # a half-written snapshot this old was left by a writer that died


class SnapshotError(Exception):
    """A snapshot that cannot be used: another format, or files missing or cut short."""


@dataclass(frozen=True)
class Position:
    """Where in the change log (``index_changes``) a snapshot stands: every number up to ``high``
    applied but ``gaps``, which had not committed when it was taken."""

    high: int
    gaps: list[int]

    def kept_after(self, pruned: int) -> bool:
        """Whether the log still holds every change after this position, pruned up to ``pruned``."""
        return min(self.gaps, default=self.high + 1) > pruned


@dataclass(frozen=True)
class Snapshot:
    path: Path
    position: Position
    hashes: HashState
    features: FeatureState


def write(directory: Path, hashes: HashState, features: FeatureState, position: Position) -> Path:
    """A new snapshot in ``directory``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    work = directory / f"{_WRITING}{secrets.token_hex(8)}"
    work.mkdir()
    try:
        arrays: dict[str, np.ndarray] = {
            "h-words": hashes.words, "h-alive": hashes.alive, "h-owner_codes": hashes.owner_codes,
            "h-photo_of_row": hashes.photo_of_row, "h-view_of_row": hashes.view_of_row, "h-first_row": hashes.first_row,
            "h-row_count": hashes.row_count, "h-live": hashes.live,
            "f-lows": features.lows, "f-alive": features.alive, "f-owner_codes": features.owner_codes,
        }
        for i, (offsets, order) in enumerate(hashes.buckets):
            arrays[f"h{i}-offsets"], arrays[f"h{i}-order"] = offsets, order
        for i, segment in enumerate(features.segments):
            arrays.update({f"f{i}-keys": segment.keys, f"f{i}-offsets": segment.offsets,
                           f"f{i}-low": segment.photos.low, f"f{i}-high": segment.photos.high})
            if segment.direct is not None:
                arrays[f"f{i}-direct"] = segment.direct.slots
        lists: dict[str, Any] = {
            "h-ids": hashes.photo_ids, "h-views": hashes.views, "h-owners": hashes.owners,
            "h-scattered": {str(n): rows for n, rows in hashes.scattered.items()},
            "f-ids": features.ids, "f-owners": features.owners,
        }
        sizes = {}
        for name, array in arrays.items():
            sizes[f"{name}.npy"] = _written(work / f"{name}.npy", lambda f, a=array: np.save(f, np.ascontiguousarray(a), allow_pickle=False))
        for name, value in lists.items():
            sizes[f"{name}.json"] = _written(work / f"{name}.json", lambda f, v=value: f.write(json.dumps(v).encode()))
        meta = {"format": FORMAT, "high": position.high, "gaps": sorted(position.gaps), "files": sizes,
                "chunk_bits": hashes.chunk_bits, "buckets": len(hashes.buckets), "purged": features.purged,
                "segments": [None if s.direct is None else s.direct.first for s in features.segments]}
        _written(work / "meta.json", lambda f: f.write(json.dumps(meta).encode()))
        final = directory / f"{_PREFIX}{position.high:016d}-{secrets.token_hex(4)}"
        os.rename(work, final)
        fsync_dir(directory)
        return final
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def usable(directory: Path, kept: Callable[[Position], bool]) -> Iterator[Path]:
    """The complete snapshots in ``directory`` whose position is ``kept``, newest first."""
    for path in paths(directory):
        try:
            position = _meta(path)[1]
        except SnapshotError:
            continue
        if kept(position):
            yield path


def read(path: Path) -> Snapshot:
    """The snapshot at ``path``, every array mapped read-only: the postings and bucket tables
    stay so, and ``restored`` copies the arrays an index writes (reading them from the files once,
    not into a private array and then again into its copy)."""
    meta, position = _meta(path)
    for name, size in meta["files"].items():
        try:
            actual = (path / name).stat().st_size
        except OSError as exc:
            raise SnapshotError(f"{path}: {name} is missing") from exc
        if actual != size:
            raise SnapshotError(f"{path}: {name} holds {actual} bytes, {size} were written")
    try:
        def mapped(name: str) -> np.ndarray:  # a plain array over the mapping, which it keeps open
            return np.asarray(np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False))

        def listed(name: str) -> Any:
            return json.loads((path / f"{name}.json").read_bytes())

        hashes = HashState(
            mapped("h-words"), mapped("h-alive"), mapped("h-owner_codes"), mapped("h-photo_of_row"), mapped("h-view_of_row"),
            listed("h-ids"), mapped("h-first_row"), mapped("h-row_count"), mapped("h-live"),
            {int(n): rows for n, rows in listed("h-scattered").items()}, listed("h-views"), listed("h-owners"),
            int(meta["chunk_bits"]), [(mapped(f"h{i}-offsets"), mapped(f"h{i}-order")) for i in range(int(meta["buckets"]))],
        )
        segments = [KeySegment(mapped(f"f{i}-keys"), mapped(f"f{i}-offsets"), PhotoNumbers(mapped(f"f{i}-low"), mapped(f"f{i}-high")),
                               None if first is None else Direct(int(first), mapped(f"f{i}-direct")))
                    for i, first in enumerate(meta["segments"])]
        features = FeatureState(segments, mapped("f-lows"), listed("f-ids"), mapped("f-alive"), mapped("f-owner_codes"),
                                listed("f-owners"), int(meta["purged"]))
    except (OSError, ValueError, KeyError) as exc:
        raise SnapshotError(f"{path}: {exc}") from exc
    return Snapshot(path, position, hashes, features)


def prune(directory: Path, keep: int = 2) -> list[Path]:
    """Delete all but the ``keep`` newest snapshots, and what a writer that died left half-written;
    returns what was deleted. A process that mapped a deleted snapshot keeps reading it (the
    files go when the last mapping does)."""
    gone = paths(directory)[keep:]
    cutoff = time.time() - _ABANDONED_SECONDS
    gone += [p for p in directory.glob(f"{_WRITING}*") if p.stat().st_mtime < cutoff]
    for path in gone:
        shutil.rmtree(path, ignore_errors=True)
    return gone


def paths(directory: Path) -> list[Path]:
    """Every snapshot in ``directory``, newest (highest position) first."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if p.name.startswith(_PREFIX) and p.is_dir()), key=lambda p: p.name, reverse=True)


def _meta(path: Path) -> tuple[dict[str, Any], Position]:
    try:
        meta = json.loads((path / "meta.json").read_bytes())
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"{path}: no readable meta.json") from exc
    if meta.get("format") != FORMAT:
        raise SnapshotError(f"{path}: format {meta.get('format')}, this version reads {FORMAT}")
    return meta, Position(int(meta["high"]), [int(g) for g in meta["gaps"]])


def _written(path: Path, fill: Callable[[Any], Any]) -> int:
    """Write ``path`` with ``fill(file)``, flushed to the disk; returns its size."""
    with open(path, "wb") as f:
        fill(f)
        f.flush()
        os.fsync(f.fileno())
    return path.stat().st_size
