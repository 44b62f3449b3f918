"""The keypoint vote index: which photos share the most local-feature keys with a query.

A narrow port with two backends, like the hash index: tables in the catalog's database and numpy
postings in memory (memory_features.py). One contract suite covers both.

The catalog holds a photo's keys twice over in ``sql`` mode and once in ``memory`` mode:

- ``feature_keys``, the store of record: one row a photo, its sorted distinct keys packed as
  little-endian uint32 (2.1 KB a photo on PostgreSQL instead of the postings' 52.8 KB), its lowest
  key (what ``filed_below`` asks about, indexed) and whether the postings hold the keys too
  (``posted``). Written in every mode; a memory index loads from it with one ``np.frombuffer``.
- ``feature_postings`` (key -> photo, indexed by key): what an SQL vote reads. Written only when
  votes run in SQL (``postings=True``); a memory-mode filing deletes the photo's old postings and
  leaves ``posted`` 0, and ``restore_postings`` rebuilds them from the packed rows when a library
  goes back to ``sql`` (no keypoint file read).
"""

from __future__ import annotations

from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from media_pipeline.catalog.database import Cursor
from media_pipeline.catalog.index_changes import record_index_change
from media_pipeline.catalog.sql import SqlCatalog
from media_pipeline.hashindex.sql import scope_sql

PACKED_KEY = np.dtype("<u4")
_COMPARE_BATCH = 500  # photos whose packed row and postings are compared at a time


