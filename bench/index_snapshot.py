"""A process's start with MP_DUPLICATE_INDEX=memory: from the tables, or from a snapshot.

    python bench/index_snapshot.py --catalog postgresql://postgres@127.0.0.1:5432/mp_bench_snapshot [--photos 100000,1000000] [--processes 2]
    python bench/index_snapshot.py --built 10000000 --processes 1

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

With ``--built N``, no catalog: the indexes are built in memory as bench/dedupe_memory.py builds
them (for sizes whose tables would take hours to fill), written as a snapshot, and that process
ends before ``--processes`` processes start from the snapshot. Besides RSS and PSS, each process's
anonymous memory: its own, which no other process can share (the rest of its RSS is the
snapshot's pages).
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
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dedupe_memory import build, fill_packed_keys  # noqa: E402
from dedupe_scale import _HASH_COLUMNS, hash_rows, load, photo_ids  # noqa: E402

from media_pipeline.catalog.sql import SqlCatalog, hash_substring_indexes  # noqa: E402
from media_pipeline.hashindex import MemoryFeatureIndex, MemoryHashIndex, snapshot  # noqa: E402
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
    """This process's RSS, PSS and anonymous memory (its own: what is not a file's pages), MiB."""
    fields = {}
    with open("/proc/self/smaps_rollup") as rollup:
        for line in rollup:
            parts = line.split()
            if parts[0] in ("Rss:", "Pss:", "Anonymous:"):
                fields[parts[0][:-1].lower()] = int(parts[1]) / 1024
    return fields


def exercise(hashes: MemoryHashIndex, features: MemoryFeatureIndex, gate: Any) -> dict[str, Any]:
    """The lookups (their answers and median), then every page of the postings and bucket tables
    read, then, once every process sharing them is there (``gate``), this process's memory."""
    rng = np.random.default_rng(7)
    rows = hashes._words[: hashes._n]
    answers, seconds = [], []
    for _ in range(LOOKUPS):
        stored = rows[int(rng.integers(len(rows)))]
        query = [int.from_bytes(stored.astype(">u8").tobytes(), "big")] + [int.from_bytes(rng.bytes(32), "big") for _ in range(17)]
        keys = (rng.integers(0, 4 << 24, size=VOTE_KEYS) + (3 << 29)).tolist()
        begun = time.perf_counter()
        hits = hashes.search(query, 31)
        votes = features.votes(keys, limit=5, min_votes=2)
        seconds.append(time.perf_counter() - begun)
        answers.append(([(h.photo_id, h.distance) for h in hits], votes))
    after_lookups = memory()
    touched = 0
    for segment in features._segments:
        touched += int(segment.keys.sum(dtype=np.int64) + segment.offsets[-1] + segment.photos.low.sum(dtype=np.int64)
                       + segment.photos.high.sum(dtype=np.int64))
        if segment.direct is not None:
            touched += int(segment.direct.slots.sum(dtype=np.int64))
    for offsets, order in hashes._buckets:
        touched += int(offsets[-1]) + int(order.sum(dtype=np.int64))
    if gate is not None:
        gate.wait()  # every process has read every page: each one's share of the shared ones is final
    return {"lookup_ms": 1000 * statistics.median(seconds), "after_lookups": after_lookups, "all_read": memory(),
            "answers": json.dumps(answers), "touched": touched}


def run(url: str, snapshots: str | None, write: bool, gate: Any, out: Any) -> None:
    """One process of a catalog: start (from the tables, from a snapshot, or the snapshot
    command's work), timed, then ``exercise``."""
    catalog = SqlCatalog(url)
    gate.wait()
    started = time.perf_counter()
    if write:
        path, indexes = write_snapshot(catalog, Path(snapshots or ""))
        size = sum(f.stat().st_size for f in path.iterdir())
    else:
        indexes = CatalogIndexes(catalog, snapshots=Path(snapshots) if snapshots else None)
        size = 0
    took = time.perf_counter() - started
    out.put({"seconds": took, "bytes": size, **exercise(indexes.hashes, indexes.features, gate)})
    catalog.close()


def build_and_write(n: int, directory: str, gate: Any, out: Any) -> None:
    """One process: n synthetic photos built in memory as bench/dedupe_memory.py builds them,
    ``exercise``d, then written as a snapshot (timed)."""
    rng = np.random.default_rng(20261204 + n)
    hashes, features, _, _, figures = build(n, VIEWS, KEYS, rng, rng.choice(n, size=1, replace=False))
    done = exercise(hashes, features, gate)
    started = time.perf_counter()
    path = snapshot.write(Path(directory), hashes.state(), features.state(), snapshot.Position(0, []))
    out.put({"seconds": figures["hash build s"] + figures["feature build s"], "written": time.perf_counter() - started,
             "bytes": sum(f.stat().st_size for f in path.iterdir()), "path": str(path), **done})


