"""Multi-index hashing (Norouzi, Punjani, Fleet, CVPR 2012) over 256-bit hashes.

Each hash is cut into m substrings of b bits (the ``Layout``; 256 - m*b low bits are left out of
the substrings but not out of the distance). By pigeonhole, two hashes within distance r agree to
within ``r // m`` bits on at least one substring, so a search probes, for each substring, every
value within that many bits and checks the exact distance of the candidates it finds. Nothing
within r is missed. The SQL table uses 16 x 16 bits (17 probes per substring at r = 31); the
memory index picks b near log2(rows), as the paper advises, so buckets hold about one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Protocol, Sequence, runtime_checkable

HASH_BITS = 256


@dataclass(frozen=True)
class IndexHit:
    """The closest stored hash of one photo to any of the queries."""

    photo_id: str
    view: str
    distance: int
    query: int  # index into the queries searched with


@runtime_checkable
class HashIndex(Protocol):
    def add(self, photo_id: str, owner: str | None, hashes: Sequence[tuple[str, int]]) -> None:
        """Index (view, 256-bit value) pairs for a photo, replacing what it had; idempotent."""

    def remove(self, photo_id: str) -> None:
        """Forget a photo; a no-op if it is not indexed."""

    def search(self, queries: Sequence[int], radius: int, owner: str | None = None,
               exclude: str | None = None) -> list[IndexHit]:
        """Every photo with a stored hash within ``radius`` of any query (only ``owner``'s photos
        when given, "" being photos without one; never ``exclude``), one hit per photo, closest
        first (ties by photo id)."""

    def count(self) -> int:
        """Stored hashes."""


@lru_cache(maxsize=16)
def flip_masks(bits: int, radius: int) -> tuple[int, ...]:
    """Every ``bits``-bit mask with at most ``radius`` bits set."""
    masks = [0]
    for r in range(1, radius + 1):
        for positions in combinations(range(bits), r):
            masks.append(sum(1 << p for p in positions))
    return tuple(masks)


@dataclass(frozen=True)
class Layout:
    chunk_bits: int = 16

    @property
    def count(self) -> int:
        return HASH_BITS // self.chunk_bits

    def chunks(self, value: int) -> list[int]:
        """The substrings, most significant first."""
        mask, b = (1 << self.chunk_bits) - 1, self.chunk_bits
        return [(value >> (HASH_BITS - b * (i + 1))) & mask for i in range(self.count)]

    def probe_radius(self, radius: int) -> int:
        return max(0, radius) // self.count

    def probe_sets(self, queries: Sequence[int], radius: int) -> list[set[int]]:
        """For each substring position, the values any query's candidates may have there."""
        per_chunk: list[set[int]] = [set() for _ in range(self.count)]
        masks = flip_masks(self.chunk_bits, self.probe_radius(radius))
        for query in queries:
            for i, chunk in enumerate(self.chunks(query)):
                per_chunk[i].update(chunk ^ m for m in masks)
        return per_chunk


SQL_LAYOUT = Layout(16)


def best_hits(candidates: list[tuple[str, str, int]], queries: Sequence[int], radius: int) -> list[IndexHit]:
    """Exact distances of (photo id, view, value) candidates; the best hit per photo within ``radius``."""
    best: dict[str, IndexHit] = {}
    for photo_id, view, value in candidates:
        for qi, query in enumerate(queries):
            distance = (value ^ query).bit_count()
            if distance <= radius and (photo_id not in best or distance < best[photo_id].distance):
                best[photo_id] = IndexHit(photo_id, view, distance, qi)
    return sorted(best.values(), key=lambda hit: (hit.distance, hit.photo_id))
