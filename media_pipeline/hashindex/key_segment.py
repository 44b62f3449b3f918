"""One key range's part of the keypoint index: its distinct keys, offsets into its photo numbers,
and the numbers (``PhotoNumbers``), each array its own.

The postings are split by key range so that a merge, which writes new arrays beside the ones
lookups are reading, copies one segment at a time: the memory it adds is a segment's, not the
whole index's (at ten million photos the postings are 12 GB, and a merge of them all at once
did not fit in this machine's 23 GiB). A segment is not changed once built; ``merged``,
``live_only`` and ``split`` return new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from media_pipeline.hashindex.key_table import Direct, direct_slots, key_slots
from media_pipeline.hashindex.photo_numbers import PhotoNumbers

PHOTO_BITS = 32
PHOTO_MASK = np.uint64((1 << PHOTO_BITS) - 1)
_CHUNK = 1 << 24  # postings a re-sort renumbers at once


def gather(offsets: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """The positions ``offsets[s]`` to ``offsets[s + 1] - 1`` of every slot, concatenated, without a Python loop."""
    starts = offsets[slots].astype(np.int64)
    lengths = offsets[slots + 1] - starts
    ends = np.cumsum(lengths)
    if not len(ends) or ends[-1] == 0:
        return np.zeros(0, dtype=np.int64)
    return np.arange(int(ends[-1])) + np.repeat(starts - (ends - lengths), lengths)


def runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each run of equal values in ``values`` (sorted) starts, and how long it is."""
    if not len(values):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    change = np.empty(len(values), dtype=bool)
    change[0] = True
    np.not_equal(values[1:], values[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    return starts, np.diff(np.append(starts, len(values)))


def segment_lows(pieces: list[KeySegment], low: int) -> list[int]:
    """The keys consecutive ``pieces`` of one key range start at: the range's ``low``, then each later piece's first key."""
    return [int(low), *(int(piece.keys[0]) for piece in pieces[1:])]


def piece_bounds(offsets: np.ndarray, most: int) -> list[int]:
    """Slots that cut the runs ``offsets`` delimit into pieces of whole runs of about ``most``
    postings or fewer (a longer run is a piece of its own): 0, ..., ``len(offsets) - 1``."""
    cuts = np.searchsorted(offsets, np.arange(most, int(offsets[-1]), most), side="right") - 1
    return [0, *sorted({int(c) for c in cuts.tolist() if 0 < c < len(offsets) - 1}), len(offsets) - 1]


def offsets_of(counts: np.ndarray, postings: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int32 if postings < 2**31 else np.int64)


@dataclass(frozen=True)
class KeySegment:
    keys: np.ndarray  # uint32, sorted, distinct, each with one posting or more
    offsets: np.ndarray  # len(keys) + 1: key i's photo numbers are photos[offsets[i]:offsets[i + 1]]
    photos: PhotoNumbers  # ascending within each key
    direct: Direct | None  # a table over the keys' range where they fill it (key_table)

    @classmethod
    def of(cls, keys: np.ndarray, counts: np.ndarray, photos: PhotoNumbers) -> KeySegment:
        return cls(keys, offsets_of(counts, len(photos)), photos, direct_slots(keys))

    @classmethod
    def empty(cls) -> KeySegment:
        return cls(np.zeros(0, np.uint32), np.zeros(1, np.int32), PhotoNumbers.of(np.zeros(0, np.int32)), None)

    @classmethod
    def from_sorted(cls, pending: np.ndarray) -> KeySegment:
        """From packed postings (key << 32 | number), sorted and without repeats."""
        keys = (pending >> np.uint64(PHOTO_BITS)).astype(np.uint32)
        starts, counts = runs(keys)
        return cls.of(keys[starts], counts, PhotoNumbers.of((pending & PHOTO_MASK).astype(np.int32)))

    def __len__(self) -> int:
        return len(self.photos)

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.offsets.nbytes + self.photos.nbytes + (self.direct.slots.nbytes if self.direct else 0)

    def numbers(self, query: np.ndarray) -> np.ndarray:
        """The photo numbers filed under ``query`` (uint32, sorted, distinct), one per posting."""
        return self.photos.take(gather(self.offsets, key_slots(self.keys, self.direct, query)))

    def merged(self, pending: np.ndarray) -> KeySegment:
        """A new segment with ``pending`` (packed, sorted, no repeats, every number newer than this
        segment's) put after their keys' runs, so each run stays in number order."""
        if not len(pending):
            return self
        if not len(self.keys):
            return KeySegment.from_sorted(pending)
        new_keys, new_photos = (pending >> np.uint64(PHOTO_BITS)).astype(np.uint32), (pending & PHOTO_MASK).astype(np.int32)
        starts, added = runs(new_keys)
        distinct = new_keys[starts]
        slots = np.searchsorted(self.keys, distinct)
        present = self.keys[np.minimum(slots, len(self.keys) - 1)] == distinct
        ends = np.where(present, self.offsets[np.minimum(slots + 1, len(self.keys))], self.offsets[slots])
        photos = self.photos.insert(np.repeat(ends, added), new_photos)
        if present.all():  # no new key: the key table stays
            counts = np.diff(self.offsets).astype(np.int64)
            counts[slots] += added
            return KeySegment(self.keys, offsets_of(counts, len(photos)), photos, self.direct)
        counts = np.insert(np.diff(self.offsets).astype(np.int64), slots[~present], 0)
        keys = np.insert(self.keys, slots[~present], distinct[~present])
        counts[np.searchsorted(keys, distinct)] += added
        return KeySegment.of(keys, counts, photos)

    def live_only(self, alive: np.ndarray, renumber: np.ndarray | None = None) -> KeySegment:
        """The live photos' postings, each number mapped through ``renumber`` if given (ascending,
        so each key's run stays in order); keys left without postings dropped. A chunk at a time,
        so the temporaries stay ~100 MB whatever the segment's size."""
        if not len(self):
            return self
        counts = np.zeros(len(self.keys), dtype=np.int64)
        lows, highs = [], []
        for start in range(0, len(self), _CHUNK):
            end = min(start + _CHUNK, len(self))
            numbers = self.photos.range(start, end)
            keep = alive[numbers]
            first, stop = int(np.searchsorted(self.offsets, start, side="right")) - 1, int(np.searchsorted(self.offsets, end))
            counts[first:stop] += np.add.reduceat(keep, np.maximum(self.offsets[first:stop], start) - start, dtype=np.int64)
            part = PhotoNumbers.of(renumber[numbers[keep]] if renumber is not None else numbers[keep])
            lows.append(part.low)
            highs.append(part.high)
        held = counts > 0
        return KeySegment.of(self.keys[held], counts[held], PhotoNumbers(np.concatenate(lows), np.concatenate(highs)))

    def split(self, most: int) -> list[KeySegment]:
        """This segment in pieces of whole keys, each of about ``most`` postings or fewer (a key
        with more is a piece of its own); itself when it holds at most twice that."""
        if len(self) <= 2 * most:
            return [self]
        bounds = piece_bounds(self.offsets, most)
        pieces = []
        for first, stop in zip(bounds[:-1], bounds[1:]):
            start, end = int(self.offsets[first]), int(self.offsets[stop])
            photos = PhotoNumbers(self.photos.low[start:end].copy(), self.photos.high[start:end].copy())
            pieces.append(KeySegment.of(self.keys[first:stop].copy(), np.diff(self.offsets[first : stop + 1]).astype(np.int64), photos))
        return pieces