def map_snapshot(path: str, gate: Any, out: Any) -> None:
    """One process: the indexes taken from the snapshot at ``path`` (timed), then ``exercise``d."""
    gate.wait()
    started = time.perf_counter()
    taken = snapshot.read(Path(path))
    hashes, features = MemoryHashIndex.restored(taken.hashes), MemoryFeatureIndex.restored(taken.features)
    took = time.perf_counter() - started
    out.put({"seconds": took, **exercise(hashes, features, gate)})


def in_children(target: Callable[..., None], args: tuple[Any, ...], count: int) -> list[dict[str, Any]]:
    """``target(*args, gate, out)`` in ``count`` fresh processes at once; what each put."""
    spawn = multiprocessing.get_context("spawn")
    out, gate = spawn.Queue(), spawn.Barrier(count)
    children = [spawn.Process(target=target, args=(*args, gate, out)) for _ in range(count)]
    for child in children:
        child.start()
    results = [out.get() for _ in children]
    for child in children:
        child.join()
        assert child.exitcode == 0, f"a child exited {child.exitcode}"
    return results


def memory_cells(results: list[dict[str, Any]]) -> str:
    """Each process's RSS / PSS / own (anonymous) MiB, every page read."""
    return ", ".join(f"{r['all_read']['rss']:,.0f} / {r['all_read']['pss']:,.0f} / {r['all_read']['anonymous']:,.0f}" for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", default="", help="a catalog to fill (emptied of index rows first): sqlite:///… or a PostgreSQL URL")
    parser.add_argument("--photos", default="100000", help="sizes for --catalog, comma-separated")
    parser.add_argument("--built", default="", help="sizes built in memory instead of read from a catalog (no table load to compare: "
                        "bench/dedupe_memory.py's build), comma-separated")
    parser.add_argument("--processes", type=int, default=2, help="processes started from the snapshot at once")
    args = parser.parse_args()
    print(f"# index_snapshot: synthetic photos, {VIEWS} view hashes and {KEYS} keys each; {args.processes} processes from the snapshot; "
          f"{LOOKUPS} lookups of 18 hashes and {VOTE_KEYS:,} vote keys in each; memory after every mapped page was read: "
          "RSS / PSS / own (anonymous) MiB\n")
    if args.catalog:
        if not args.catalog.startswith("sqlite"):
            from dedupe_index import ensure_database

            ensure_database(args.catalog)
        print("| catalog | photos | from the tables: s | memory MiB | index-snapshot: s | snapshot MiB on disk | "
              f"from the snapshot: s ({args.processes} at once) | RSS MiB after the lookups | memory MiB each | "
              "PSS of the snapshot's processes vs the tables' | lookup p50 ms: tables / snapshot |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in [int(x) for x in args.photos.split(",") if x] if args.catalog else []:
        fill(args.catalog, n)
        directory = tempfile.mkdtemp(prefix="mp-snapshot-bench-")
        try:
            tables = in_children(run, (args.catalog, None, False), 1)[0]
            written = in_children(run, (args.catalog, directory, True), 1)[0]
            mapped = in_children(run, (args.catalog, directory, False), args.processes)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        assert all(m["answers"] == tables["answers"] and m["touched"] == tables["touched"] for m in mapped), \
            "a process started from the snapshot answered otherwise"
        pss = statistics.mean(m["all_read"]["pss"] for m in mapped)
        print(f"| {args.catalog.split(':')[0]} | {n:,} | {tables['seconds']:.1f} | {memory_cells([tables])} | "
              f"{written['seconds']:.1f} | {written['bytes'] / 2**20:,.0f} | "
              + ", ".join(f"{m['seconds']:.1f}" for m in mapped) + " | " + ", ".join(f"{m['after_lookups']['rss']:,.0f}" for m in mapped)
              + f" | {memory_cells(mapped)} | {pss / tables['all_read']['pss']:.2f}x | {tables['lookup_ms']:.2f} / "
              + ", ".join(f"{m['lookup_ms']:.2f}" for m in mapped) + " |", flush=True)
    if args.built:
        print("\n| built in memory | build s | memory MiB | snapshot written: s | MiB on disk | "
              f"from the snapshot: s ({args.processes} at once) | memory MiB each | lookup p50 ms: built / snapshot |")
        print("|---|---|---|---|---|---|---|---|")
    for n in [int(x) for x in args.built.split(",") if x]:
        directory = tempfile.mkdtemp(prefix="mp-snapshot-bench-")
        try:
            built = in_children(build_and_write, (n, directory), 1)[0]  # its process gone, its memory with it
            mapped = in_children(map_snapshot, (built["path"],), args.processes)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        assert all(m["answers"] == built["answers"] and m["touched"] == built["touched"] for m in mapped), \
            "a process started from the snapshot answered otherwise"
        print(f"| {n:,} | {built['seconds']:.0f} | {memory_cells([built])} | {built['written']:.1f} | {built['bytes'] / 2**20:,.0f} | "
              + ", ".join(f"{m['seconds']:.1f}" for m in mapped) + f" | {memory_cells(mapped)} | {built['lookup_ms']:.2f} / "
              + ", ".join(f"{m['lookup_ms']:.2f}" for m in mapped) + " |", flush=True)


if __name__ == "__main__":
    main()
