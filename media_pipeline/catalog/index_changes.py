"""The near-duplicate indexes' change log: one row per photo filed in or removed from
``hash_index`` / ``feature_postings``, written in the same transaction as the rows, numbered by
the database. A process that keeps the indexes in memory (MP_DUPLICATE_INDEX=memory) reads the
rows after the last number it applied and reads those photos' index rows again."""

from __future__ import annotations

from media_pipeline.catalog.database import Cursor


def record_index_change(cur: Cursor, photo_id: str) -> None:
    cur.execute("INSERT INTO index_changes (photo_id) VALUES (?)", (photo_id,))


def changes_after(cur: Cursor, seq: int, limit: int) -> list[tuple[int, str]]:
    """Up to ``limit`` (number, photo id) after ``seq``, in number order."""
    return [(int(s), p) for s, p in cur.fetchall("SELECT seq, photo_id FROM index_changes WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))]


def last_change(cur: Cursor) -> int:
    return int(cur.fetchall("SELECT COALESCE(MAX(seq), 0) FROM index_changes")[0][0])