@runtime_checkable
class FeatureIndex(Protocol):
    def add(self, photo_id: str, owner: str | None, keys: Sequence[int]) -> None:
        """File a photo under its keys, replacing what it had; idempotent."""

    def remove(self, photo_id: str) -> None: ...

    def votes(self, keys: Sequence[int], limit: int, min_votes: int, owner: str | None = None,
              exclude: str | None = None) -> list[tuple[str, int]]:
        """Up to ``limit`` (photo id, shared keys) with at least ``min_votes``, most first (ties by
        id); ``owner`` scopes as in ``HashIndex.search``."""

    def filed_below(self, key: int, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` (photo id, owner or "") with a key below ``key``, in no promised order
        and not necessarily the first by id: photos filed under an older key format, to be filed
        again a batch at a time."""


def pack_keys(keys: Sequence[int] | np.ndarray) -> np.ndarray:
    """The sorted distinct keys as little-endian uint32, the packed row's layout."""
    distinct = np.unique(np.asarray(keys, dtype=np.int64))
    if len(distinct) and (distinct[0] < 0 or distinct[-1] >= 1 << 32):
        raise ValueError("keypoint keys must be in [0, 2^32)")
    return distinct.astype(PACKED_KEY)


def unpack_keys(blob: bytes | memoryview) -> np.ndarray:
    """A packed row's keys (a read-only view of ``blob``, no copy)."""
    return np.frombuffer(blob, dtype=PACKED_KEY)


class SqlFeatureIndex:
    def __init__(self, catalog: SqlCatalog, postings: bool = True) -> None:
        """``postings``: also write the postings table an SQL vote reads (``MP_DUPLICATE_INDEX=sql``);
        without it (``memory``, whose votes run in each process's arrays) only the packed rows."""
        self.catalog = catalog
        self.postings = postings

    def add(self, photo_id: str, owner: str | None, keys: Sequence[int]) -> None:
        packed = pack_keys(keys)
        with self.catalog._tx() as cur:
            cur.execute("DELETE FROM feature_postings WHERE photo_id = ?", (photo_id,))
            cur.execute("DELETE FROM feature_keys WHERE photo_id = ?", (photo_id,))
            record_index_change(cur, photo_id)
            if not len(packed):
                return
            cur.execute("INSERT INTO feature_keys (photo_id, owner, first_key, posted, keys) VALUES (?, ?, ?, ?, ?)",
                        (photo_id, owner or "", int(packed[0]), int(self.postings), packed.tobytes()))
            if self.postings:
                _insert_postings(cur, photo_id, owner, packed)

    def remove(self, photo_id: str) -> None:
        with self.catalog._tx() as cur:
            gone = cur.execute("DELETE FROM feature_keys WHERE photo_id = ?", (photo_id,))
            if cur.execute("DELETE FROM feature_postings WHERE photo_id = ?", (photo_id,)) + gone:
                record_index_change(cur, photo_id)

    def votes(self, keys: Sequence[int], limit: int, min_votes: int, owner: str | None = None,
              exclude: str | None = None) -> list[tuple[str, int]]:
        """From the postings table (a ``postings=False`` writer leaves its photos out of it)."""
        if not keys:
            return []
        # The keys are ints made here, so they are written into the statement (see SqlHashIndex).
        scope, params = scope_sql(owner, exclude)
        sql = f"SELECT photo_id, COUNT(*) FROM feature_postings WHERE key IN ({', '.join(map(str, sorted(set(keys))))}){scope}"
        sql += " GROUP BY photo_id HAVING COUNT(*) >= ? ORDER BY COUNT(*) DESC, photo_id LIMIT ?"
        params += [min_votes, limit]
        with self.catalog._tx(write=False) as cur:
            return [(photo_id, int(n)) for photo_id, n in cur.fetchall(sql, tuple(params))]

    def filed_below(self, key: int, limit: int) -> list[tuple[str, str]]:
        # A photo has a key below ``key`` when its lowest one is: one indexed range, whichever mode
        # filed it. Lowest keys first, so an upgrade's batches take the oldest format's first.
        with self.catalog._tx(write=False) as cur:
            rows = cur.fetchall("SELECT photo_id, owner FROM feature_keys WHERE first_key < ? ORDER BY first_key LIMIT ?", (key, limit))
        return sorted((photo_id, owner or "") for photo_id, owner in rows)

    # ------------------------------------------------------------------ packed rows and postings
    def restore_postings(self, limit: int) -> int:
        """Write the postings of up to ``limit`` photos filed while votes ran in memory (their
        packed row says ``posted`` 0), from the packed row; how many photos got theirs."""
        with self.catalog._tx(write=False) as cur:
            waiting = [r[0] for r in cur.fetchall("SELECT photo_id FROM feature_keys WHERE posted = 0 LIMIT ?", (limit,))]
        done = 0
        for photo_id in waiting:
            with self.catalog._tx() as cur:
                # Claimed first: on PostgreSQL the update locks the row, so a filing of the same
                # photo meanwhile waits and then replaces both tables whole.
                if not cur.execute("UPDATE feature_keys SET posted = 1 WHERE photo_id = ? AND posted = 0", (photo_id,)):
                    continue  # filed again or removed meanwhile
                owner, blob = cur.fetchall("SELECT owner, keys FROM feature_keys WHERE photo_id = ?", (photo_id,))[0]
                cur.execute("DELETE FROM feature_postings WHERE photo_id = ?", (photo_id,))
                _insert_postings(cur, photo_id, owner, unpack_keys(blob))
            done += 1
        return done

    def disagreements(self) -> Iterator[tuple[str, int, int]]:
        """(photo id, keys in its packed row, postings) of every photo whose postings are not
        exactly its packed keys, postings without a packed row included: what an SQL vote would
        miss or count wrongly. A merge of both tables in photo id order, a batch at a time."""
        after: str | None = ""
        while after is not None:
            with self.catalog._tx(write=False) as cur:
                packed = cur.fetchall("SELECT photo_id, keys FROM feature_keys WHERE photo_id > ? ORDER BY photo_id LIMIT ?",
                                      (after, _COMPARE_BATCH))
                through = packed[-1][0] if len(packed) == _COMPARE_BATCH else None  # None: to the end
                bound = " AND photo_id <= ?" if through is not None else ""
                postings = cur.fetchall(f"SELECT photo_id, key FROM feature_postings WHERE photo_id > ?{bound} ORDER BY photo_id, key",
                                        (after, through) if through is not None else (after,))
            posted: dict[str, list[int]] = {}
            for photo_id, key in postings:
                posted.setdefault(photo_id, []).append(int(key))
            stored = {photo_id: unpack_keys(blob) for photo_id, blob in packed}
            for photo_id in sorted(stored.keys() | posted.keys()):
                keys, rows = stored.get(photo_id, np.zeros(0, PACKED_KEY)), posted.get(photo_id, [])
                if not np.array_equal(keys, np.array(rows, dtype=np.int64)):
                    yield photo_id, len(keys), len(rows)
            after = through


def _insert_postings(cur: Cursor, photo_id: str, owner: str | None, keys: np.ndarray) -> None:
    cur.executemany("INSERT INTO feature_postings (key, photo_id, owner) VALUES (?, ?, ?)",
                    [(key, photo_id, owner or "") for key in keys.tolist()])
