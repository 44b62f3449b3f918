"""Loading a keypoint index in two passes over its source: count each key's postings, then put
each posting in its place.

A load through ``add_many`` keeps every posting packed in 8 bytes and sorts them all at the end:
with the copies made on the way, 21 bytes a posting at its peak (8.1 GiB for a million photos'
400 million postings, measured), about 85 GB for ten million photos. Counting first lets the built arrays be allocated once and filled a batch at a time, so
the peak is the built arrays (3 bytes a posting) and one batch; the price is reading the source
twice. Each photo's keys must come ascending, as the catalog stores them (``keys`` of a
``feature_keys`` row); a key repeated within a photo is filed once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from media_pipeline.hashindex.key_segment import piece_bounds, runs
from media_pipeline.hashindex.photo_numbers import PhotoNumbers

# photo ids, their owners, how many keys each photo has, and the keys, photo after photo
Batch = tuple[Sequence[str], Sequence["str | None"], np.ndarray, np.ndarray]
ONE_PASS_MAX = 1 << 25  # postings a load reads in one pass (its peak ~21 bytes each: 700 MB), the
# counted load's fixed cost (arrays the size of the key range: seconds at 2^26 keys) not yet worth it
MAX_SPAN = 1 << 28  # keys spread wider need a count per value of a wider range (2 GB at 2^28): not counted
_SPARSE_MAX = 1 << 22  # distinct keys counted one by one up to here; past it, per value of their range
_PAGE = 1 << 16  # the counted range grows in whole pages


@dataclass
class KeyCounts:
    """Postings counted per key: per distinct key seen while there are few (``values``, so a small
    library's load allocates nothing the size of the key range), then per value of the range from
    ``low`` on (``values`` None), where a batch is counted in one ``np.add.at``."""

    values: np.ndarray | None = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    low: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    photos: int = 0

    def add(self, keys: np.ndarray) -> bool:
        """Count ``keys``; False when that would spread a range past ``MAX_SPAN``."""
        if not len(keys):
            return True
        if self.values is not None:
            seen, inverse = np.unique(np.concatenate([self.values, keys]), return_inverse=True)
            counts = np.zeros(len(seen), dtype=np.int64)
            counts[inverse[: len(self.values)]] = self.counts
            np.add.at(counts, inverse[len(self.values) :], 1)
            self.values, self.counts = seen, counts
            return len(seen) <= _SPARSE_MAX or self._spread(int(seen[0]), int(seen[-1]) + 1)
        if not self._spread(min(self.low, int(keys.min())), max(self.low + len(self.counts), int(keys.max()) + 1)):
            return False
        np.add.at(self.counts, keys - self.low, 1)
        return True

    def _spread(self, low: int, high: int) -> bool:
        """Counts per value of a range from ``low`` (a whole page) to at least ``high``."""
        low -= low % _PAGE
        if high - low > MAX_SPAN:
            return False
        if self.values is not None:
            dense = np.zeros(high - low, dtype=np.int64)
            dense[self.values - low] = self.counts
            self.values, self.low, self.counts = None, low, dense
        elif low < self.low or high > self.low + len(self.counts):
            grown = np.zeros(high - low, dtype=np.int64)
            grown[self.low - low : self.low - low + len(self.counts)] = self.counts
            self.low, self.counts = low, grown
        return True

    def slots(self, keys: np.ndarray) -> np.ndarray:
        """Each key's place in ``counts``: outside it (-1, or past the end) for a key not counted."""
        if self.values is None:
            return keys - self.low
        slots = np.searchsorted(self.values, keys)
        counted = slots < len(self.values)
        counted[counted] = self.values[slots[counted]] == keys[counted]
        return np.where(counted, slots, -1)

    def filed(self) -> tuple[np.ndarray, np.ndarray]:
        """(the keys with postings, ascending, as uint32; each one's count)."""
        if self.values is not None:
            return self.values.astype(np.uint32), self.counts
        present = np.flatnonzero(self.counts)
        return (present + self.low).astype(np.uint32), self.counts[present]


def distinct_postings(counts: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys as int64, each one's photo's place in the batch) with repeats within a photo dropped;
    a photo's keys out of order are an error (the source is not what this load expects)."""
    keys = np.asarray(keys, dtype=np.int64)
    place = np.repeat(np.arange(len(counts)), counts)
    same_photo = place[1:] == place[:-1]
    if (same_photo & (keys[1:] < keys[:-1])).any():
        raise ValueError("a photo's keys must come ascending for a counted load")
    keep = np.ones(len(keys), dtype=bool)
    keep[1:] = ~(same_photo & (keys[1:] == keys[:-1]))
    return keys[keep], place[keep]


def count(batches: Iterable[Batch], number_photos: Callable[[Sequence[str], Sequence["str | None"]], None]) -> KeyCounts | None:
    """The first pass: every batch's photos numbered (by ``number_photos``) and its keys counted;
    None once the keys spread past ``MAX_SPAN`` (the numbering is then incomplete)."""
    tally = KeyCounts()
    for photo_ids, owners, counts, keys in batches:
        if (np.asarray(keys) < 0).any() or (np.asarray(keys) >= 1 << 32).any():
            raise ValueError("keypoint keys must be in [0, 2^32)")
        number_photos(photo_ids, owners)
        if not tally.add(distinct_postings(counts, keys)[0]):
            return None
        tally.photos += len(photo_ids)
    return tally


def place(batches: Iterable[Batch], tally: KeyCounts, numbered: Sequence[str], most: int) -> tuple[list[PhotoNumbers], list[int]]:
    """The second pass: each posting's photo number put after those of lower numbers under its key
    (photos come in number order, so each key's run ends ascending), in columns of whole keys' runs
    of about ``most`` postings each (``key_segment.piece_bounds``): (the columns, the positions
    they start at and the total). ``numbered``: the photo ids the first pass numbered; a source
    that changed between the passes is an error, not a wrong index."""
    ends = np.cumsum(tally.counts)
    offsets = np.concatenate([[0], ends])
    bounds = sorted({int(offsets[slot]) for slot in piece_bounds(offsets, most)})
    columns = [PhotoNumbers.empty(end - start, tally.photos) for start, end in zip(bounds[:-1], bounds[1:])]
    cursor = offsets[:-1].copy()
    first = 0
    for photo_ids, _, counts, keys in batches:
        if list(photo_ids) != list(numbered[first : first + len(photo_ids)]):
            raise ValueError("the second pass over the source gave other photos than the first")
        keys, places = distinct_postings(counts, keys)
        slots = tally.slots(keys)
        if len(keys) and (slots.min() < 0 or slots.max() >= len(tally.counts)):
            raise ValueError("the second pass over the source gave other keys than the first")
        # One sort of (slot, photo) packed in 64 bits: a posting's rank among its key's in this batch.
        packed = (slots.astype(np.uint64) << np.uint64(32)) | places.astype(np.uint64)
        packed.sort()
        values = (packed >> np.uint64(32)).astype(np.int64)
        starts, sizes = runs(values)
        positions = cursor[values] + np.arange(len(values)) - np.repeat(starts, sizes)  # ascending: slots in order
        numbers = (packed & np.uint64(0xFFFFFFFF)).astype(np.int64) + first
        cuts = np.searchsorted(positions, bounds[1:-1])
        try:
            for column, start, at, put in zip(columns, bounds, np.split(positions, cuts), np.split(numbers, cuts)):
                column.put(at - start, put)
        except IndexError:  # more postings than counted
            raise ValueError("the second pass over the source gave other keys than the first") from None
        cursor[values[starts]] += sizes
        first += len(photo_ids)
    if first != tally.photos or not np.array_equal(cursor, ends):
        raise ValueError("the second pass over the source gave other postings than the first")
    return columns, bounds
