"""Copy a catalog from one database to another: SQLite (the embedded default) into PostgreSQL,
so a team that started with ``make run`` moves without re-uploading anything.

The target gets the schema at the current migration first; then every table the source has
(read from the source itself, so tables added by later migrations come along without changes
here) is copied in foreign-key order, each in one transaction of the target: a copy killed
half-way leaves every table either whole or empty of what was copied, and ``resume`` redoes only
the tables that do not verify. A table verifies when its row count and an order-independent
checksum of its rows (the sum of each row's SHA-256, so collation and row order do not matter)
are the same on both sides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterator

from media_pipeline.catalog.database import Cursor
from media_pipeline.catalog.sql import SqlCatalog
from media_pipeline.errors import CatalogError

_BATCH = 2000
_MODULUS = 1 << 256
# The target has its own migrations, from its own migrate(); the index change log and its pruning
# mark only tell the processes of the old database what changed (the new one's load the index
# from its tables).
_SKIP = {"schema_migrations", "index_changes", "index_changes_pruned"}


@dataclass(frozen=True)
class TableCopy:
    table: str
    rows: int
    copied: bool  # False: it verified already (a resumed copy) and was left alone
    checksum: str


def copy_catalog(source: SqlCatalog, target: SqlCatalog, resume: bool = False,
                 progress: Callable[[str, int], None] = lambda table, rows: None) -> list[TableCopy]:
    """Copy ``source`` into ``target``; raises CatalogError when the target holds photos and
    ``resume`` is not set, or when a table does not verify after its copy."""
    if source.dialect != "sqlite":
        raise CatalogError("the source must be an SQLite catalog")
    source.migrate()  # at the current migration, like the target: the same columns on both sides
    target.migrate()
    tables = _tables_in_order(source)
    if not resume and any(_count(target, table) for table in tables):
        raise CatalogError("the target catalog is not empty: copy into an empty one, or pass --resume to finish a copy")
    done = []
    for table in tables:
        columns = _columns(source, table)
        expected = _summary(source, table, columns)
        if resume and _summary(target, table, columns) == expected:
            done.append(TableCopy(table, expected[0], False, f"{expected[1]:064x}"))
            continue
        with target._tx() as out:
            out.execute(f"DELETE FROM {table}")
            insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            copied = 0
            for batch in _batches(source, table, columns):
                out.executemany(insert, batch)
                copied += len(batch)
                progress(table, copied)
        found = _summary(target, table, columns)
        if found != expected:
            raise CatalogError(f"{table}: {found[0]} rows copied of {expected[0]}, or their checksum differs")
        done.append(TableCopy(table, expected[0], True, f"{expected[1]:064x}"))
    return done


def _tables_in_order(source: SqlCatalog) -> list[str]:
    """The source's tables, each after the tables its foreign keys point at."""
    with source._tx(write=False) as cur:
        names = sorted(r[0] for r in cur.fetchall("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))
        parents = {name: {r[2] for r in cur.fetchall(f"PRAGMA foreign_key_list({name})")} - {name} for name in names}
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        if not ready:
            raise CatalogError("the source's foreign keys form a cycle")
        ordered.extend(ready)
    return [n for n in ordered if n not in _SKIP]


def _columns(source: SqlCatalog, table: str) -> list[str]:
    with source._tx(write=False) as cur:
        return [r[1] for r in cur.fetchall(f"PRAGMA table_info({table})")]


def _batches(source: SqlCatalog, table: str, columns: list[str]) -> Iterator[list[tuple]]:
    """The rows in rowid order, a batch at a time, each batch in its own read."""
    after = -(1 << 63)
    while True:
        with source._tx(write=False) as cur:
            rows = cur.fetchall(f"SELECT rowid, {', '.join(columns)} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT {_BATCH}", (after,))
        if not rows:
            return
        after = rows[-1][0]
        yield [tuple(r[1:]) for r in rows]


def _count(catalog: SqlCatalog, table: str) -> int:
    with catalog._tx(write=False) as cur:
        return int(cur.fetchall(f"SELECT COUNT(*) FROM {table}")[0][0])


def _summary(catalog: SqlCatalog, table: str, columns: list[str]) -> tuple[int, int]:
    """(rows, the sum of their SHA-256 digests mod 2^256)."""
    total = count = 0
    with catalog._tx(write=False) as cur:
        for row in _all_rows(cur, table, columns):
            digest = hashlib.sha256(repr(tuple(_canonical(v) for v in row)).encode()).digest()
            total = (total + int.from_bytes(digest, "big")) % _MODULUS
            count += 1
    return count, total


def _all_rows(cur: Cursor, table: str, columns: list[str]) -> list[tuple]:
    return cur.fetchall(f"SELECT {', '.join(columns)} FROM {table}")


def _canonical(value: object) -> object:
    """The same value as each driver returns it: floats that are whole stay floats, ints ints."""
    if isinstance(value, memoryview):
        return bytes(value)
    return value
