"""Lists of PDQ hashes that uploads must not match (hash-sharing programmes' lists, a team's own).

A list is a name, a match distance and its hashes. Parsing and matching are pure; reading a
list's text from a file or a URL is the service's (``service.build_services``). Matching is a
vectorised scan of 4 x 64-bit words per hash: 1 million hashes take a few milliseconds, and a
list is matched once per upload, not per rendition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from media_pipeline.models import Hashes

MIN_QUALITY = 50  # PDQ's reference: a hash of lower quality (flat, near blank) matches too much
_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9_.-]{1,64})(@(?P<distance>\d{1,3}))?=(?P<source>.+)$")
DEFAULT_DISTANCE = 31


@dataclass(frozen=True)
class Source:
    name: str
    distance: int
    location: str  # a file path or an http(s) URL


@dataclass(frozen=True)
class Hit:
    list: str
    distance: int


@dataclass(frozen=True)
class HashList:
    name: str
    distance: int
    words: np.ndarray  # (n, 4) uint64, most significant word first

    def __len__(self) -> int:
        return len(self.words)


@dataclass(frozen=True)
class Blocklists:
    lists: tuple[HashList, ...] = field(default=())

    def match(self, hashes: Hashes | None) -> list[Hit]:
        """The lists ``hashes`` is within distance of, nearest first; none for a photo without a
        PDQ hash or with one below MIN_QUALITY."""
        if not self.lists or hashes is None or hashes.pdq is None or (hashes.pdq_quality or 0) < MIN_QUALITY:
            return []
        query = _words([hashes.pdq])[0]
        hits = []
        for hash_list in self.lists:
            if len(hash_list) == 0:
                continue
            distances = np.bitwise_count(hash_list.words ^ query).sum(axis=1)
            nearest = int(distances.min())
            if nearest <= hash_list.distance:
                hits.append(Hit(hash_list.name, nearest))
        return sorted(hits, key=lambda h: (h.distance, h.list))


def parse_sources(setting: str) -> list[Source]:
    """``NAME[@DISTANCE]=SOURCE`` entries, comma-separated; ValueError says what is wrong."""
    sources = []
    for entry in filter(None, (e.strip() for e in setting.split(","))):
        found = _ENTRY.match(entry)
        if found is None:
            raise ValueError(f"{entry!r} is not NAME[@DISTANCE]=SOURCE")
        distance = int(found["distance"]) if found["distance"] else DEFAULT_DISTANCE
        if distance > 128:
            raise ValueError(f"{entry!r}: a distance is at most 128 bits of 256")
        sources.append(Source(found["name"], distance, found["source"].strip()))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError("list names must be unique")
    return sources


def parse_list(source: Source, text: str) -> HashList:
    """One PDQ hash (64 hex digits) first on each line; blank lines and ``#`` comments skipped,
    anything after the hash (a quality, an id) ignored. A malformed line is an error: a list
    half read would let through what it should stop."""
    hashes = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        first = re.split(r"[\s,;]+", line, maxsplit=1)[0]
        if not _HEX.match(first):
            raise ValueError(f"blocklist {source.name} ({source.location}) line {number}: not a PDQ hash")
        hashes.append(first.lower())
    return HashList(source.name, source.distance, _words(hashes))


def _words(hex_hashes: list[str]) -> np.ndarray:
    if not hex_hashes:
        return np.zeros((0, 4), np.uint64)
    return np.array([[int(h[i : i + 16], 16) for i in range(0, 64, 16)] for h in hex_hashes], dtype=np.uint64)
