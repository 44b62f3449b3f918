"""A process's start with MP_DUPLICATE_INDEX=memory: from the tables, or from a snapshot.

    python bench/index_snapshot.py --catalog postgresql://postgres@127.0.0.1:5432/mp_bench_snapshot [--photos 100000,1000000] [--processes 2]

Synthetic photos like bench/dedupe_memory.py's (5 random view hashes, 400 uniformly random 24-bit
keypoint keys, 26-character ids) filled in bulk into ``hash_index`` and ``feature_keys``. Then,
each in a fresh child process so one's memory cannot flatter another's: the start from the tables
(the baseline, ``CatalogIndexes`` as a process builds it), ``media-pipeline index-snapshot``'s
work (``write_snapshot``: its load from the tables, the tails merged, the files written), and
``--processes`` processes started from that snapshot at once. Each process then runs 200 lookups
(18 hashes and a 2,560-key vote) and reads every page of its postings and bucket tables, as a
long-running process eventually does, and reports its RSS and PSS (``/proc/self/smaps_rollup``:
a page shared by k processes counts 1/k in each one's PSS). Both starts must answer the lookups
alike (the bench checks).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dedupe_memory import fill_packed_keys  # noqa: E402
from dedupe_scale import _HASH_COLUMNS, hash_rows, load, photo_ids  # noqa: E402

from media_pipeline.catalog.sql import SqlCatalog, hash_substring_indexes  # noqa: E402
from media_pipeline.hashindex.synced import CatalogIndexes, write_snapshot  # noqa: E402

VIEWS = 5
KEYS = 400
LOOKUPS = 200
VOTE_KEYS = 2_560


def fill(url: str, n: int) -> None:
    seed = 20261206 + n
    catalog = SqlCatalog(url)
    catalog.migrate()
    ids = photo_ids(n, np.random.default_rng(seed))
    fill_packed_keys(catalog, ids, KEYS, seed)
    load(catalog, "hash_index", _HASH_COLUMNS, hash_rows(ids, VIEWS, np.random.default_rng(seed)), hash_substring_indexes(catalog.dialect))
    with catalog._tx() as cur:
        cur.execute("DELETE FROM index_changes")
    catalog.close()


def memory() -> dict[str, float]:
    """RSS and PSS of this process, MiB."""
    fields = {}
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            parts = line.split()
            if parts[0] in ("Rss:", "Pss:"):
                fields[parts[0][:-1].lower()] = int(parts[1]) / 1024
    return fields


def run(url: str, snapshots: str | None, write: bool, start_gate: Any, out: Any) -> None:
    """One process: start (from the tables, from a snapshot, or the snapshot command's work), time
    it, then the lookups, every mapped page read, and its memory."""
    catalog = SqlCatalog(url)
    if start_gate is not None:
        start_gate.wait()
    started = time.perf_counter()
    if write:
        path, indexes = write_snapshot(catalog, Path(snapshots or ""))
        size = sum(f.stat().st_size for f in path.iterdir())
    else:
        indexes = CatalogIndexes(catalog, snapshots=Path(snapshots) if snapshots else None)
        size = 0
    took = time.perf_counter() - started
    rng = np.random.default_rng(7)
    rows = indexes.hashes._words[: indexes.hashes._n]
    answers, seconds = [], []
    for _ in range(LOOKUPS):
        stored = rows[int(rng.integers(len(rows)))]
        query = [int.from_bytes(stored.astype(">u8").tobytes(), "big")] + [int.from_bytes(rng.bytes(32), "big") for _ in range(17)]
        keys = (rng.integers(0, 4 << 24, size=VOTE_KEYS) + (3 << 29)).tolist()
        begun = time.perf_counter()
        hits = indexes.hashes.search(query, 31)
        votes = indexes.features.votes(keys, limit=5, min_votes=2)
        seconds.append(time.perf_counter() - begun)
        answers.append(([(h.photo_id, h.distance) for h in hits], votes))
    after_lookups = memory()
    touched = 0
    for segment in indexes.features._segments:
        touched += int(segment.keys.sum(dtype=np.int64) + segment.offsets[-1] + segment.photos.low.sum(dtype=np.int64)
                       + segment.photos.high.sum(dtype=np.int64))
        if segment.direct is not None:
            touched += int(segment.direct.slots.sum(dtype=np.int64))
    for offsets, order in indexes.hashes._buckets:
        touched += int(offsets[-1]) + int(order.sum(dtype=np.int64))
    if start_gate is not None:
        start_gate.wait()  # every process has read every page: each one's share of the shared ones is final
    out.put({"seconds": took, "bytes": size, "lookup_ms": 1000 * statistics.median(seconds),
             "after_lookups": after_lookups, "all_read": memory(), "answers": json.dumps(answers), "touched": touched})
    catalog.close()


def in_children(url: str, snapshots: str | None, write: bool, count: int) -> list[dict[str, Any]]:
    spawn = multiprocessing.get_context("spawn")
    out, gate = spawn.Queue(), spawn.Barrier(count)
    children = [spawn.Process(target=run, args=(url, snapshots, write, gate, out)) for _ in range(count)]
    for child in children:
        child.start()
    results = [out.get() for _ in children]
    for child in children:
        child.join()
        assert child.exitcode == 0, f"a child exited {child.exitcode}"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", required=True, help="a catalog to fill (emptied of index rows first): sqlite:///… or a PostgreSQL URL")
    parser.add_argument("--photos", default="100000", help="sizes, comma-separated")
    parser.add_argument("--processes", type=int, default=2, help="processes started from the snapshot at once")
    args = parser.parse_args()
    if not args.catalog.startswith("sqlite"):
        from dedupe_index import ensure_database

        ensure_database(args.catalog)
    print(f"# index_snapshot: synthetic photos, {VIEWS} view hashes and {KEYS} keys each; {args.processes} processes from the snapshot; "
          f"{LOOKUPS} lookups of 18 hashes and {VOTE_KEYS:,} vote keys in each\n")
    print("| catalog | photos | from the tables: s | RSS MiB | index-snapshot: s | snapshot MiB on disk | "
          f"from the snapshot: s ({args.processes} at once) | RSS MiB after the lookups | every page read: RSS / PSS MiB each | "
          "PSS of the snapshot's processes vs the tables' | lookup p50 ms: tables / snapshot |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in [int(x) for x in args.photos.split(",") if x]:
        fill(args.catalog, n)
        directory = tempfile.mkdtemp(prefix="mp-snapshot-bench-")
        try:
            tables = in_children(args.catalog, None, False, 1)[0]
            written = in_children(args.catalog, directory, True, 1)[0]
            mapped = in_children(args.catalog, directory, False, args.processes)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        assert all(m["answers"] == tables["answers"] for m in mapped), "a process started from the snapshot answered otherwise"
        assert all(m["touched"] == tables["touched"] for m in mapped)
        pss = statistics.mean(m["all_read"]["pss"] for m in mapped)
        print(f"| {args.catalog.split(':')[0]} | {n:,} | {tables['seconds']:.1f} | {tables['all_read']['rss']:,.0f} | "
              f"{written['seconds']:.1f} | {written['bytes'] / 2**20:,.0f} | "
              + ", ".join(f"{m['seconds']:.1f}" for m in mapped) + " | " + ", ".join(f"{m['after_lookups']['rss']:,.0f}" for m in mapped) + " | "
              + ", ".join(f"{m['all_read']['rss']:,.0f} / {m['all_read']['pss']:,.0f}" for m in mapped)
              + f" | {pss / tables['all_read']['pss']:.2f}x | {tables['lookup_ms']:.2f} / "
              + ", ".join(f"{m['lookup_ms']:.2f}" for m in mapped) + " |", flush=True)


if __name__ == "__main__":
    main()
