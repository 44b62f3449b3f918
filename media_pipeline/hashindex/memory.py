"""The index in process memory: numpy arrays, one bucket table per substring.

Rows are appended; rows up to ``_built`` are bucketed per substring in CSR form (``offsets``
into an ``order`` array), newer rows are scanned directly until there are enough of them to be
worth rebuilding. Each rebuild picks the substring length from the row count (about log2 of it,
16 to 24 bits), so a bucket holds about one row at any size. Removal marks rows dead. About
32 bytes a hash, 4 per substring, 11 for its photo's number, its view, its owner and whether it is
alive, the offset tables (4 x 2^bits bytes per substring) and per photo its id and 12 bytes
(its first row and row count).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Sequence

import numpy as np

from media_pipeline.hashindex.base import IndexHit, Layout, flip_masks

_WORDS = 4
_M64 = (1 << 64) - 1


def to_words(values: Sequence[int]) -> np.ndarray:
    """256-bit ints as rows of 4 uint64, most significant first."""
    return np.array([[(v >> (64 * (_WORDS - 1 - w))) & _M64 for w in range(_WORDS)] for v in values], dtype=np.uint64).reshape(-1, _WORDS)


def chunk_column(words: np.ndarray, layout: Layout, i: int) -> np.ndarray:
    """Substring ``i`` of every row, as int64; substrings may straddle two 64-bit words."""
    b = layout.chunk_bits
    start = b * i
    word, offset = divmod(start, 64)
    if offset + b <= 64:
        value = words[:, word] >> np.uint64(64 - offset - b)
    else:
        spill = offset + b - 64
        value = (words[:, word] << np.uint64(spill)) | (words[:, word + 1] >> np.uint64(64 - spill))
    return (value & np.uint64((1 << b) - 1)).astype(np.int64)


def layout_for(rows: int, radius: int = 31) -> Layout:
    """The substring length with the least expected work per query at ``radius`` (probes, plus
    the random rows they hit), among those whose offset tables stay under 64 bytes a row: 16 bits
    up to a few million rows, 23 bits at ten million."""
    def work(bits: int) -> float:
        layout = Layout(bits)
        probes = layout.count * len(flip_masks(bits, layout.probe_radius(radius)))
        return probes * (1 + rows / 2**bits)

    budget = max(64 * rows, 4 * 16 << 16)
    fitting = [b for b in range(16, 25) if 4 * Layout(b).count << b <= budget]
    return Layout(min(fitting, key=work))


def distances(words: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(rows, queries) Hamming distances."""
    return np.bitwise_count(words[:, None, :] ^ queries[None, :, :]).sum(axis=2, dtype=np.int32)


def pair_distances(words: np.ndarray, rows: np.ndarray, queries: np.ndarray, qids: np.ndarray) -> np.ndarray:
    """Hamming distance of each ``words[rows[i]]`` to ``queries[qids[i]]``. The rows are gathered
    with ``np.take``: numpy 2.4's fancy indexing of a 2-D array by rows took 7x as long (29.7
    against 4.3 ms for 327,000 random rows of 50 million, the search's candidates at ten million
    photos). The four words' counts are added column by column: numpy's sum over an axis of
    length four took 1.5x as long."""
    counts = np.bitwise_count(np.bitwise_xor(np.take(words, rows, axis=0), np.take(queries, qids, axis=0)))
    dist = counts[:, 0].astype(np.int32)
    for w in range(1, _WORDS):
        dist += counts[:, w]
    return dist


@dataclass(frozen=True)
class HashState:
    """What a bucketed hash index holds (``MemoryHashIndex.state``): what a snapshot writes and
    ``MemoryHashIndex.restored`` takes back. The row arrays hold its rows, no spare room."""

    words: np.ndarray  # (rows, 4) uint64
    alive: np.ndarray  # bool, a row each
    owner_codes: np.ndarray  # int32, a row each
    photo_of_row: np.ndarray  # int32
    view_of_row: np.ndarray  # uint16
    photo_ids: list[str]  # number -> photo id
    first_row: np.ndarray  # int64, a number each
    row_count: np.ndarray  # int32, a number each
    live: np.ndarray  # the numbers of the photos filed now
    scattered: dict[int, list[int]]  # the rows of a photo bulk-loaded in pieces
    views: list[str]  # code -> view name
    owners: list[str]  # code -> owner ("" for none)
    chunk_bits: int
    buckets: list[tuple[np.ndarray, np.ndarray]]  # (offsets, order) a substring


