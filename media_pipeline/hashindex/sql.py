"""The index as a table in the catalog's database (SQLite or PostgreSQL).

One row per stored hash: the value as four signed 64-bit words, and its 16 substrings in 16
indexed integer columns. Each substring's index carries the value and a row number and nothing
else, so a lookup never visits the table and reads as few index pages as it can (at a million
rows a query has ~4,000 random candidates, and the pages they sit on are most of its cost). Where
the distance is checked decides the rest: PostgreSQL (14 or later, for ``bit_count``) checks it
inside one ``UNION ALL`` of a lookup per (query, substring), each filtered by its own query's
distance, so only matches cross the wire; SQLite has no popcount, so it runs one
``c0 IN (...) OR c1 IN (...)`` lookup (its OR-by-union plan) and its candidates are checked here.
Then a second, small statement reads the photo id, view and owner of the matches alone.
"""

from __future__ import annotations

from typing import Sequence

from media_pipeline.catalog.index_changes import record_index_change
from media_pipeline.catalog.sql import SqlCatalog
from media_pipeline.hashindex.base import SQL_LAYOUT, IndexHit, best_hits

_COLUMNS = ", ".join(f"c{i}" for i in range(SQL_LAYOUT.count))
_WORDS = ("h0", "h1", "h2", "h3")


def to_signed_words(value: int) -> tuple[int, int, int, int]:
    """A 256-bit value as four BIGINTs, most significant first (two's complement)."""
    words = [(value >> (64 * (3 - w))) & ((1 << 64) - 1) for w in range(4)]
    return tuple(w - (1 << 64) if w >= 1 << 63 else w for w in words)  # type: ignore[return-value]


def from_signed_words(words: Sequence[int]) -> int:
    value = 0
    for word in words:
        value = (value << 64) | (word & ((1 << 64) - 1))
    return value


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
        rows = [(photo_id, view, owner or "", *to_signed_words(value), *SQL_LAYOUT.chunks(value)) for view, value in hashes]
        with self.catalog._tx() as cur:
            cur.execute("DELETE FROM hash_index WHERE photo_id = ?", (photo_id,))
            record_index_change(cur, photo_id)
            if rows:
                marks = ", ".join("?" * (7 + SQL_LAYOUT.count))
                cur.executemany(f"INSERT INTO hash_index (photo_id, view, owner, {', '.join(_WORDS)}, {_COLUMNS}) VALUES ({marks})", rows)

    def remove(self, photo_id: str) -> None:
        with self.catalog._tx() as cur:
            if cur.execute("DELETE FROM hash_index WHERE photo_id = ?", (photo_id,)):
                record_index_change(cur, photo_id)

    def count(self) -> int:
        with self.catalog._tx(write=False) as cur:
            return int(cur.fetchall("SELECT COUNT(*) FROM hash_index")[0][0])

    def search(self, queries: Sequence[int], radius: int, owner: str | None = None,
               exclude: str | None = None) -> list[IndexHit]:
        if not queries:
            return []
        postgres = self.catalog.dialect == "postgresql"
        rid = "rid" if postgres else "rowid"
        if postgres:
            sql, params = _postgres_search(queries, radius)
        else:
            # The probe values are ints made here, so they are written into the statement:
            # hundreds of bind parameters would cost more than the lookups.
            terms = [f"c{i} IN ({_in_list(values)})" for i, values in enumerate(SQL_LAYOUT.probe_sets(queries, radius))]
            sql, params = f"SELECT rowid, {', '.join(_WORDS)} FROM hash_index WHERE {' OR '.join(terms)}", []
        with self.catalog._tx(write=False) as cur:
            values = {row_id: from_signed_words(words) for row_id, *words in cur.fetchall(sql, params)}
            if not postgres:
                values = {row_id: v for row_id, v in values.items() if any((v ^ q).bit_count() <= radius for q in queries)}
            if not values:
                return []
            marks = ", ".join("?" * len(values))
            rows = cur.fetchall(f"SELECT {rid}, photo_id, view, owner FROM hash_index WHERE {rid} IN ({marks})", list(values))
        # Scope and exclusion apply to the few matches, so the lookups above stay index-only.
        return best_hits([(photo_id, view, values[row_id]) for row_id, photo_id, view, row_owner in rows
                          if (owner is None or (row_owner or "") == owner) and photo_id != exclude], queries, radius)


def _in_list(values: set[int]) -> str:
    return ", ".join(map(str, sorted(values)))


_POPCOUNT = "+".join(f"bit_count((t.{w}#q.{w})::bit(64))" for w in _WORDS)
# The first half of the value alone: an unrelated candidate differs in about 64 of those 128 bits,
# so this half-price test turns away almost every one of the ~250 rows a (query, substring) lookup reads at a million rows, and
# the full count runs on the few left (what a candidate is within r of, its half is too).
_HALF_POPCOUNT = "+".join(f"bit_count((t.{w}#q.{w})::bit(64))" for w in _WORDS[:2])


def _postgres_search(queries: Sequence[int], radius: int) -> tuple[str, list[object]]:
    """One lookup per (query, substring), each filtered by its own query's distance, in one
    statement. Everything that varies is a parameter and the text stays short, so for a one-hash
    search psycopg caches the parsed statement, prepares it, and PostgreSQL plans it once."""
    rows, parts, params, arrays = [], [], [], []
    for qi, query in enumerate(queries):
        rows.append(f"({qi}," + ",".join(["%s::int8"] * 4) + ")")
        params += [*to_signed_words(query)]
        for i, values in enumerate(SQL_LAYOUT.probe_sets([query], radius)):
            parts.append(f"SELECT t.rid,t.h0,t.h1,t.h2,t.h3 FROM hash_index t,q WHERE q.i={qi} AND c{i}=ANY(%s::int[])"
                         f" AND {_HALF_POPCOUNT}<={int(radius)} AND {_POPCOUNT}<={int(radius)}")
            arrays.append(sorted(values))
    sql = f"WITH q(i,h0,h1,h2,h3) AS (VALUES {','.join(rows)}) " + " UNION ALL ".join(parts)
    return sql.replace("%s", "?"), params + arrays
