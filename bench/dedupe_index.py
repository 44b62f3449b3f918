"""Near-duplicate index: query latency and memory at scale, against a brute-force scan.

    python bench/dedupe_index.py [--memory 1000000,10000000] [--sql 1000000] [--postgres URL] [--prewarm] [--faiss]

Uniformly random 256-bit hashes (the worst case for multi-index hashing: real hashes cluster,
which only helps the scan) with planted matches: for every query, hashes at distances drawn
from 0..radius. Printed per backend and size: p50/p99 of a one-hash query and of a full
upload's query (18 hashes: 9 views and their mirrors), how many planted matches were found
within 16 and within the match distance, and the same for a numpy scan of every row.

``--faiss`` also measures faiss's multi-index hashing (``IndexBinaryMultiHash``, a maintained
Hamming-search library, in the test extra) at the memory sizes, on the same rows and queries, in
each layout that finds everything within the radius (t tables of b bits, every flip of up to
radius // t bits probed, so by pigeonhole no match is missed), as a candidate engine for a shard.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from media_pipeline.catalog.sql import SqlCatalog, hash_substring_indexes  # noqa: E402
from media_pipeline.hashindex import MemoryHashIndex, SqlHashIndex  # noqa: E402
from media_pipeline.hashindex.sql import from_signed_words, to_signed_words  # noqa: E402
from media_pipeline.hashindex.base import HASH_BITS, SQL_LAYOUT  # noqa: E402
from media_pipeline.hashindex.memory import distances, to_words  # noqa: E402

QUERIES = 1000
FULL_QUERIES = 100
WARM_UP = 50  # random queries first, as a running service's index is never cold
FULL_QUERY = 18


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def words_to_int(row: np.ndarray) -> int:
    return int.from_bytes(row.astype(">u8").tobytes(), "big")


def make_data(n: int, radius: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int], list[tuple[int, int, int]]]:
    """n random hashes (as (n, 4) uint64), queries, and (query, row, distance) of planted matches."""
    words = rng.integers(0, 2**64, size=(n, 4), dtype=np.uint64)
    count = min(QUERIES, n // 3)
    queries = [int.from_bytes(rng.bytes(32), "big") for _ in range(count)]
    planted = []
    rows = rng.choice(n, size=count * 3, replace=False)
    for qi, query in enumerate(queries):
        for k in range(3):
            distance = int(rng.integers(0, radius + 1)) if k else int(rng.integers(0, 17))
            value = query
            for bit in rng.choice(HASH_BITS, size=distance, replace=False):
                value ^= 1 << int(bit)
            row = int(rows[qi * 3 + k])
            words[row] = to_words([value])[0]
            planted.append((qi, row, distance))
    return words, queries, planted


def timed(search: Callable[[list[int]], Any], query_sets: list[list[int]]) -> tuple[list[float], list[Any]]:
    times, answers = [], []
    for qs in query_sets:
        started = time.perf_counter()
        answers.append(search(qs))
        times.append((time.perf_counter() - started) * 1000)
    return times, answers


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def recall(answers: list[set[str]], planted: list[tuple[int, int, int]], limit: int) -> str:
    wanted = [(qi, row) for qi, row, d in planted if d <= limit]
    found = sum(1 for qi, row in wanted if f"p{row}" in answers[qi])
    return f"{found}/{len(wanted)}"


def query_sets(queries: list[int], rng: np.random.Generator) -> tuple[list[list[int]], list[list[int]]]:
    single = [[q] for q in queries]
    # A real upload searches with 18 hashes; the other 17 are random (different views hash differently).
    full = [[q] + [int.from_bytes(rng.bytes(32), "big") for _ in range(FULL_QUERY - 1)] for q in queries]
    return single, full


def report(name: str, n: int, extra: str, radius: int, search: Callable[[list[int]], Any], planted: list[tuple[int, int, int]],
           singles: list[list[int]], fulls: list[list[int]], scan_ms: list[float] | None) -> None:
    rng = np.random.default_rng(7)
    for _ in range(WARM_UP):  # prepared statements, upper index levels, page cache
        search([int.from_bytes(rng.bytes(32), "big")])
    t1, answers = timed(search, singles)
    t18, _ = timed(search, fulls[:FULL_QUERIES])
    ids = [{hit.photo_id for hit in a} for a in answers]
    scan = f"{pct(scan_ms, 50):.1f} / {pct(scan_ms, 99):.1f}" if scan_ms else "-"
    print(f"| {name} | {n:,} | {pct(t1, 50):.2f} / {pct(t1, 99):.2f} | {pct(t18, 50):.2f} / {pct(t18, 99):.2f} | {scan} | "
          f"{recall(ids, planted, 16)} | {recall(ids, planted, radius)} | {extra} |")


Data = tuple[np.ndarray, list[int], list[tuple[int, int, int]]]


def bench_memory(n: int, radius: int, rng: np.random.Generator, data: Data) -> None:
    words, queries, planted = data
    singles, fulls = query_sets(queries, rng)
    gc.collect()
    before = current_rss_mib()
    index = MemoryHashIndex()
    started = time.perf_counter()
    index.add_many([f"p{i}" for i in range(n)], [None] * n, ["full"] * n, words)
    index.rebuild()
    build = time.perf_counter() - started
    grown = current_rss_mib() - before
    scan_ms = []
    for qs in singles[:20]:
        t = time.perf_counter()
        index.scan(qs, radius)
        scan_ms.append((time.perf_counter() - t) * 1000)
    report("memory", n, f"build {build:.1f} s, +{grown:,.0f} MiB RSS", radius, lambda qs: index.search(qs, radius), planted, singles, fulls, scan_ms)
    del index
    gc.collect()


def faiss_layouts(radius: int) -> list[tuple[int, int, int]]:
    """(tables, bits, flips) of multi-index hashing over 256 bits that is exact within ``radius``:
    ``tables`` disjoint substrings of ``bits``, a match within ``radius`` agrees within
    ``radius // tables`` bits on at least one of them."""
    return [(HASH_BITS // bits, bits, radius // (HASH_BITS // bits)) for bits in (16, 20, 24, 32)]


def bench_faiss(n: int, radius: int, rng: np.random.Generator, data: Data) -> None:
    import faiss  # the test extra's; imported here so the rest of the bench runs without it

    faiss.omp_set_num_threads(1)  # one query at a time on one core, as the memory index answers
    words, queries, planted = data
    singles, fulls = query_sets(queries, rng)
    # faiss packs bit i of a code as bit i % 8 of byte i // 8; the distance is the same whatever the order.
    codes = np.ascontiguousarray(words.astype(">u8").view(np.uint8).reshape(n, HASH_BITS // 8))
    for tables, bits, flips in faiss_layouts(radius):
        index = faiss.IndexBinaryMultiHash(HASH_BITS, tables, bits)
        started = time.perf_counter()
        index.add(codes)
        build = time.perf_counter() - started
        # Its own serialised size (codes and hash tables): RSS cannot tell once an earlier layout's memory was freed.
        size = faiss.serialize_index_binary(index).nbytes
        index.nflip = flips

        def search(qs: list[int], index: Any = index) -> list[Any]:
            query_codes = np.frombuffer(b"".join(q.to_bytes(HASH_BITS // 8, "big") for q in qs), dtype=np.uint8)
            limits, _, labels = index.range_search(query_codes.reshape(len(qs), HASH_BITS // 8), radius + 1)  # strictly below
            return [_Hit(f"p{label}") for label in labels]

        report(f"faiss {tables} x {bits} bits, {flips} flips", n, f"build {build:.1f} s, {size / 2**20:,.0f} MiB serialised", radius,
               search, planted, singles, fulls, None)
        del index
    del codes
    gc.collect()


class _Hit:
    def __init__(self, photo_id: str) -> None:
        self.photo_id = photo_id


def bulk_load(catalog: SqlCatalog, words: np.ndarray, prewarm: bool = False) -> None:
    values = [words_to_int(row) for row in words]
    rows = [(f"p{i}", "full", "", *to_signed_words(v), *SQL_LAYOUT.chunks(v)) for i, v in enumerate(values)]
    columns = "photo_id, view, owner, h0, h1, h2, h3, " + ", ".join(f"c{i}" for i in range(SQL_LAYOUT.count))
    with catalog._tx() as cur:
        for i in range(SQL_LAYOUT.count):
            cur.execute(f"DROP INDEX IF EXISTS hash_index_c{i}")
    if catalog.dialect == "postgresql":
        conn = catalog._connection()
        with conn.cursor() as cur, cur.copy(f"COPY hash_index ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        with catalog._tx() as cur:
            cur.executemany(f"INSERT INTO hash_index ({columns}) VALUES ({', '.join('?' * (7 + SQL_LAYOUT.count))})", rows)
    with catalog._tx() as cur:
        for statement in hash_substring_indexes(catalog.dialect):
            cur.execute(statement)
        if catalog.dialect == "sqlite":
            cur.execute("ANALYZE")
    if catalog.dialect == "postgresql":
        # Index-only scans need the visibility map; autovacuum sets it after inserts in service.
        catalog._connection().execute("VACUUM ANALYZE hash_index")
        if prewarm:  # a busy index stays in shared buffers when they can hold it; a fresh one starts in the OS cache
            catalog._connection().execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            catalog._connection().execute("SELECT pg_prewarm(indexrelid::regclass) FROM pg_index WHERE indrelid = 'hash_index'::regclass")


def bench_sql(url: str, label: str, n: int, radius: int, rng: np.random.Generator, prewarm: bool = False) -> None:
    words, queries, planted = make_data(n, radius, rng)
    singles, fulls = query_sets(queries, rng)
    catalog = SqlCatalog(url)
    catalog.migrate()
    with catalog._tx() as cur:
        cur.execute("DELETE FROM hash_index")
    started = time.perf_counter()
    bulk_load(catalog, words, prewarm)
    build = time.perf_counter() - started
    if catalog.dialect == "postgresql":
        with catalog._tx(write=False) as cur:
            size = cur.fetchall("SELECT pg_total_relation_size('hash_index')")[0][0]
    else:
        with catalog._tx(write=False) as cur:
            size = cur.fetchall("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")[0][0]
    index = SqlHashIndex(catalog)
    scan_ms = []
    for qi in range(3):  # the scan reads every row as a client would and checks each distance
        t = time.perf_counter()
        with catalog._tx(write=False) as cur:
            table = cur.fetchall("SELECT photo_id, h0, h1, h2, h3 FROM hash_index")
        all_words = to_words([from_signed_words(row[1:]) for row in table])
        within = distances(all_words, to_words([queries[qi]]))[:, 0] <= radius
        _ = [table[i][0] for i in np.flatnonzero(within)]
        scan_ms.append((time.perf_counter() - t) * 1000)
        del table, all_words
    report(label, n, f"load {build:.0f} s, {size / 2**20:,.0f} MiB on disk", radius, lambda qs: index.search(qs, radius), planted, singles, fulls, scan_ms)
    with catalog._tx() as cur:
        cur.execute("DELETE FROM hash_index")
    catalog.close()


def ensure_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchall():
            admin.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory", default="1000000,10000000", help="sizes for the in-memory index ('' to skip)")
    parser.add_argument("--sql", default="1000000", help="sizes for SQLite and PostgreSQL ('' to skip)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/mp_bench",
                        help="a database it may fill (created if missing); '' to skip PostgreSQL")
    parser.add_argument("--sqlite", default="var/bench/hash_index.db", help="'' to skip SQLite")
    parser.add_argument("--prewarm", action="store_true", help="load PostgreSQL's substring indexes into its shared buffers first")
    parser.add_argument("--radius", type=int, default=31, help="match distance searched (MP_NEAR_DISTANCE)")
    parser.add_argument("--faiss", action="store_true", help="also faiss's IndexBinaryMultiHash at the memory sizes")
    args = parser.parse_args()
    rng = np.random.default_rng(20261122)
    print(f"# dedupe_index: uniformly random 256-bit hashes, radius {args.radius}; {WARM_UP} warm-up queries, then "
          f"{QUERIES} one-hash and {FULL_QUERIES} 18-hash queries; each one-hash query has 3 planted matches "
          f"(one within 16, two within {args.radius})\n")
    print("| backend | hashes | 1-hash query p50 / p99 ms | 18-hash query p50 / p99 ms | brute-force scan p50 / p99 ms | planted within 16 found | planted within radius found | size |")
    print("|---|---|---|---|---|---|---|---|")
    for n in [int(x) for x in args.memory.split(",") if x]:
        data = make_data(n, args.radius, rng)
        bench_memory(n, args.radius, rng, data)
        if args.faiss:
            bench_faiss(n, args.radius, rng, data)
        del data
    for n in [int(x) for x in args.sql.split(",") if x]:
        if args.sqlite:
            path = Path(args.sqlite)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            bench_sql(f"sqlite:///{path}", "sqlite", n, args.radius, rng)
            path.unlink(missing_ok=True)
        if args.postgres:
            ensure_database(args.postgres)
            bench_sql(args.postgres, "postgresql", n, args.radius, rng, args.prewarm)
    print(f"\npeak RSS of this process: {rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
