"""Multi-index hashing (Norouzi, Punjani, Fleet, CVPR 2012) over 256-bit hashes.

Each hash is cut into 16 substrings of 16 bits. By pigeonhole, two hashes within distance r
agree to within ``r // 16`` bits on at least one substring, so a search probes, for each
substring, every value within that many bits (1 value for r < 16, 17 for r < 32, 137 for
r < 48) and checks the exact distance of the candidates it finds. Nothing within r is missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Protocol, Sequence, runtime_checkable

HASH_BITS = 256
CHUNKS = 16
CHUNK_BITS = HASH_BITS // CHUNKS
_CHUNK_MASK = (1 << CHUNK_BITS) - 1


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


def chunks(value: int) -> list[int]:
    """The 16 substrings, most significant first."""
    return [(value >> (CHUNK_BITS * (CHUNKS - 1 - i))) & _CHUNK_MASK for i in range(CHUNKS)]


def probe_radius(radius: int) -> int:
    return max(0, radius) // CHUNKS


@lru_cache(maxsize=4)
def _flip_masks(bits: int, radius: int) -> tuple[int, ...]:
    masks = [0]
    for r in range(1, radius + 1):
        for positions in combinations(range(bits), r):
            masks.append(sum(1 << p for p in positions))
    return tuple(masks)


def probes(chunk: int, radius: int) -> list[int]:
    """Every substring value within ``radius`` bits of ``chunk``."""
    return [chunk ^ m for m in _flip_masks(CHUNK_BITS, radius)]


def probe_sets(queries: Sequence[int], radius: int) -> list[set[int]]:
    """For each substring position, the values any query's candidates may have there."""
    per_chunk: list[set[int]] = [set() for _ in range(CHUNKS)]
    r = probe_radius(radius)
    for query in queries:
        for i, chunk in enumerate(chunks(query)):
            per_chunk[i].update(probes(chunk, r))
    return per_chunk


def best_hits(candidates: list[tuple[str, str, int]], queries: Sequence[int], radius: int) -> list[IndexHit]:
    """Exact distances of (photo id, view, value) candidates; the best hit per photo within ``radius``."""
    best: dict[str, IndexHit] = {}
    for photo_id, view, value in candidates:
        for qi, query in enumerate(queries):
            distance = (value ^ query).bit_count()
            if distance <= radius and (photo_id not in best or distance < best[photo_id].distance):
                best[photo_id] = IndexHit(photo_id, view, distance, qi)
    return sorted(best.values(), key=lambda hit: (hit.distance, hit.photo_id))
