"""Migration 19's back-fill of ``feature_keys`` (the keypoint keys' store of record, one packed
row a photo: hashindex/features.py) from the postings a catalog already holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from media_pipeline.catalog.database import Cursor

# Migration 19's back-fill on PostgreSQL: each photo's postings as one packed row, in one statement.
# A key's little-endian bytes are the last 4 of the big-endian int8 whose bytes are the key's swapped.
_SWAPPED = ("((key::int8 & 255) << 24) | (((key::int8 >> 8) & 255) << 16) | (((key::int8 >> 16) & 255) << 8)"
            " | ((key::int8 >> 24) & 255)")
BACKFILL_POSTGRES = (f"INSERT INTO feature_keys (photo_id, owner, first_key, posted, keys) SELECT photo_id, MIN(owner), MIN(key), 1, "
                      f"string_agg(substring(int8send({_SWAPPED}) from 5 for 4), ''::bytea ORDER BY key) FROM feature_postings GROUP BY photo_id")


def backfill_packed_keys_sqlite(cur: "Cursor") -> None:
    """Migration 19's back-fill on SQLite (3.40 has neither ``unhex`` nor an ordered ``group_concat``):
    the postings read in photo order a batch at a time, packed with numpy."""
    after, batch = "", 200_000
    while True:
        rows = cur.fetchall("SELECT photo_id, owner, key FROM feature_postings WHERE photo_id > ? ORDER BY photo_id, key LIMIT ?", (after, batch))
        if len(rows) == batch and rows[0][0] != rows[-1][0]:
            rows = [r for r in rows if r[0] != rows[-1][0]]  # the last photo may go on in the next batch
        elif len(rows) == batch:
            batch *= 2
            continue
        if not rows:
            return
        ids = [r[0] for r in rows]
        keys = np.array([r[2] for r in rows], dtype="<u4")
        starts = np.flatnonzero([True] + [a != b for a, b in zip(ids, ids[1:])])
        ends = np.append(starts[1:], len(rows))
        cur.executemany("INSERT INTO feature_keys (photo_id, owner, first_key, posted, keys) VALUES (?, ?, ?, 1, ?)",
                        [(ids[s], rows[s][1], int(keys[s]), keys[s:e].tobytes()) for s, e in zip(starts.tolist(), ends.tolist())])
        after = ids[-1]
