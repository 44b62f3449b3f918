"""The keypoint vote index in process memory: numpy postings in CSR form over sorted keys.

Like ``MemoryHashIndex``: photos get numbers once (postings hold numbers, ids looked up only for the few
voted). The built part is split by key range into segments (``KeySegment``: sorted distinct keys,
offsets into the photo numbers filed under each key, ascending), of about ``segment_postings``
postings each, so a merge copies a segment at a time, not every posting at once. Photos filed
since are in a small tail (a hash table of key to numbers in arrays, ``TailPostings``) until it
holds ``rebuild_after`` postings, then they are merged in, segment by segment, while lookups go
on. Removal marks the number dead; the merge drops dead postings too once there are enough, and
numbers the photos anew once half are dead, also a segment at a time (``rebuild``). A vote gathers
the postings of its keys from each segment and counts them (a sort, ``tallied``): its work is the
postings read, not the index size. About 3 bytes a posting (``PhotoNumbers``), 4 + 4 a distinct
key, and the photo ids. A large index is loaded in two reads of its source (``load``,
``counted_load``), straight into its segments.

Where the keys fill most of a range (the keypoint tables' keys once an index holds some ten
thousand photos), a vote finds its keys' slots in a table over that range (``key_table``), one
memory read a key, instead of a binary search over tens of millions of keys.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from media_pipeline.hashindex import counted_load
from media_pipeline.hashindex.key_segment import PHOTO_BITS, PHOTO_MASK, KeySegment, offsets_of, runs, segment_lows
from media_pipeline.hashindex.tail_postings import TailPostings

# Postings a segment holds (one is split once it holds twice this): 2^27 is ~400 MB of photo
# numbers, the most a merge or a re-sort adds at once; at ten million photos ~30 segments, whose
# separate key lookups cost a vote about a millisecond more than one set of arrays.
SEGMENT_POSTINGS = 1 << 27
_CHUNK = 1 << 24  # postings read at once by filed_below


@dataclass(frozen=True)
class FeatureState:
    """What a built feature index holds, its tail merged (``MemoryFeatureIndex.state``): what a
    snapshot writes and ``MemoryFeatureIndex.restored`` takes back."""

    segments: list[KeySegment]
    lows: np.ndarray  # uint32: segment i holds the keys from lows[i] to lows[i + 1] - 1
    ids: list[str]  # number -> photo id, the dead numbers' too
    alive: np.ndarray  # bool, a number each
    owner_codes: np.ndarray  # int32, a number each
    owners: list[str]  # code -> owner ("" for none)
    purged: int  # dead numbers whose postings the segments no longer hold


class MemoryFeatureIndex:
    def __init__(self, rebuild_after: int = 1_000_000, merge_in_background: bool = False,
                 segment_postings: int = SEGMENT_POSTINGS) -> None:
        """``merge_in_background``: a full tail is merged by a thread while lookups go on (a
        merge passes over every posting: seconds at a million photos)."""
        self._lock = threading.RLock()
        self._rebuild_lock = threading.Lock()  # one rebuild at a time
        self._rebuild_after = rebuild_after
        self._background = merge_in_background
        self._most = segment_postings
        self._merger: threading.Thread | None = None
        self._segments = [KeySegment.empty()]
        self._lows = np.zeros(1, dtype=np.uint32)  # segment i holds the keys from _lows[i] to _lows[i + 1] - 1
        self._tail = TailPostings()
        self._merging = TailPostings()  # the tail a merge under way is putting into the segments
        self._merged_below = 0  # ... which holds its keys below this already
        self._purged = 0  # dead numbers whose postings the segments no longer hold
        self._renumber: np.ndarray | None = None  # old number -> new, while a rebuild numbers the photos anew
        self._bulk: list[np.ndarray] = []  # packed (key << 32 | number) rows of add_many, sorted in at the next rebuild
        self._ids: list[str] = []  # number -> photo id
        self._numbers: dict[str, int] = {}  # live photo id -> number
        self._alive = np.zeros(1024, dtype=bool)
        self._owner_codes = np.zeros(1024, dtype=np.int32)
        self._owner_code: dict[str, int] = {"": 0}

    @classmethod
    def restored(cls, state: FeatureState, **options: Any) -> MemoryFeatureIndex:
        """An index holding ``state`` (its arrays used as they are: memory-mapped ones stay
        mapped, since a segment is never changed in place), with the constructor's ``options``."""
        index = cls(**options)
        index._segments, index._lows, index._ids = list(state.segments), state.lows, list(state.ids)
        index._alive, index._owner_codes = np.array(state.alive, dtype=bool), np.array(state.owner_codes, dtype=np.int32)
        index._numbers = {index._ids[n]: n for n in np.flatnonzero(index._alive).tolist()}
        index._owner_code = {owner: code for code, owner in enumerate(state.owners)}
        index._purged = state.purged
        return index

    def state(self) -> FeatureState:
        """What the index holds, for a snapshot; its tail must be merged first (``rebuild``). The
        arrays are views of the index's own: write them out before the index changes again."""
        with self._lock:
            if len(self._tail) or len(self._merging) or self._bulk:
                raise ValueError("the tail is not merged: rebuild first")
            count = len(self._ids)
            owners = sorted(self._owner_code, key=self._owner_code.__getitem__)
            return FeatureState(list(self._segments), self._lows, list(self._ids), self._alive[:count],
                                self._owner_codes[:count], owners, self._purged)

    # ------------------------------------------------------------------ writes
    def add(self, photo_id: str, owner: str | None, keys: Sequence[int]) -> None:
        distinct = sorted(set(keys))
        _check_keys(distinct)
        with self._lock:
            self._remove(photo_id)
            number = self._number_for(photo_id, owner)
            self._tail.add(np.array(distinct, dtype=np.uint32), number)
            full = len(self._tail) > self._rebuild_after
            if full and self._background and (self._merger is None or not self._merger.is_alive()):
                self._merger = threading.Thread(target=self.rebuild, name="feature-index-merge", daemon=True)
                self._merger.start()
        # Merged here, after the lock is let go: a merge takes the rebuild lock and then this one,
        # so holding this one while waiting for the other (a rebuild under way in another thread)
        # would deadlock, and lookups would wait for the whole merge.
        if full and not self._background:
            self.rebuild(only_if_full=True)

    def add_many(self, photo_ids: Sequence[str], owners: Sequence[str | None], counts: np.ndarray, keys: np.ndarray) -> None:
        """Append photos in bulk (no replace): photo i has the next ``counts[i]`` of ``keys``. For
        loading from the catalog and for benchmarks; searchable after ``rebuild``."""
        keys = np.asarray(keys, dtype=np.int64)
        _check_keys(keys)
        with self._lock:
            numbers = np.array([self._number_for(p, o) for p, o in zip(photo_ids, owners)], dtype=np.uint64)
            packed = (keys.astype(np.uint64) << np.uint64(PHOTO_BITS)) | np.repeat(numbers, counts)
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
                placed = counted_load.place(batches(), tally, self._ids, self._most) if tally is not None else None
            except Exception:
                self._forget_photos()  # empty again, for the caller to load another way
                raise
            if tally is None or placed is None:  # keys too many and too wide to count
                self._forget_photos()
                self.load_in_one_read(batches)
                return
            keys, counts = tally.filed()
            columns, bounds = placed
            starts = offsets_of(counts, int(bounds[-1]))[:-1]
            self._segments = []
            for column, start, end in zip(columns, bounds[:-1], bounds[1:]):
                first, stop = np.searchsorted(starts, [start, end])
                self._segments.append(KeySegment.of(keys[first:stop], counts[first:stop], column))
            self._lows = np.array(segment_lows(self._segments, 0), dtype=np.uint32)

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

    def rebuild(self, only_if_full: bool = False) -> None:
        """Bring the tail's and bulk loads' postings into the segments: merged in a segment at a
        time, outside the lock (lookups read the segments not yet replaced, and the tail being
        merged for their keys). Once an eighth of the numbers died since the last such pass, each
        segment is also rewritten without the dead photos' postings on the way; once half the
        numbers are dead, the live photos are also numbered anew (at once, under the lock: the
        ids, flags and owners), and a vote maps what it reads in the segments not yet rewritten
        through the old numbers' new ones. No pass over the postings holds the lock but the first
        build. ``only_if_full``: nothing to do unless the tail is still past ``rebuild_after``
        (another thread's rebuild may have merged it meanwhile)."""
        with self._rebuild_lock:
            with self._lock:
                if only_if_full and len(self._tail) <= self._rebuild_after:
                    return
                count = len(self._ids)
                dead = count - len(self._numbers)
                if not any(len(segment) for segment in self._segments):
                    self._first_build()
                    return
                renumbering = dead * 2 > count
                purge = renumbering or (dead - self._purged) * 8 > count
                alive = self._alive[:count].copy() if purge else None
                self._merging, self._tail = self._tail, TailPostings()
                self._merged_below = 0
                pending = _sorted_live(self._pending(self._merging), self._alive)
                if renumbering:
                    self._renumber = self._number_anew()
                    pending = _renumbered(pending, self._renumber)
                renumber, lows = self._renumber, self._lows.copy()
            # Only this thread replaces segments (the rebuild lock): they are read here unlocked.
            for i, part in enumerate(_by_segment(pending, lows)):
                pieces = None
                if len(part) or alive is not None:
                    at = int(np.searchsorted(self._lows, lows[i]))  # earlier segments may have been split
                    segment = self._segments[at] if alive is None else self._segments[at].live_only(alive, renumber)
                    pieces = segment.merged(part).split(self._most)
                    del segment
                with self._lock:
                    if pieces is not None:
                        self._segments[at : at + 1] = pieces
                        self._lows = np.concatenate([self._lows[:at], segment_lows(pieces, lows[i]), self._lows[at + 1 :]]).astype(np.uint32)
                    self._merged_below = int(lows[i + 1]) if i + 1 < len(lows) else 1 << 32
            with self._lock:
                self._merging = TailPostings()
                self._merged_below = 0
                self._renumber = None
                if purge:
                    self._purged = 0 if renumber is not None else dead

    def _number_anew(self) -> np.ndarray:
        """The live photos numbered from 0 in their order, their ids, flags and owners with them;
        returns each old number's new one (-1: dead)."""
        count = len(self._ids)
        alive = self._alive[:count]
        renumber = np.cumsum(alive, dtype=np.int64) - 1
        renumber[~alive] = -1
        live = np.flatnonzero(alive)
        self._ids = [self._ids[i] for i in live.tolist()]
        self._numbers = {photo_id: n for n, photo_id in enumerate(self._ids)}
        self._owner_codes = self._owner_codes[live].copy()
        self._alive = np.ones(len(live), dtype=bool)
        return renumber

    def _first_build(self) -> None:
        """The first build: the bulk loads' and the tail's postings sorted into segments, the live
        photos numbered anew (under the lock; there is nothing built to read meanwhile)."""
        pending = _sorted_live(self._pending(self._tail), self._alive)
        self._tail = TailPostings()
        pending = _renumbered(pending, self._number_anew())
        self._segments = KeySegment.from_sorted(pending).split(self._most)
        self._lows = np.array(segment_lows(self._segments, 0), dtype=np.uint32)
        self._purged = 0

    def _pending(self, tail: TailPostings) -> np.ndarray:
        """The ``tail``'s and the bulk loads' postings, packed, in one array; the bulk loads are emptied."""
        keys, numbers = tail.pairs()
        parts = [*self._bulk, (keys.astype(np.uint64) << np.uint64(PHOTO_BITS)) | numbers.astype(np.uint64)]
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
            numbers = self._filed_numbers(query)
            if len(self._merging):  # for the keys the merge under way has not reached
                merging = self._merging.numbers_of(query[query.astype(np.int64) >= self._merged_below])
                numbers = np.concatenate([numbers, self._current(merging)])
            if len(self._tail):
                numbers = np.concatenate([numbers, self._tail.numbers_of(query)])
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

    def _filed_numbers(self, query: np.ndarray) -> np.ndarray:
        """The numbers the segments file under ``query`` (uint32, sorted, distinct)."""
        parts = [self._current(segment.numbers(keys), low)
                 for segment, low, keys in zip(self._segments, self._lows, np.split(query, np.searchsorted(query, self._lows[1:])))
                 if len(keys)]
        return (parts[0] if len(parts) == 1 else np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int32)

    def _current(self, numbers: np.ndarray, low: int = 1 << 32) -> np.ndarray:
        """``numbers`` read from the merging tail (``low`` past every key) or from the segment
        starting at ``low``, in today's numbering: while the photos are being numbered anew, the
        old numbers of what the pass has not rewritten yet mapped to their new ones (the dead
        left out)."""
        if self._renumber is None or int(low) < self._merged_below:
            return numbers
        mapped = self._renumber[numbers]
        return mapped[mapped >= 0]

    def filed_below(self, key: int, limit: int) -> list[tuple[str, str]]:
        with self._lock:
            numbers: set[int] = set()
            for tail in (self._merging, self._tail):
                keys, filed = tail.pairs()
                filed = filed[keys < key] if key < 1 << 32 else filed
                filed = self._current(filed) if tail is self._merging else filed
                numbers.update(filed[self._alive[filed]].tolist())
            for low, segment in zip(self._lows, self._segments):
                end = len(segment) if key >= 1 << 32 else int(segment.offsets[np.searchsorted(segment.keys, np.uint32(max(key, 0)))])
                for start in range(0, end, _CHUNK):  # a batch at a time: stop once there are enough
                    if len(numbers) >= limit:
                        break
                    part = self._current(segment.photos.range(start, min(end, start + _CHUNK)), low)
                    numbers.update(np.unique(part[self._alive[part]]).tolist())
                if end < len(segment) or len(numbers) >= limit:
                    break
            owners = {code: name for name, code in self._owner_code.items()}
            found = sorted((self._ids[n], owners[int(self._owner_codes[n])]) for n in numbers)
        return found[:limit]

    def postings(self) -> int:
        """Postings held, live or not yet dropped (for benchmarks)."""
        with self._lock:
            filed = sum(len(segment) for segment in self._segments)
            return filed + len(self._merging) + len(self._tail) + sum(len(b) for b in self._bulk)

    def nbytes(self) -> int:
        """Bytes of the numpy arrays (not the photo ids' strings)."""
        with self._lock:
            arrays = (self._alive, self._owner_codes, *self._bulk)
            return int(sum(a.nbytes for a in arrays)) + sum(segment.nbytes for segment in self._segments)


