"""The index as a table in the catalog's database (SQLite or PostgreSQL).

One row per stored hash: the value, and its 16 substrings in 16 indexed integer columns. A
search is one statement, ``c0 IN (...) OR c1 IN (...) OR ...``, which both databases answer with
one index lookup per probe (PostgreSQL as a BitmapOr, SQLite as its OR-by-union plan); the exact
distance of each candidate is checked here.
"""

from __future__ import annotations

from typing import Sequence

from media_pipeline.catalog.sql import SqlCatalog
from media_pipeline.hashindex.base import HASH_BITS, SQL_LAYOUT, IndexHit, best_hits

_COLUMNS = ", ".join(f"c{i}" for i in range(SQL_LAYOUT.count))


def scope_sql(owner: str | None, exclude: str | None) -> tuple[str, list[object]]:
    """The `` AND …`` conditions (and their parameters) of a search's owner scope and excluded photo."""
    sql, params = "", []
    if owner is not None:
        sql += " AND owner = ?"
        params.append(owner)
    if exclude is not None:
        sql += " AND photo_id <> ?"
        params.append(exclude)
    return sql, params


class SqlHashIndex:
    def __init__(self, catalog: SqlCatalog) -> None:
        self.catalog = catalog

    def add(self, photo_id: str, owner: str | None, hashes: Sequence[tuple[str, int]]) -> None:
        rows = [(photo_id, view, owner or "", f"{value:0{HASH_BITS // 4}x}", *SQL_LAYOUT.chunks(value)) for view, value in hashes]
        with self.catalog._tx() as cur:
            cur.execute("DELETE FROM hash_index WHERE photo_id = ?", (photo_id,))
            if rows:
                marks = ", ".join("?" * (4 + SQL_LAYOUT.count))
                cur.executemany(f"INSERT INTO hash_index (photo_id, view, owner, value, {_COLUMNS}) VALUES ({marks})", rows)

    def remove(self, photo_id: str) -> None:
        with self.catalog._tx() as cur:
            cur.execute("DELETE FROM hash_index WHERE photo_id = ?", (photo_id,))

    def count(self) -> int:
        with self.catalog._tx(write=False) as cur:
            return int(cur.fetchall("SELECT COUNT(*) FROM hash_index")[0][0])

    def search(self, queries: Sequence[int], radius: int, owner: str | None = None,
               exclude: str | None = None) -> list[IndexHit]:
        if not queries:
            return []
        # The probe values are ints made here, so they are written into the statement: hundreds
        # of bind parameters would cost more than the lookups.
        terms = [f"c{i} IN ({', '.join(map(str, sorted(values)))})" for i, values in enumerate(SQL_LAYOUT.probe_sets(queries, radius))]
        scope, params = scope_sql(owner, exclude)
        sql = f"SELECT photo_id, view, value FROM hash_index WHERE ({' OR '.join(terms)}){scope}"
        with self.catalog._tx(write=False) as cur:
            rows = cur.fetchall(sql, params)
        return best_hits([(photo_id, view, int(value, 16)) for photo_id, view, value in rows], queries, radius)