class MemoryHashIndex:
    def __init__(self, rebuild_after: int = 50_000, chunk_bits: int | None = None, rebuild_in_background: bool = False) -> None:
        """``chunk_bits`` fixes the substring length instead of choosing it from the size;
        ``rebuild_in_background``: a thread buckets the rows while lookups go on (seconds at
        millions of rows), the rows since scanned meanwhile."""
        self._lock = threading.RLock()
        self._rebuild_lock = threading.Lock()  # one rebuild at a time
        self._rebuild_after = rebuild_after
        self._background = rebuild_in_background
        self._rebuilder: threading.Thread | None = None
        self._words = np.zeros((1024, _WORDS), dtype=np.uint64)
        self._alive = np.zeros(1024, dtype=bool)
        self._owner_codes = np.zeros(1024, dtype=np.int32)
        self._n = 0
        self._built = 0
        # Photos get numbers; a row holds its photo's number and its view's code, so a row costs
        # no Python object (at 50 million rows, lists and dicts of ids took more than the arrays).
        self._photo_of_row = np.zeros(1024, dtype=np.int32)
        self._view_of_row = np.zeros(1024, dtype=np.uint16)
        self._photo_ids: list[str] = []  # number -> photo id
        self._number_of: dict[str, int] = {}  # live photo id -> number
        self._first_row = np.zeros(1024, dtype=np.int64)  # number -> its rows, which are contiguous ...
        self._row_count = np.zeros(1024, dtype=np.int32)
        self._scattered: dict[int, list[int]] = {}  # ... but for a photo bulk-loaded in pieces: its rows
        self._views: list[str] = []  # code -> view name
        self._view_code: dict[str, int] = {}
        self._owner_code: dict[str, int] = {"": 0}  # no owner is the scope ""
        self._buckets: list[tuple[np.ndarray, np.ndarray]] = []
        self._layout = Layout(chunk_bits or 16)
        self._fixed_layout = Layout(chunk_bits) if chunk_bits else None

    @classmethod
    def restored(cls, state: HashState, **options: Any) -> MemoryHashIndex:
        """An index holding ``state``, with the constructor's ``options``. The bucket tables are
        used as they are (memory-mapped ones stay mapped: a rebuild replaces them, never writes
        them); the row arrays are copied, as removals and new rows write them."""
        index = cls(**options)
        rows = len(state.alive)
        index._words, index._alive = np.array(state.words, dtype=np.uint64).reshape(-1, _WORDS), np.array(state.alive, dtype=bool)
        index._owner_codes = np.array(state.owner_codes, dtype=np.int32)
        index._photo_of_row, index._view_of_row = np.array(state.photo_of_row, dtype=np.int32), np.array(state.view_of_row, dtype=np.uint16)
        index._photo_ids = list(state.photo_ids)
        index._first_row, index._row_count = np.array(state.first_row, dtype=np.int64), np.array(state.row_count, dtype=np.int32)
        index._number_of = {index._photo_ids[n]: n for n in np.asarray(state.live).tolist()}
        index._scattered = {int(n): list(r) for n, r in state.scattered.items()}
        index._views, index._view_code = list(state.views), {view: code for code, view in enumerate(state.views)}
        index._owner_code = {owner: code for code, owner in enumerate(state.owners)}
        index._buckets, index._layout = list(state.buckets), Layout(state.chunk_bits)
        index._n = index._built = rows
        return index

    def state(self) -> HashState:
        """What the index holds, for a snapshot; every row must be bucketed first (``rebuild``).
        The arrays are views of the index's own (at ten million photos a copy would be 2.3 GB
        more): write them out before the index changes again."""
        with self._lock:
            if self._built != self._n:
                raise ValueError("rows are not bucketed: rebuild first")
            n, photos = self._n, len(self._photo_ids)
            owners = sorted(self._owner_code, key=self._owner_code.__getitem__)
            return HashState(self._words[:n], self._alive[:n], self._owner_codes[:n],
                             self._photo_of_row[:n], self._view_of_row[:n], list(self._photo_ids),
                             self._first_row[:photos], self._row_count[:photos],
                             np.array(sorted(self._number_of.values()), dtype=np.int64),
                             {n: list(r) for n, r in self._scattered.items()}, list(self._views), owners,
                             self._layout.chunk_bits, list(self._buckets))

    # ------------------------------------------------------------------ writes
    def add(self, photo_id: str, owner: str | None, hashes: Sequence[tuple[str, int]]) -> None:
        with self._lock:
            self.remove(photo_id)
            full = self._append([photo_id] * len(hashes), [owner] * len(hashes), [v for v, _ in hashes], to_words([h for _, h in hashes]))
        self._rebuild_when(full)

    def add_many(self, photo_ids: Sequence[str], owners: Sequence[str | None], views: Sequence[str], words: np.ndarray,
                 rebuild: bool = True) -> None:
        """Append rows in bulk (no replace): for loading from the catalog and for benchmarks;
        ``rebuild=False`` leaves the bucketing to one ``rebuild`` call after the last batch."""
        with self._lock:
            full = self._append(photo_ids, owners, views, words) and rebuild
        self._rebuild_when(full)

    def _append(self, photo_ids: Sequence[str], owners: Sequence[str | None], views: Sequence[str], words: np.ndarray) -> bool:
        """The rows appended (under the lock); whether enough rows are unbucketed to bucket them all again."""
        count = len(photo_ids)
        self._grow(self._n + count)
        self._words[self._n : self._n + count] = words
        self._alive[self._n : self._n + count] = True
        self._owner_codes[self._n : self._n + count] = [self._owner_code.setdefault(o or "", len(self._owner_code)) for o in owners]
        self._view_of_row[self._n : self._n + count] = [self._view_number(v) for v in views]
        at = self._n
        for photo_id, run in groupby(photo_ids):
            length = sum(1 for _ in run)
            self._photo_of_row[at : at + length] = self._file_rows(photo_id, at, length)
            at += length
        self._n += count
        return self._n - self._built > self._rebuild_after

    def _rebuild_when(self, full: bool) -> None:
        """Bucket again if ``full``: in a thread, or here, with the lock let go (a rebuild takes the
        rebuild lock and then the lock, so waiting for the first while holding the second, as
        another thread's rebuild is under way, would deadlock)."""
        if not full:
            return
        if not self._background:
            self.rebuild(only_if_full=True)
            return
        with self._lock:
            if self._rebuilder is None or not self._rebuilder.is_alive():
                self._rebuilder = threading.Thread(target=self.rebuild, name="hash-index-rebuild", daemon=True)
                self._rebuilder.start()

    def _view_number(self, view: str) -> int:
        if view not in self._view_code:
            self._view_code[view] = len(self._views)
            self._views.append(view)
        return self._view_code[view]

    def _file_rows(self, photo_id: str, first: int, count: int) -> int:
        """The photo's number, recording rows ``first`` to ``first + count - 1`` as its own."""
        number = self._number_of.get(photo_id)
        if number is not None:  # more rows of a photo already filed: listed one by one
            self._scattered.setdefault(number, list(range(int(self._first_row[number]), int(self._first_row[number] + self._row_count[number]))))
            self._scattered[number].extend(range(first, first + count))
            return number
        number = len(self._photo_ids)
        if number >= len(self._first_row):
            self._first_row = np.resize(self._first_row, max(2 * number, 1024))
            self._row_count = np.resize(self._row_count, max(2 * number, 1024))
        self._photo_ids.append(photo_id)
        self._number_of[photo_id] = number
        self._first_row[number], self._row_count[number] = first, count
        return number

    def remove(self, photo_id: str) -> None:
        with self._lock:
            number = self._number_of.pop(photo_id, None)
            if number is None:
                return
            scattered = self._scattered.pop(number, None)
            if scattered is not None:
                self._alive[scattered] = False
            else:
                self._alive[self._first_row[number] : self._first_row[number] + self._row_count[number]] = False

    def rebuild(self, only_if_full: bool = False) -> None:
        """Bucket every row so far (counting sort per substring), outside the lock: the rows so
        far never change (``_grow`` copies them), and lookups use the old buckets meanwhile.
        ``only_if_full``: nothing to do unless the unbucketed rows are still past
        ``rebuild_after`` (another thread's rebuild may have bucketed them meanwhile)."""
        with self._rebuild_lock:
            with self._lock:
                if only_if_full and self._n - self._built <= self._rebuild_after:
                    return
                n, words = self._n, self._words[: self._n]
            layout = self._fixed_layout or layout_for(n)
            buckets = []
            for i in range(layout.count):
                column = chunk_column(words, layout, i)
                order = np.argsort(column, kind="stable").astype(np.int32 if n < 2**31 else np.int64)
                offsets = np.zeros((1 << layout.chunk_bits) + 1, dtype=np.int32 if n < 2**31 else np.int64)
                np.cumsum(np.bincount(column, minlength=1 << layout.chunk_bits), out=offsets[1:])
                buckets.append((offsets, order))
            with self._lock:
                self._buckets, self._layout, self._built = buckets, layout, n

    def reserve(self, rows: int) -> None:
        """Room for ``rows`` rows in all, allocated once: a bulk load that knows its size saves the
        doublings' spare room (up to half the row arrays) and their copies."""
        with self._lock:
            self._grow(rows, exactly=True)

    def _grow(self, size: int, exactly: bool = False) -> None:
        if size <= len(self._alive):
            return
        capacity = size if exactly else max(size, 2 * len(self._alive))
        self._words = np.resize(self._words, (capacity, _WORDS))
        self._alive = np.concatenate([self._alive, np.zeros(capacity - len(self._alive), dtype=bool)])
        self._owner_codes = np.concatenate([self._owner_codes, np.zeros(capacity - len(self._owner_codes), dtype=np.int32)])
        self._photo_of_row = np.resize(self._photo_of_row, capacity)
        self._view_of_row = np.resize(self._view_of_row, capacity)

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
            # Distances first, then the few rows within the radius checked (alive, the owner's):
            # checking every candidate first cost a random read each (4 ms at ten million photos).
            dist = pair_distances(self._words, rows, query_words, qids)
            within = dist <= radius
            rows, qids, dist = rows[within], qids[within], dist[within]
            keep = self._alive[rows]
            if owner is not None:
                keep &= self._owner_codes[rows] == self._owner_code.get(owner, -1)
            rows, qids, dist = rows[keep], qids[keep], dist[keep]
            hits: dict[str, IndexHit] = {}
            for i in np.lexsort((qids, dist)).tolist():  # closest first, then the first query
                row = int(rows[i])
                photo_id = self._photo_ids[self._photo_of_row[row]]
                if photo_id != exclude and photo_id not in hits:
                    hits[photo_id] = IndexHit(photo_id, self._views[self._view_of_row[row]], int(dist[i]), int(qids[i]))
        return sorted(hits.values(), key=lambda hit: (hit.distance, hit.photo_id))

    def scan(self, queries: Sequence[int], radius: int) -> list[tuple[str, int]]:
        """Brute force over every live row: the baseline the benchmark compares against."""
        query_words = to_words(queries)
        with self._lock:
            dist = distances(self._words[: self._n], query_words).min(axis=1)
            rows = np.flatnonzero((dist <= radius) & self._alive[: self._n])
            return sorted({(self._photo_ids[self._photo_of_row[r]], int(dist[r])) for r in rows.tolist()}, key=lambda x: (x[1], x[0]))

    def _bucketed_candidates(self, queries: Sequence[int], radius: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, query index) of every bucketed row sharing a probed substring with a query."""
        empty = np.zeros(0, dtype=np.int64)
        if not self._buckets:
            return empty, empty
        layout = self._layout
        masks = np.array(flip_masks(layout.chunk_bits, layout.probe_radius(radius)), dtype=np.int64)
        query_words = to_words(queries)
        qids = np.repeat(np.arange(len(queries)), len(masks))
        found_rows, found_qids = [], []
        for i, (offsets, order) in enumerate(self._buckets):
            keys = (chunk_column(query_words, layout, i)[:, None] ^ masks[None, :]).ravel()
            starts = offsets[keys].astype(np.int64)
            lengths = offsets[keys + 1] - starts
            total = int(lengths.sum())
            if total == 0:
                continue
            # Concatenate order[start:start + length] for every key without a Python loop.
            shifts = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
            found_rows.append(order[np.arange(total) + shifts].astype(np.int64))
            found_qids.append(np.repeat(qids, lengths))
        if not found_rows:
            return empty, empty
        return np.concatenate(found_rows), np.concatenate(found_qids)