def tallied(numbers: np.ndarray, min_votes: int) -> tuple[np.ndarray, np.ndarray]:
    """(each number found at least ``min_votes`` times, ascending; how many times)."""
    numbers = np.sort(numbers)
    starts, counts = runs(numbers)
    enough = counts >= min_votes
    return numbers[starts[enough]], counts[enough]


def _sorted_live(pending: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Packed postings sorted, without dead photos' and repeats."""
    pending.sort()  # in place, and not np.unique: numpy 2.3's hashes 40M values ten times slower than it sorts them
    keep = alive[(pending & PHOTO_MASK).astype(np.int64)]
    keep[1:] &= pending[1:] != pending[:-1]
    return pending[keep]


def _renumbered(pending: np.ndarray, renumber: np.ndarray) -> np.ndarray:
    """Packed live postings with their numbers mapped (ascending, so the order holds)."""
    numbers = renumber[(pending & PHOTO_MASK).astype(np.int64)].astype(np.uint64)
    return (pending & ~PHOTO_MASK) | numbers


def _by_segment(pending: np.ndarray, lows: np.ndarray) -> list[np.ndarray]:
    """Sorted packed postings split by the segments that start at ``lows``."""
    return np.split(pending, np.searchsorted(pending, lows[1:].astype(np.uint64) << np.uint64(PHOTO_BITS)))


def _check_keys(keys: Sequence[int] | np.ndarray) -> None:
    # numpy's own min and max on arrays: a load's millions of keys never pass through Python.
    low, high = (int(keys.min()), int(keys.max())) if isinstance(keys, np.ndarray) and len(keys) else (min(keys, default=0), max(keys, default=0))
    if not (0 <= low and high < 1 << 32):
        raise ValueError("keypoint keys must be in [0, 2^32)")
