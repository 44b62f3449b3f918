"""Near-duplicate index at scale: bytes per photo, and the keypoint vote's latency by size.

    python bench/dedupe_scale.py [--photos 10000,100000] [--views 5] [--keys 400,100] [--key-bits 16]
                                 [--postgres URL] [--sqlite PATH]

Synthetic rows built in bulk (not photos run through the pipeline): per photo, ``--views``
random view hashes in ``hash_index`` and each ``--keys`` count of keypoint keys in
``feature_postings``, with 26-character photo ids like the service's. Keys are uniform over the
4 x 2^16 key space (``--key-bits`` for longer keys), the best case for a vote (real ORB keys are skewed, so their postings lists
are longer). Printed per backend, size and key count: bytes per row and per photo of each table
with its indexes (what the database reports), the same for ``feature_keys`` (each photo's keys
packed in one row) as each ``MP_DUPLICATE_INDEX`` mode writes it, the p50/p99 of a vote as a worker
casts it (``--query-keys`` keys, 100 of them a stored photo's), and then the store of record's
bytes a photo in each mode: view hashes, postings and packed keys with votes in SQL; view hashes
and packed keys with votes in memory.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from media_pipeline.catalog.sql import SqlCatalog, hash_substring_indexes  # noqa: E402
from media_pipeline.hashindex import SqlFeatureIndex  # noqa: E402
from media_pipeline.hashindex.features import pack_keys  # noqa: E402
from media_pipeline.hashindex.base import SQL_LAYOUT  # noqa: E402
from media_pipeline.hashindex.sql import to_signed_words  # noqa: E402
from media_pipeline.keypoints import KEY_BITS, TABLES  # noqa: E402

# Keys a lookup votes with: about 570 descriptors (the query's 300 and up to 100 from each of its
# three shrunk copies, keypoints.search_features) x 4 tables, measured on corpus-dev; 1,200 before them.
QUERY_KEYS = 2160
SHARED_KEYS = 100  # of them, keys of one stored photo (a repost)
VOTES = 200
WARM_UP = 20
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# The secondary indexes of feature_keys (catalog/schema.py, migration 19), dropped for the bulk load and built after.
_KEYS_INDEXES = ("CREATE INDEX feature_keys_first_key ON feature_keys (first_key)",
                 "CREATE INDEX feature_keys_unposted ON feature_keys (posted) WHERE posted = 0")
_HASH_COLUMNS = "photo_id, view, owner, h0, h1, h2, h3, " + ", ".join(f"c{i}" for i in range(SQL_LAYOUT.count))


def photo_ids(n: int, rng: np.random.Generator) -> list[str]:
    letters = rng.integers(0, 32, size=(n, 26))
    return ["".join(_ALPHABET[c] for c in row) for row in letters]


def hash_rows(ids: list[str], views: int, rng: np.random.Generator) -> Iterator[tuple[object, ...]]:
    for photo_id in ids:
        for v in range(views):
            value = int.from_bytes(rng.bytes(32), "big")
            yield (photo_id, f"view{v}", "", *to_signed_words(value), *SQL_LAYOUT.chunks(value))


def photo_keys(rng: np.random.Generator, count: int, key_bits: int) -> np.ndarray:
    return np.unique(rng.integers(0, TABLES << key_bits, size=count))


def posting_rows(ids: list[str], keys: int, key_bits: int, rng: np.random.Generator) -> Iterator[tuple[object, ...]]:
    for photo_id in ids:
        for key in photo_keys(rng, keys, key_bits).tolist():
            yield (key, photo_id, "")


def clear(catalog: SqlCatalog, table: str) -> None:
    """Empty a table and give back its space (PostgreSQL keeps deleted rows' space until a vacuum)."""
    with catalog._tx() as cur:
        cur.execute(f"{'TRUNCATE' if catalog.dialect == 'postgresql' else 'DELETE FROM'} {table}")


def load(catalog: SqlCatalog, table: str, columns: str, rows: Iterator[tuple[object, ...]], indexes: tuple[str, ...]) -> None:
    """Rows into an empty ``table`` with its secondary indexes dropped, then the indexes rebuilt."""
    postgres = catalog.dialect == "postgresql"
    clear(catalog, table)
    with catalog._tx() as cur:
        for statement in indexes:
            cur.execute(f"DROP INDEX IF EXISTS {statement.split()[2]}")
    if postgres:
        with catalog._connection().cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        catalog._connection().commit()
    else:
        marks = ", ".join("?" * len(columns.split(",")))
        with catalog._tx() as cur:
            cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
    with catalog._tx() as cur:
        for statement in indexes:
            cur.execute(statement)
    if postgres:
        catalog._connection().execute(f"VACUUM ANALYZE {table}")
    else:
        with catalog._tx() as cur:
            cur.execute("ANALYZE")


def table_bytes(catalog: SqlCatalog, table: str) -> tuple[int, int]:
    """(table, its indexes) in bytes as the database reports them."""
    with catalog._tx(write=False) as cur:
        if catalog.dialect == "postgresql":
            heap, total = cur.fetchall(f"SELECT pg_table_size('{table}'), pg_total_relation_size('{table}')")[0]
            return int(heap), int(total) - int(heap)
        sizes = dict(cur.fetchall("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
        names = [row[0] for row in cur.fetchall("SELECT name FROM sqlite_master WHERE tbl_name = ? AND type = 'index'", (table,))]
        names += [name for name in sizes if name.startswith(f"sqlite_autoindex_{table}_")]
        return int(sizes.get(table, 0)), int(sum(sizes.get(name, 0) for name in set(names)))


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def vote_latency(catalog: SqlCatalog, ids: list[str], keys: int, key_bits: int, rng: np.random.Generator,
                 query_keys: int) -> tuple[list[float], int]:
    """Vote times in ms, and how many votes ranked the repost's photo first."""
    index = SqlFeatureIndex(catalog)
    times, first = [], 0
    for q in range(WARM_UP + VOTES):
        target = ids[int(rng.integers(0, len(ids)))]
        with catalog._tx(write=False) as cur:
            stored = [row[0] for row in cur.fetchall("SELECT key FROM feature_postings WHERE photo_id = ?", (target,))]
        shared = rng.choice(stored, size=min(len(stored), SHARED_KEYS * keys // 400), replace=False).tolist()
        query = sorted(set(shared) | set(photo_keys(rng, query_keys - len(shared), key_bits).tolist()))
        started = time.perf_counter()
        voted = index.votes(query, limit=10, min_votes=2)
        if q >= WARM_UP:
            times.append((time.perf_counter() - started) * 1000)
            first += bool(voted) and voted[0][0] == target
    return times, first


def packed_rows(ids: list[str], keys: int, key_bits: int, posted: int, rng: np.random.Generator) -> Iterator[tuple[object, ...]]:
    for photo_id in ids:
        packed = pack_keys(photo_keys(rng, keys, key_bits))
        yield (photo_id, "", int(packed[0]), posted, packed.tobytes())


def packed_bytes(catalog: SqlCatalog, label: str, ids: list[str], keys: int, key_bits: int, rng: np.random.Generator) -> dict[str, float]:
    """Bytes a photo of the service's ``feature_keys`` (migration 19: one row a photo, the keys
    packed as uint32, its indexes) as each mode writes it: ``posted`` 1 with votes in SQL, 0 with
    votes in memory (then its partial index holds every row)."""
    per_photo = {}
    for mode, posted in (("sql", 1), ("memory", 0)):
        load(catalog, "feature_keys", "photo_id, owner, first_key, posted, keys", packed_rows(ids, keys, key_bits, posted, rng), _KEYS_INDEXES)
        heap, indexes = table_bytes(catalog, "feature_keys")
        per_photo[mode] = (heap + indexes) / len(ids)
        print(f"| {label} | {len(ids):,} | packed keys, {mode} mode ({keys} keys) | 1 | {heap / len(ids):,.0f} + {indexes / len(ids):,.0f} | "
              f"{per_photo[mode]:,.0f} | {(heap + indexes) / 2**20:,.0f} MiB | - | |", flush=True)
    clear(catalog, "feature_keys")
    return per_photo


def bench(url: str, label: str, n: int, views: int, key_counts: list[int], key_bits: int, query_keys: int) -> list[str]:
    """Prints the rows of each table; answers the rows of the per-mode totals."""
    rng = np.random.default_rng(20261203 + n)
    catalog = SqlCatalog(url)
    catalog.migrate()
    ids = photo_ids(n, rng)
    totals: list[str] = []
    started = time.perf_counter()
    load(catalog, "hash_index", _HASH_COLUMNS, hash_rows(ids, views, rng), hash_substring_indexes(catalog.dialect))
    heap, indexes = table_bytes(catalog, "hash_index")
    rows = n * views
    hashes = (heap + indexes) / n
    print(f"| {label} | {n:,} | view hashes | {views} | {heap / rows:,.0f} + {indexes / rows:,.0f} | "
          f"{(heap + indexes) / n:,.0f} | {(heap + indexes) / 2**20:,.0f} MiB | - | load {time.perf_counter() - started:.0f} s |", flush=True)
    clear(catalog, "hash_index")
    photo_index = ("CREATE INDEX feature_postings_photo ON feature_postings (photo_id)",)
    for keys in key_counts:
        started = time.perf_counter()
        load(catalog, "feature_postings", "key, photo_id, owner", posting_rows(ids, keys, key_bits, rng), photo_index)
        built = time.perf_counter() - started
        with catalog._tx(write=False) as cur:
            rows = int(cur.fetchall("SELECT COUNT(*) FROM feature_postings")[0][0])
        heap, indexes = table_bytes(catalog, "feature_postings")
        times, first = vote_latency(catalog, ids, keys, key_bits, rng, query_keys)
        print(f"| {label} | {n:,} | keypoint postings ({key_bits}-bit keys) | {rows / n:.0f} | {heap / rows:,.0f} + {indexes / rows:,.0f} | "
              f"{(heap + indexes) / n:,.0f} | {(heap + indexes) / 2**20:,.0f} MiB | {pct(times, 50):.1f} / {pct(times, 99):.1f} "
              f"(repost first {first}/{VOTES}) | load {built:.0f} s |", flush=True)
        clear(catalog, "feature_postings")
        packed = packed_bytes(catalog, label, ids, keys, key_bits, rng)
        with_postings = hashes + (heap + indexes) / n + packed["sql"]
        totals.append(f"| {label} | {n:,} | {keys} | {with_postings:,.0f} | {hashes + packed['memory']:,.0f} | "
                      f"{with_postings / (hashes + packed['memory']):.1f}x |")
    catalog.close()
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default="10000,100000", help="index sizes in photos")
    parser.add_argument("--views", type=int, default=5, help="view hashes stored per photo")
    parser.add_argument("--keys", default="400,100", help="keypoint keys filed per photo, one run each")
    parser.add_argument("--key-bits", type=int, default=KEY_BITS, help="bits of a keypoint key (the service's: %(default)s)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/mp_bench_scale",
                        help="a database it may fill (created if missing); '' to skip PostgreSQL")
    parser.add_argument("--sqlite", default="var/bench/dedupe_scale.db", help="'' to skip SQLite")
    parser.add_argument("--query-keys", type=int, default=QUERY_KEYS, help="keys a vote sends (%(default)s: today's lookups)")
    args = parser.parse_args()
    key_counts = [int(k) for k in args.keys.split(",") if k]
    print(f"# dedupe_scale: synthetic rows built in bulk; {args.views} view hashes and {key_counts} keypoint keys per photo; "
          f"{WARM_UP} warm-up votes, then {VOTES} votes of {args.query_keys} keys sharing {SHARED_KEYS} (scaled to the key count) with one photo\n")
    print("| backend | photos | rows | per photo | bytes per row (table + indexes) | bytes per photo | total | vote p50 / p99 ms | |")
    print("|---|---|---|---|---|---|---|---|---|")
    totals: list[str] = []
    for n in [int(x) for x in args.photos.split(",") if x]:
        if args.sqlite:
            path = Path(args.sqlite)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            totals += bench(f"sqlite:///{path}", "sqlite", n, args.views, key_counts, args.key_bits, args.query_keys)
            path.unlink(missing_ok=True)
        if args.postgres:
            from dedupe_index import ensure_database

            ensure_database(args.postgres)
            totals += bench(args.postgres, "postgresql", n, args.views, key_counts, args.key_bits, args.query_keys)
    print("\nThe store of record a photo in each mode: view hashes + postings + packed keys (MP_DUPLICATE_INDEX=sql), "
          "view hashes + packed keys (memory)\n")
    print("| backend | photos | keys a photo | bytes a photo, sql | bytes a photo, memory | sql / memory |")
    print("|---|---|---|---|---|---|")
    print("\n".join(totals), flush=True)


if __name__ == "__main__":
    main()
