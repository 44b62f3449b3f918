"""The keypoint vote index in process memory: numpy postings in CSR form over sorted keys.

Like ``MemoryHashIndex``: photos get numbers once (postings hold numbers, ids looked up only for the few
voted), the built part is ``keys`` (sorted, distinct), ``offsets`` into ``photos`` (the photo
numbers filed under each key, ascending); photos filed since are in a small tail (a hash table of
key to numbers in arrays, ``TailPostings``) until it holds ``rebuild_after`` postings, then they
are merged in. Removal marks the number dead; a rebuild drops dead postings and numbers. A vote
gathers the postings of its keys and counts them (a sort, ``tallied``): its work is the postings read,
not the index size. About 3 bytes a posting (``PhotoNumbers``), 4 + 4 a distinct key, and the
photo ids. A large index is loaded in two reads of its source (``load``, ``counted_load``).

Where the keys fill most of a range (the keypoint tables' keys once an index holds some ten
thousand photos), a vote finds its keys' slots in a table over that range (``_direct``,
``key_table``), one memory read a key, instead of a binary search over tens of millions of keys.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Sequence

import numpy as np

from media_pipeline.hashindex import counted_load
from media_pipeline.hashindex.key_table import Direct, direct_slots, key_slots
from media_pipeline.hashindex.photo_numbers import PhotoNumbers
from media_pipeline.hashindex.tail_postings import TailPostings

_PHOTO_BITS = 32
_PHOTO_MASK = np.uint64((1 << _PHOTO_BITS) - 1)
_CHUNK = 1 << 24  # postings handled at once in a rebuild, so its temporaries stay ~100 MB


def gather(offsets: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """The positions ``offsets[s]`` to ``offsets[s + 1] - 1`` of every slot, concatenated, without a Python loop."""
    starts = offsets[slots].astype(np.int64)
    lengths = offsets[slots + 1].astype(np.int64) - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shifts = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total) + shifts


class MemoryFeatureIndex:
    def __init__(self, rebuild_after: int = 1_000_000, merge_in_background: bool = False) -> None:
        """``merge_in_background``: a full tail is merged by a thread while lookups go on (a
        merge passes over every posting: seconds at a million photos)."""
        self._lock = threading.RLock()
        self._rebuild_lock = threading.Lock()  # one rebuild at a time
        self._rebuild_after = rebuild_after
        self._background = merge_in_background
        self._merger: threading.Thread | None = None
        self._keys = np.zeros(0, dtype=np.uint32)
        self._offsets = np.zeros(1, dtype=np.int32)
        self._photos = PhotoNumbers.of(np.zeros(0, dtype=np.int32))
        self._direct: Direct | None = None
        self._tail = TailPostings()
        self._merging = TailPostings()  # the tail a merge under way is putting into the arrays
        self._bulk: list[np.ndarray] = []  # packed (key << 32 | number) rows of add_many, sorted in at the next rebuild
        self._ids: list[str] = []  # number -> photo id
        self._numbers: dict[str, int] = {}  # live photo id -> number
        self._alive = np.zeros(1024, dtype=bool)
        self._owner_codes = np.zeros(1024, dtype=np.int32)
        self._owner_code: dict[str, int] = {"": 0}

    # ------------------------------------------------------------------ writes
    def add(self, photo_id: str, owner: str | None, keys: Sequence[int]) -> None:
        distinct = sorted(set(keys))
        _check_keys(distinct)
        with self._lock:
            self._remove(photo_id)
            number = self._number_for(photo_id, owner)
            self._tail.add(np.array(distinct, dtype=np.uint32), number)
            if len(self._tail) > self._rebuild_after:
                if not self._background:
                    self.rebuild()
                elif self._merger is None or not self._merger.is_alive():
                    self._merger = threading.Thread(target=self.rebuild, name="feature-index-merge", daemon=True)
                    self._merger.start()

    def add_many(self, photo_ids: Sequence[str], owners: Sequence[str | None], counts: np.ndarray, keys: np.ndarray) -> None:
        """Append photos in bulk (no replace): photo i has the next ``counts[i]`` of ``keys``. For
        loading from the catalog and for benchmarks; searchable after ``rebuild``."""
        keys = np.asarray(keys, dtype=np.int64)
        _check_keys(keys)
        with self._lock:
            numbers = np.array([self._number_for(p, o) for p, o in zip(photo_ids, owners)], dtype=np.uint64)
            packed = (keys.astype(np.uint64) << np.uint64(_PHOTO_BITS)) | np.repeat(numbers, counts)
            self._bulk.append(packed)

    def load(self, batches: Callable[[], Iterable[counted_load.Batch]]) -> None:
        """Fill this empty index, built, from ``batches()`` (``add_many``'s arguments a batch at a
        time). A source of up to ``counted_load.ONE_PASS_MAX`` postings is read once, through
        ``add_many``; a larger one is read twice more, the keys counted, then each posting put in
        place, so the peak memory is the built arrays' and a batch's (``counted_load``), not every
        posting packed and sorted. Keys too many and spread too wide to count are loaded through
        ``add_many`` after all. A source that changed between the counted reads raises ValueError
        and leaves the index empty."""
        with self._lock:
            if self._ids:
                raise ValueError("load fills an empty index")
            held = 0
            for batch in batches():
                self.add_many(*batch)
                held += len(batch[3])
                if held > counted_load.ONE_PASS_MAX:
                    break
            else:
                self.rebuild()
                return
            self._forget_photos()
            try:
                tally = counted_load.count(batches(), self._number_photos)
                photos = counted_load.place(batches(), tally, self._ids) if tally is not None else None
            except Exception:
                self._forget_photos()  # empty again, for the caller to load another way
                raise
            if tally is None or photos is None:  # keys too many and too wide to count
                self._forget_photos()
                self.load_in_one_read(batches)
                return
            self._keys, counts = tally.filed()
            self._offsets = _offsets(counts, len(photos))
            self._photos = photos
            self._direct = direct_slots(self._keys)

    def load_in_one_read(self, batches: Callable[[], Iterable[counted_load.Batch]]) -> None:
        """Fill this empty index, built, reading ``batches()`` once (every posting held packed and
        sorted at the end): what ``load`` falls back on."""
        with self._lock:
            for batch in batches():
                self.add_many(*batch)
            self.rebuild()

    def _forget_photos(self) -> None:
        self._ids, self._numbers, self._bulk = [], {}, []

    def _number_photos(self, photo_ids: Sequence[str], owners: Sequence[str | None]) -> None:
        for photo_id, owner in zip(photo_ids, owners):
            self._number_for(photo_id, owner)

    def remove(self, photo_id: str) -> None:
        with self._lock:
            self._remove(photo_id)

    def _remove(self, photo_id: str) -> None:
        number = self._numbers.pop(photo_id, None)
        if number is not None:
            self._alive[number] = False

    def _number_for(self, photo_id: str, owner: str | None) -> int:
        number = len(self._ids)
        if number >= len(self._alive):
            grown = max(number + 1, 2 * len(self._alive))
            self._alive = np.concatenate([self._alive, np.zeros(grown - len(self._alive), dtype=bool)])
            self._owner_codes = np.concatenate([self._owner_codes, np.zeros(grown - len(self._owner_codes), dtype=np.int32)])
        self._ids.append(photo_id)
        self._numbers[photo_id] = number
        self._alive[number] = True
        self._owner_codes[number] = self._owner_code.setdefault(owner or "", len(self._owner_code))
        return number

    def rebuild(self) -> None:
        """Bring the tail's and bulk loads' postings into the arrays: merged in, one pass over
        them outside the lock (lookups read the old arrays and the tail being merged meanwhile),
        while few photos are dead; sorted afresh under the lock, dropping dead postings and
        numbering the live photos anew, once an eighth of the numbers are dead (or at first)."""
        with self._rebuild_lock:
            with self._lock:
                dead = len(self._ids) - len(self._numbers)
                if not len(self._photos) or dead * 8 > len(self._ids):
                    self._resort()
                    return
                self._merging, self._tail = self._tail, TailPostings()
                pending = self._pending(self._merging)
                arrays, alive = (self._keys, self._offsets, self._photos), self._alive
            merged = _merged(*arrays, pending, alive)
            direct = direct_slots(merged[0]) if merged[0] is not arrays[0] else self._direct
            with self._lock:
                self._keys, self._offsets, self._photos = merged
                self._direct = direct
                self._merging = TailPostings()

    def _resort(self) -> None:
        packed = self._packed_postings()
        packed.sort()
        renumber = np.cumsum(self._alive[: len(self._ids)], dtype=np.int64) - 1
        keys, counts, photos = _split_sorted(packed, self._alive, renumber)
        del packed
        live = np.flatnonzero(self._alive[: len(self._ids)])
        self._ids = [self._ids[i] for i in live.tolist()]
        self._numbers = {photo_id: n for n, photo_id in enumerate(self._ids)}
        self._owner_codes = self._owner_codes[live].copy()
        self._alive = np.ones(len(live), dtype=bool)
        self._keys, self._photos = keys, PhotoNumbers.of(photos)
        self._offsets = _offsets(counts, len(photos))
        self._direct = direct_slots(keys)

    def _packed_postings(self) -> np.ndarray:
        """Every posting (built, bulk and tail) as key << 32 | number, in one array; the sources
        are emptied as they are copied."""
        pending = self._pending(self._tail)
        self._tail = TailPostings()
        packed = np.empty(len(self._photos) + len(pending), dtype=np.uint64)
        at = 0
        for start in range(0, len(self._keys), _CHUNK // 8):
            slots = np.arange(start, min(start + _CHUNK // 8, len(self._keys)))
            lengths = np.diff(self._offsets[slots[0] : slots[-1] + 2])
            photos = self._photos.range(int(self._offsets[slots[0]]), int(self._offsets[slots[-1] + 1])).astype(np.uint64)
            packed[at : at + len(photos)] = (np.repeat(self._keys[slots], lengths).astype(np.uint64) << np.uint64(_PHOTO_BITS)) | photos
            at += len(photos)
        self._keys, self._offsets, self._photos = np.zeros(0, np.uint32), np.zeros(1, np.int32), PhotoNumbers.of(np.zeros(0, np.int32))
        self._direct = None
        packed[at:] = pending
        return packed

    def _pending(self, tail: TailPostings) -> np.ndarray:
        """The ``tail``'s and the bulk loads' postings, packed, in one array; the bulk loads are emptied."""
        keys, numbers = tail.pairs()
        parts = [*self._bulk, (keys.astype(np.uint64) << np.uint64(_PHOTO_BITS)) | numbers.astype(np.uint64)]
        self._bulk = []
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    # ------------------------------------------------------------------ reads
    def votes(self, keys: Sequence[int], limit: int, min_votes: int, owner: str | None = None,
              exclude: str | None = None) -> list[tuple[str, int]]:
        if not keys:
            return []
        query = np.unique(np.asarray(keys, dtype=np.int64))
        query = query[(query >= 0) & (query < 1 << 32)].astype(np.uint32)  # the same type as the keys, or numpy copies them to compare
        with self._lock:
            slots = key_slots(self._keys, self._direct, query)
            numbers = self._photos.take(gather(self._offsets, slots))
            if len(self._tail) or len(self._merging):
                numbers = np.concatenate([numbers, self._merging.numbers_of(query), self._tail.numbers_of(query)])
            # Counted first, then the photos with enough votes checked (alive, the owner's, not the
            # excluded): a check per photo, not per posting, and no np.unique (at ten million
            # photos, 450,000 postings: 3.6 ms against 8.3).
            found, counts = tallied(numbers, min_votes)
            keep = self._alive[found]
            if owner is not None:
                keep &= self._owner_codes[found] == self._owner_code.get(owner, -1)
            if exclude is not None:
                keep &= found != self._numbers.get(exclude, -1)
            found, counts = found[keep], counts[keep]
            if len(counts) > limit:  # only those that can make the first ``limit``, ties included
                floor = np.partition(counts, len(counts) - limit)[len(counts) - limit]
                found, counts = found[counts >= floor], counts[counts >= floor]
            voted = [(self._ids[n], int(c)) for n, c in zip(found.tolist(), counts.tolist())]
        return sorted(voted, key=lambda x: (-x[1], x[0]))[:limit]

    def filed_below(self, key: int, limit: int) -> list[tuple[str, str]]:
        with self._lock:
            end = int(self._offsets[np.searchsorted(self._keys, np.uint32(min(max(key, 0), (1 << 32) - 1)))]) if key < 1 << 32 else len(self._photos)
            numbers: set[int] = set()
            for tail in (self._merging, self._tail):
                keys, filed = tail.pairs()
                filed = filed[keys < key] if key < 1 << 32 else filed
                numbers.update(filed[self._alive[filed]].tolist())
            for start in range(0, end, _CHUNK):  # a batch at a time: stop once there are enough
                if len(numbers) >= limit:
                    break
                part = self._photos.range(start, min(end, start + _CHUNK))
                numbers.update(np.unique(part[self._alive[part]]).tolist())
            owners = {code: name for name, code in self._owner_code.items()}
            found = sorted((self._ids[n], owners[int(self._owner_codes[n])]) for n in numbers)
        return found[:limit]

    def postings(self) -> int:
        """Postings held, live or not yet dropped (for benchmarks)."""
        with self._lock:
            return len(self._photos) + len(self._merging) + len(self._tail) + sum(len(b) for b in self._bulk)

    def nbytes(self) -> int:
        """Bytes of the numpy arrays (not the photo ids' strings)."""
        with self._lock:
            arrays = (self._keys, self._offsets, self._photos, self._alive, self._owner_codes, *self._bulk,
                      *((self._direct.slots,) if self._direct else ()))
            return int(sum(a.nbytes for a in arrays))


def tallied(numbers: np.ndarray, min_votes: int) -> tuple[np.ndarray, np.ndarray]:
    """(each number found at least ``min_votes`` times, ascending; how many times)."""
    if not len(numbers):
        return numbers, np.zeros(0, dtype=np.int64)
    numbers = np.sort(numbers)
    change = np.empty(len(numbers), dtype=bool)
    change[0] = True
    np.not_equal(numbers[1:], numbers[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    counts = np.diff(np.append(starts, len(numbers)))
    enough = counts >= min_votes
    return numbers[starts[enough]], counts[enough]


def _merged(keys: np.ndarray, offsets: np.ndarray, photos: PhotoNumbers, pending: np.ndarray,
            alive: np.ndarray) -> tuple[np.ndarray, np.ndarray, PhotoNumbers]:
    """New arrays with packed postings inserted after their keys' runs (their photo numbers are
    newer than every number in the arrays, so each run stays in number order); dead ones and
    repeats left out. The arrays given are not changed: lookups may be reading them."""
    pending.sort()  # in place, and not np.unique: numpy 2.3's hashes 40M values ten times slower than it sorts them
    keep = alive[(pending & _PHOTO_MASK).astype(np.int64)]
    keep[1:] &= pending[1:] != pending[:-1]
    pending = pending[keep]
    if not len(pending):
        return keys, offsets, photos
    new_keys, new_photos = (pending >> np.uint64(_PHOTO_BITS)).astype(np.uint32), (pending & _PHOTO_MASK).astype(np.int32)
    starts = np.flatnonzero(np.concatenate([[True], new_keys[1:] != new_keys[:-1]]))
    distinct, added = new_keys[starts], np.diff(np.append(starts, len(new_keys)))
    slots = np.searchsorted(keys, distinct)
    present = keys[np.minimum(slots, len(keys) - 1)] == distinct
    ends = np.where(present, offsets[np.minimum(slots + 1, len(keys))], offsets[slots])
    photos = photos.insert(np.repeat(ends, added), new_photos)
    counts = np.insert(np.diff(offsets).astype(np.int64), slots[~present], 0)
    keys = np.insert(keys, slots[~present], distinct[~present])
    counts[np.searchsorted(keys, distinct)] += added
    return keys, _offsets(counts, len(photos)), photos


def _offsets(counts: np.ndarray, postings: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int32 if postings < 2**31 else np.int64)


def _check_keys(keys: Sequence[int] | np.ndarray) -> None:
    # numpy's own min and max on arrays: a load's millions of keys never pass through Python.
    low, high = (int(keys.min()), int(keys.max())) if isinstance(keys, np.ndarray) and len(keys) else (min(keys, default=0), max(keys, default=0))
    if not (0 <= low and high < 1 << 32):
        raise ValueError("keypoint keys must be in [0, 2^32)")


def _split_sorted(packed: np.ndarray, alive: np.ndarray, renumber: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From sorted packed postings: the distinct keys, postings per key and the photo numbers
    (renumbered), dropping dead photos and repeated postings; a chunk at a time."""
    key_parts: list[np.ndarray] = []
    count_parts: list[np.ndarray] = []
    photo_parts: list[np.ndarray] = []
    previous: np.uint64 | None = None
    for start in range(0, len(packed), _CHUNK):
        chunk = packed[start : start + _CHUNK]
        numbers = (chunk & _PHOTO_MASK).astype(np.int64)
        repeated = np.empty(len(chunk), dtype=bool)
        repeated[1:] = chunk[1:] == chunk[:-1]
        repeated[0] = previous is not None and chunk[0] == previous
        previous = chunk[-1]
        keep = alive[numbers] & ~repeated
        keys = (chunk[keep] >> np.uint64(_PHOTO_BITS)).astype(np.uint32)
        photo_parts.append(renumber[numbers[keep]].astype(np.int32))
        if not len(keys):
            continue
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        distinct, counts = keys[starts], np.diff(np.append(starts, len(keys)))
        if key_parts and key_parts[-1][-1] == distinct[0]:  # a key's postings split across chunks
            count_parts[-1][-1] += counts[0]
            distinct, counts = distinct[1:], counts[1:]
        key_parts.append(distinct)
        count_parts.append(counts)
    if not key_parts:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros(0, np.int32)
    return np.concatenate(key_parts), np.concatenate(count_parts), np.concatenate(photo_parts)
