"""Postings filed one by one since the keypoint index's last merge: a chained hash table in numpy
arrays, so a vote looks up its thousands of keys in a few vector operations instead of one Python
dict lookup each (a full tail of a million postings cost a 7,500-key vote 3.3 ms that way).

Posting i is (``keys[i]``, ``numbers[i]``); ``head[b]`` is the last posting filed in bucket b and
``chain[i]`` the one before it in i's bucket (-1: none). Buckets are doubled as postings grow, so a
chain holds about one posting or less. Postings are only added: a merge takes them all and starts
a new table.
"""

from __future__ import annotations

import numpy as np

_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)  # multiplicative hashing: patterned keys spread too


class TailPostings:
    def __init__(self) -> None:
        self._keys = np.zeros(1024, dtype=np.uint32)
        self._numbers = np.zeros(1024, dtype=np.int32)
        self._chain = np.full(1024, -1, dtype=np.int32)
        self._bits = 10
        self._head = np.full(1 << self._bits, -1, dtype=np.int32)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, keys: np.ndarray, number: int) -> None:
        """File ``number`` under each of ``keys`` (uint32, distinct)."""
        end = self._n + len(keys)
        if end > len(self._keys):
            size = max(end, 2 * len(self._keys))
            self._keys, self._numbers = np.resize(self._keys, size), np.resize(self._numbers, size)
            self._chain = np.resize(self._chain, size)
        self._keys[self._n : end] = keys
        self._numbers[self._n : end] = number
        self._n = end
        if end > 2 << self._bits:
            while end > 2 << self._bits:
                self._bits += 1
            self._head = np.full(1 << self._bits, -1, dtype=np.int32)
            self._link(np.arange(end))  # every posting into the larger table
        else:
            self._link(np.arange(end - len(keys), end))

    def numbers_of(self, query: np.ndarray) -> np.ndarray:
        """The numbers filed under any of ``query`` (uint32, distinct), one per posting."""
        found = []
        at, wanted = self._head[self._bucket(query)], query
        while len(at):
            filed = at >= 0
            at, wanted = at[filed], wanted[filed]
            found.append(self._numbers[at[self._keys[at] == wanted]])
            at = self._chain[at]
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int32)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, numbers) of every posting, in filing order."""
        return self._keys[: self._n], self._numbers[: self._n]

    def _bucket(self, keys: np.ndarray) -> np.ndarray:
        return ((keys.astype(np.uint64) * _FIBONACCI) >> np.uint64(64 - self._bits)).astype(np.int64)

    def _link(self, postings: np.ndarray) -> None:
        """Put ``postings`` (ascending) at the front of their buckets' chains, several to a bucket
        included: grouped by bucket, each is chained to the one before it in its group."""
        buckets = self._bucket(self._keys[postings])
        order = np.argsort(buckets, kind="stable")
        buckets, postings = buckets[order], postings[order]
        first = np.ones(len(postings), dtype=bool)
        first[1:] = buckets[1:] != buckets[:-1]
        last = np.ones(len(postings), dtype=bool)
        last[:-1] = first[1:]
        before = np.empty(len(postings), dtype=np.int32)
        before[1:] = postings[:-1]
        before[first] = self._head[buckets[first]]
        self._chain[postings] = before
        self._head[buckets[last]] = postings[last]
