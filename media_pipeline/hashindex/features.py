"""The keypoint vote index: which photos share the most local-feature keys with a query.

A narrow port with two backends, like the hash index: a postings table in the catalog's
database (key -> photo, indexed by key) and numpy postings in memory (memory_features.py). One contract suite covers both.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from media_pipeline.catalog.index_changes import record_index_change
from media_pipeline.catalog.sql import SqlCatalog
from media_pipeline.hashindex.sql import scope_sql


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


class SqlFeatureIndex:
    def __init__(self, catalog: SqlCatalog) -> None:
        self.catalog = catalog

    def add(self, photo_id: str, owner: str | None, keys: Sequence[int]) -> None:
        with self.catalog._tx() as cur:
            cur.execute("DELETE FROM feature_postings WHERE photo_id = ?", (photo_id,))
            record_index_change(cur, photo_id)
            cur.executemany("INSERT INTO feature_postings (key, photo_id, owner) VALUES (?, ?, ?)",
                            [(key, photo_id, owner or "") for key in sorted(set(keys))])

    def remove(self, photo_id: str) -> None:
        with self.catalog._tx() as cur:
            if cur.execute("DELETE FROM feature_postings WHERE photo_id = ?", (photo_id,)):
                record_index_change(cur, photo_id)

    def votes(self, keys: Sequence[int], limit: int, min_votes: int, owner: str | None = None,
              exclude: str | None = None) -> list[tuple[str, int]]:
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
        with self.catalog._tx(write=False) as cur:
            # The first ``limit`` rows in key order (the primary key's), not every old row sorted by
            # photo: after an upgrade that is every posting of the library, read again each batch.
            # A photo's keys are spread over the key space, so these rows are nearly all distinct photos.
            rows = cur.fetchall("SELECT DISTINCT photo_id, owner FROM (SELECT photo_id, owner FROM feature_postings "
                                "WHERE key < ? ORDER BY key LIMIT ?) AS first_rows ORDER BY photo_id", (key, limit))
        return [(photo_id, owner or "") for photo_id, owner in rows]
