"""The near-duplicate indexes' change log: one row per photo filed in or removed from
``hash_index`` / ``feature_keys`` (and ``feature_postings``), written in the same transaction as the rows, numbered by
the database. A process that keeps the indexes in memory (MP_DUPLICATE_INDEX=memory) reads the
rows after the last number it applied and reads those photos' index rows again.

The reconciler prunes rows older than MP_INDEX_CHANGES_KEEP_SECONDS, a batch per transaction,
and raises ``index_changes_pruned.through_seq`` to the highest number it deleted in the same
transaction. A reader that still needed a number at or below that mark cannot tell which photos
it missed, so it reloads the whole index (hashindex/synced.py)."""

from __future__ import annotations

import time

from media_pipeline.catalog.database import Cursor, SqlDatabase

PRUNE_BATCH = 10_000  # rows deleted in one transaction: short locks, a bounded round


def record_index_change(cur: Cursor, photo_id: str) -> None:
    cur.execute("INSERT INTO index_changes (photo_id, created_at) VALUES (?, ?)", (photo_id, time.time()))


def changes_after(cur: Cursor, seq: int, limit: int) -> list[tuple[int, str]]:
    """Up to ``limit`` (number, photo id) after ``seq``, in number order."""
    return [(int(s), p) for s, p in cur.fetchall("SELECT seq, photo_id FROM index_changes WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))]


def last_change(cur: Cursor) -> int:
    """The highest number handed out so far, also when pruning left no row."""
    return max(int(cur.fetchall("SELECT COALESCE(MAX(seq), 0) FROM index_changes")[0][0]), pruned_through(cur))


def pruned_through(cur: Cursor) -> int:
    """Rows numbered up to this may have been pruned (0: none was)."""
    return int(cur.fetchall("SELECT through_seq FROM index_changes_pruned")[0][0])


class IndexChangeStore(SqlDatabase):
    def prune_index_changes(self, before: float, batches: int = 10, batch: int = PRUNE_BATCH) -> int:
        """Delete change rows written before ``before``, oldest first, at most ``batches`` of
        ``batch`` rows (one transaction each); how many went."""
        deleted = 0
        for _ in range(batches):
            with self._tx() as cur:
                # Up to the highest number among the oldest rows: everything at or below it goes,
                # so the mark means "numbers up to here may be gone" with no holes to track.
                top = cur.fetchall("SELECT MAX(seq) FROM (SELECT seq FROM index_changes WHERE created_at < ? "
                                   "ORDER BY created_at LIMIT ?) AS old", (before, batch))[0][0]
                if top is None:
                    return deleted
                count = cur.execute("DELETE FROM index_changes WHERE seq <= ?", (int(top),))
                cur.execute("UPDATE index_changes_pruned SET through_seq = ? WHERE through_seq < ?", (int(top), int(top)))
            deleted += count
            if count < batch:
                return deleted
        return deleted
