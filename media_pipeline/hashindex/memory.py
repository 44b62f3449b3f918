"""The index in process memory: numpy arrays, one bucket table per substring.

Rows are appended; rows up to ``_built`` are bucketed per substring in CSR form (``offsets``
into an ``order`` array), newer rows are scanned directly until there are enough of them to be
worth rebuilding. Removal marks rows dead. About 100 bytes a hash plus the photo ids.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from media_pipeline.hashindex.base import CHUNK_BITS, CHUNKS, IndexHit, probe_sets

_WORDS = 4
_M64 = (1 << 64) - 1


def to_words(values: Sequence[int]) -> np.ndarray:
    """256-bit ints as rows of 4 uint64, most significant first."""
    return np.array([[(v >> (64 * (_WORDS - 1 - w))) & _M64 for w in range(_WORDS)] for v in values], dtype=np.uint64).reshape(-1, _WORDS)


def chunk_column(words: np.ndarray, i: int) -> np.ndarray:
    word, part = divmod(i, CHUNKS // _WORDS)
    shift = np.uint64(CHUNK_BITS * (CHUNKS // _WORDS - 1 - part))
    return ((words[:, word] >> shift) & np.uint64(0xFFFF)).astype(np.int64)


def distances(words: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(rows, queries) Hamming distances."""
    return np.bitwise_count(words[:, None, :] ^ queries[None, :, :]).sum(axis=2, dtype=np.int32)


class MemoryHashIndex:
    def __init__(self, rebuild_after: int = 50_000) -> None:
        self._lock = threading.RLock()
        self._rebuild_after = rebuild_after
        self._words = np.zeros((1024, _WORDS), dtype=np.uint64)
        self._alive = np.zeros(1024, dtype=bool)
        self._owner_codes = np.zeros(1024, dtype=np.int32)
        self._n = 0
        self._built = 0
        self._ids: list[str] = []
        self._views: list[str] = []
        self._rows_of: dict[str, list[int]] = {}
        self._owner_code: dict[str, int] = {"": 0}  # no owner is the scope ""
        self._buckets: list[tuple[np.ndarray, np.ndarray]] = []

    # ------------------------------------------------------------------ writes
    def add(self, photo_id: str, owner: str | None, hashes: Sequence[tuple[str, int]]) -> None:
        with self._lock:
            self.remove(photo_id)
            self.add_many([photo_id] * len(hashes), [owner] * len(hashes), [v for v, _ in hashes], to_words([h for _, h in hashes]))

    def add_many(self, photo_ids: Sequence[str], owners: Sequence[str | None], views: Sequence[str], words: np.ndarray) -> None:
        """Append rows in bulk (no replace): for loading from the catalog and for benchmarks."""
        with self._lock:
            count = len(photo_ids)
            self._grow(self._n + count)
            rows = range(self._n, self._n + count)
            self._words[self._n : self._n + count] = words
            self._alive[self._n : self._n + count] = True
            self._owner_codes[self._n : self._n + count] = [self._owner_code.setdefault(o or "", len(self._owner_code)) for o in owners]
            self._ids.extend(photo_ids)
            self._views.extend(views)
            for row, photo_id in zip(rows, photo_ids):
                self._rows_of.setdefault(photo_id, []).append(row)
            self._n += count
            if self._n - self._built > self._rebuild_after:
                self.rebuild()

    def remove(self, photo_id: str) -> None:
        with self._lock:
            for row in self._rows_of.pop(photo_id, ()):
                self._alive[row] = False

    def rebuild(self) -> None:
        """Bucket every row so far (counting sort per substring)."""
        with self._lock:
            words = self._words[: self._n]
            buckets = []
            for i in range(CHUNKS):
                column = chunk_column(words, i)
                order = np.argsort(column, kind="stable").astype(np.int64)
                offsets = np.zeros((1 << CHUNK_BITS) + 1, dtype=np.int64)
                np.cumsum(np.bincount(column, minlength=1 << CHUNK_BITS), out=offsets[1:])
                buckets.append((offsets, order))
            self._buckets = buckets
            self._built = self._n

    def _grow(self, size: int) -> None:
        if size <= len(self._alive):
            return
        capacity = max(size, 2 * len(self._alive))
        self._words = np.resize(self._words, (capacity, _WORDS))
        self._alive = np.concatenate([self._alive, np.zeros(capacity - len(self._alive), dtype=bool)])
        self._owner_codes = np.concatenate([self._owner_codes, np.zeros(capacity - len(self._owner_codes), dtype=np.int32)])

    # ------------------------------------------------------------------ reads
    def count(self) -> int:
        with self._lock:
            return int(self._alive[: self._n].sum())

    def search(self, queries: Sequence[int], radius: int, owner: str | None = None,
               exclude: str | None = None) -> list[IndexHit]:
        if not queries:
            return []
        query_words = to_words(queries)
        with self._lock:
            # (row, query) pairs: each query only with its own candidates, all in one vector op.
            rows, qids = self._bucketed_candidates(queries, radius)
            newer = np.arange(self._built, self._n)
            rows = np.concatenate([rows, np.tile(newer, len(queries))])
            qids = np.concatenate([qids, np.repeat(np.arange(len(queries)), len(newer))])
            keep = self._alive[rows]
            if owner is not None:
                keep &= self._owner_codes[rows] == self._owner_code.get(owner, -1)
            rows, qids = rows[keep], qids[keep]
            dist = np.bitwise_count(self._words[rows] ^ query_words[qids]).sum(axis=1, dtype=np.int32)
            within = dist <= radius
            rows, qids, dist = rows[within], qids[within], dist[within]
            hits: dict[str, IndexHit] = {}
            for i in np.lexsort((qids, dist)).tolist():  # closest first, then the first query
                photo_id = self._ids[int(rows[i])]
                if photo_id != exclude and photo_id not in hits:
                    hits[photo_id] = IndexHit(photo_id, self._views[int(rows[i])], int(dist[i]), int(qids[i]))
        return sorted(hits.values(), key=lambda hit: (hit.distance, hit.photo_id))

    def scan(self, queries: Sequence[int], radius: int) -> list[tuple[str, int]]:
        """Brute force over every live row: the baseline the benchmark compares against."""
        query_words = to_words(queries)
        with self._lock:
            dist = distances(self._words[: self._n], query_words).min(axis=1)
            rows = np.flatnonzero((dist <= radius) & self._alive[: self._n])
            return sorted({(self._ids[r], int(dist[r])) for r in rows.tolist()}, key=lambda x: (x[1], x[0]))

    def _bucketed_candidates(self, queries: Sequence[int], radius: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, query index) of every bucketed row sharing a probed substring with a query."""
        empty = np.zeros(0, dtype=np.int64)
        if not self._buckets:
            return empty, empty
        per_query = [probe_sets([q], radius) for q in queries]
        found_rows, found_qids = [], []
        for i, (offsets, order) in enumerate(self._buckets):
            keys = np.concatenate([np.fromiter(p[i], dtype=np.int64, count=len(p[i])) for p in per_query])
            key_qids = np.concatenate([np.full(len(p[i]), qi, dtype=np.int64) for qi, p in enumerate(per_query)])
            starts, lengths = offsets[keys], offsets[keys + 1] - offsets[keys]
            total = int(lengths.sum())
            if total == 0:
                continue
            # Concatenate order[start:start + length] for every key without a Python loop.
            shifts = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
            found_rows.append(order[np.arange(total) + shifts])
            found_qids.append(np.repeat(key_qids, lengths))
        if not found_rows:
            return empty, empty
        return np.concatenate(found_rows), np.concatenate(found_qids)
