"""The memory backends at scale: an upload's whole lookup (18 view hashes and a keypoint vote).

    python bench/dedupe_memory.py [--photos 100000,1000000] [--views 5] [--keys 400] [--query-keys 2160[,2560...]]

Synthetic photos like bench/dedupe_scale.py's (random view hashes, uniformly random 24-bit
keypoint keys, 26-character ids), loaded in bulk into ``MemoryHashIndex`` and
``MemoryFeatureIndex`` (its ``load``: keys counted, then placed) and built. Then 20 warm-up and 200 timed uploads, each a stored photo
reposted: 18 query hashes (one its first view at 1-31 bits, 17 random) searched at radius 31, and
a vote of ``--query-keys`` keys of which 100 are the photo's, as duplicates.py casts it. Printed
per size: build time, RSS each index added and the feature arrays' bytes, both per photo, and
p50/p99 of the search, the vote and the two together, with how often the repost was found, and
the vote's while 2,500 photos filed one by one wait in the tail (a running index's state just
before it merges them; the merge's seconds and the most RSS it held above its start, then the same
for the rebuild that drops the postings of an eighth of the photos, deleted). The
baseline in the same run is the smaller size: the ratios say how the lookup grows with the index.
Then the pause a full pass of the cycle collector makes with both indexes loaded, before and after
``freeze_loaded`` (what a process does after its load), the median of 5 ``gc.collect()`` each.

With ``--catalog URL``, a process's load of its keypoint index at start: the same photos' keys
filled in bulk into ``feature_keys`` (one packed row a photo, what the service loads) and, up to
``--catalog-baseline-max`` photos, into ``feature_postings``, then read each way: the postings the
way the service read them before the packed rows, the packed rows in one read (every load before
2026-12-06), and as a process loads them now (``load_feature_index``: past
``counted_load.ONE_PASS_MAX`` postings, read twice more, keys counted then placed). Printed per
size: seconds and microseconds a photo of each, the most RSS each held above its start (sampled
every 10 ms) and the RSS the load left; up to the baseline's size, also the load of the photos'
view hashes (``hash_index``), the other part of a process's start.
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dedupe_index import current_rss_mib, pct, rss_mib, words_to_int  # noqa: E402
from dedupe_scale import _HASH_COLUMNS, _KEYS_INDEXES, SHARED_KEYS, hash_rows, load, photo_ids  # noqa: E402

from media_pipeline.catalog.sql import SqlCatalog, hash_substring_indexes  # noqa: E402
from media_pipeline.hashindex import MemoryFeatureIndex, MemoryHashIndex, counted_load  # noqa: E402
from media_pipeline.hashindex.synced import freeze_loaded, load_feature_index, load_hash_index, photo_batches  # noqa: E402
from media_pipeline.hashindex.base import HASH_BITS  # noqa: E402
from media_pipeline.keypoints import KEY_BASE, KEY_BITS, MIN_VOTES, TABLES  # noqa: E402

UPLOADS = 200
WARM_UP = 20
QUERY_HASHES = 18
RADIUS = 31
CHUNK = 50_000  # photos generated at once, so the generator's temporaries stay small
LOAD_BATCH = 10_000  # photos a batch of the keypoint index's load: its temporaries stay ~200 MB
TAIL_PHOTOS = 2_500  # about the default tail (1M postings) a running index merges at a time
Loaded = TypeVar("Loaded")


def build(n: int, views: int, keys: int, rng: np.random.Generator, targets: np.ndarray) -> tuple[MemoryHashIndex, MemoryFeatureIndex, list[str], dict[int, tuple[int, np.ndarray]], dict[str, float]]:
    """Both indexes over n synthetic photos; the targets' first view and keys are kept for queries.
    The keypoint index is filled the way a process loads it at start (``MemoryFeatureIndex.load``:
    the source read twice, keys counted then placed), each read drawing the same keys again."""
    ids = photo_ids(n, rng)
    kept: dict[int, tuple[int, np.ndarray]] = {}
    wanted = set(targets.tolist())
    figures: dict[str, float] = {}
    gc.collect()
    before = current_rss_mib()
    hashes = MemoryHashIndex(rebuild_after=2**62)
    hashes.reserve(n * views)
    started = time.perf_counter()
    for start in range(0, n, CHUNK):
        count = min(CHUNK, n - start)
        words = rng.integers(0, 2**64, size=(count * views, 4), dtype=np.uint64)
        hashes.add_many([p for p in ids[start : start + count] for _ in range(views)], [None] * (count * views),
                        [f"view{v}" for _ in range(count) for v in range(views)], words, rebuild=False)
        for t in wanted & set(range(start, start + count)):
            kept[t] = (words_to_int(words[(t - start) * views]), np.zeros(0))
    hashes.rebuild()
    figures["hash build s"] = time.perf_counter() - started
    gc.collect()
    figures["hash MiB"] = current_rss_mib() - before
    before = current_rss_mib()
    features = MemoryFeatureIndex(rebuild_after=2**62)
    seed = int(rng.integers(0, 2**63))
    started = time.perf_counter()
    features.load(lambda: key_batches(ids, keys, seed))
    figures["feature build s"] = time.perf_counter() - started
    gc.collect()
    figures["feature MiB"] = current_rss_mib() - before
    figures["feature array bytes"] = features.nbytes()
    figures["postings"] = features.postings()
    for start in sorted({t - t % LOAD_BATCH for t in wanted}):  # the targets' keys: their batches drawn once more
        block = sorted_keys(seed, start, min(LOAD_BATCH, n - start), keys)
        for t in wanted & set(range(start, start + len(block))):
            kept[t] = (kept[t][0], np.unique(block[t - start]))
    return hashes, features, ids, kept, figures


def sorted_keys(seed: int, start: int, count: int, keys: int) -> np.ndarray:
    """Photos ``start`` to ``start + count - 1``'s keys, a row each, ascending: the same every time."""
    block = np.random.default_rng((seed, start)).integers(0, TABLES << KEY_BITS, size=(count, keys), dtype=np.int64) + KEY_BASE
    block.sort(axis=1)
    return block


def key_batches(ids: list[str], keys: int, seed: int) -> Iterator[tuple[list[str], list[str | None], np.ndarray, np.ndarray]]:
    """``MemoryFeatureIndex.load``'s batches of the synthetic photos (a draw may repeat a key in a
    photo: it is filed once, as a stored photo's keys are distinct)."""
    for start in range(0, len(ids), LOAD_BATCH):
        block = sorted_keys(seed, start, min(LOAD_BATCH, len(ids) - start), keys)
        yield ids[start : start + len(block)], [None] * len(block), np.full(len(block), keys), block.ravel()


def flip(value: int, bits: int, rng: np.random.Generator) -> int:
    for position in rng.choice(HASH_BITS, size=bits, replace=False):
        value ^= 1 << int(position)
    return value


def lookups(hashes: MemoryHashIndex, features: MemoryFeatureIndex, ids: list[str], kept: dict[int, tuple[int, np.ndarray]],
            targets: np.ndarray, query_keys: int, rng: np.random.Generator) -> dict[str, list[float] | int]:
    searched, voted, both = [], [], []
    found_hash = found_vote = 0
    for q, target in enumerate(targets.tolist()):
        value, stored_keys = kept[target]
        queries = [flip(value, int(rng.integers(1, RADIUS + 1)), rng)] + [int.from_bytes(rng.bytes(32), "big") for _ in range(QUERY_HASHES - 1)]
        shared = rng.choice(stored_keys, size=min(len(stored_keys), SHARED_KEYS), replace=False)
        query = sorted(set(shared.tolist()) | set((rng.integers(0, TABLES << KEY_BITS, size=query_keys - len(shared)) + KEY_BASE).tolist()))
        started = time.perf_counter()
        hits = hashes.search(queries, RADIUS)
        middle = time.perf_counter()
        votes = features.votes(query, limit=5, min_votes=MIN_VOTES)
        ended = time.perf_counter()
        if q >= WARM_UP:
            searched.append((middle - started) * 1000)
            voted.append((ended - middle) * 1000)
            both.append((ended - started) * 1000)
            found_hash += any(h.photo_id == ids[target] for h in hits)
            found_vote += bool(votes) and votes[0][0] == ids[target]
    return {"search": searched, "vote": voted, "both": both, "found_hash": found_hash, "found_vote": found_vote}


def collector_pause() -> float:
    """Median seconds of a full ``gc.collect()`` over what is alive now."""
    gc.collect()  # whatever garbage there is goes first: the passes after it only walk the living
    times = []
    for _ in range(5):
        started = time.perf_counter()
        gc.collect()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def key_blocks(ids: list[str], keys: int, seed: int) -> Iterator[tuple[str, np.ndarray]]:
    """(photo id, its sorted distinct keys) of synthetic photos; the same seed gives the same keys."""
    rng = np.random.default_rng(seed)
    for start in range(0, len(ids), CHUNK):
        block = rng.integers(0, TABLES << KEY_BITS, size=(min(CHUNK, len(ids) - start), keys), dtype=np.int64) + KEY_BASE
        for photo_id, row in zip(ids[start : start + CHUNK], block):
            yield photo_id, np.unique(row)


def load_from_postings(catalog: SqlCatalog) -> MemoryFeatureIndex:
    """The baseline: how a process read its keypoint index before the packed rows (hashindex/synced.py
    until migration 19): every posting a tuple through Python, grouped by photo."""
    features = MemoryFeatureIndex(merge_in_background=True)
    for rows in photo_batches(catalog, "feature_postings", "photo_id, owner, key", 50_000, then="key"):
        ids, owners, counts = [], [], []
        for row in rows:
            if ids and ids[-1] == row[0]:
                counts[-1] += 1
            else:
                ids.append(row[0])
                owners.append(row[1] or None)
                counts.append(1)
        features.add_many(ids, owners, np.array(counts, dtype=np.int64), np.array([r[2] for r in rows], dtype=np.int64))
    features.rebuild()
    return features


def measured(load: Callable[[], Loaded]) -> tuple[Loaded, float, float, float]:
    """(what ``load`` returned, seconds, RSS MiB it added, the most RSS MiB it held above the start
    meanwhile: sampled every 10 ms by a thread)."""
    gc.collect()
    before, started = current_rss_mib(), time.perf_counter()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], current_rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        index = load()
    finally:
        done.set()
        sampler.join()
    took = time.perf_counter() - started
    gc.collect()
    return index, took, current_rss_mib() - before, max(peak[0], current_rss_mib()) - before


def load_packed_in_one_read(catalog: SqlCatalog) -> MemoryFeatureIndex:
    """The packed rows loaded the way every load was before 2026-12-06: read once, every posting
    packed in 8 bytes and sorted at the end (the counted load's baseline, in the same run)."""
    kept = counted_load.ONE_PASS_MAX
    counted_load.ONE_PASS_MAX = 1 << 62
    try:
        return load_feature_index(catalog)
    finally:
        counted_load.ONE_PASS_MAX = kept


def fill_packed_keys(catalog: SqlCatalog, ids: list[str], keys: int, seed: int) -> None:
    """``feature_keys`` filled in bulk with the synthetic photos' keys, a packed row each."""
    packed = ((p, "", int(k[0]), 0, k.astype("<u4").tobytes()) for p, k in key_blocks(ids, keys, seed))
    load(catalog, "feature_keys", "photo_id, owner, first_key, posted, keys", packed, _KEYS_INDEXES)


def catalog_load(url: str, n: int, views: int, keys: int, baseline: bool) -> None:
    """What a process pays at start with MP_DUPLICATE_INDEX=memory for its keypoint index: n
    synthetic photos' keys filled in bulk into ``feature_keys`` (and, for the baseline, the same
    keys into ``feature_postings``), then read into a memory index each way; both must vote alike."""
    seed = 20261205 + n
    catalog = SqlCatalog(url)
    catalog.migrate()
    ids = photo_ids(n, np.random.default_rng(seed))
    fill_packed_keys(catalog, ids, keys, seed)
    old, hashes = "-", "-"
    if baseline:
        rows = hash_rows(ids, views, np.random.default_rng(seed))
        load(catalog, "hash_index", _HASH_COLUMNS, rows, hash_substring_indexes(catalog.dialect))
        started = time.perf_counter()
        loaded = load_hash_index(catalog)
        hashes_s = time.perf_counter() - started
        hashes = f"{hashes_s:.1f} ({hashes_s / n * 1e6:,.0f})"
        assert loaded.count() == n * views
        del loaded
        rows = ((k, p, "") for p, block in key_blocks(ids, keys, seed) for k in block.tolist())
        load(catalog, "feature_postings", "key, photo_id, owner", rows, ("CREATE INDEX feature_postings_photo ON feature_postings (photo_id)",))
        from_postings, old_s, _, _ = measured(lambda: load_from_postings(catalog))
        old = f"{old_s:.1f} ({old_s / n * 1e6:,.0f})"
    one_read, one_s, _, one_peak = measured(lambda: load_packed_in_one_read(catalog))
    one_postings = one_read.postings()
    del one_read
    features, took, grown, peak = measured(lambda: load_feature_index(catalog))
    assert features.postings() == one_postings
    if baseline:
        probe = [k for _, (_, block) in zip(range(5), key_blocks(ids, keys, seed)) for k in block[:60].tolist()]
        assert features.postings() == from_postings.postings()
        assert features.votes(probe, limit=5, min_votes=2) == from_postings.votes(probe, limit=5, min_votes=2)
        del from_postings
        ratio = f"{old_s / took:.0f}x"
    print(f"| {catalog.dialect} | {n:,} | {hashes} | {features.postings():,} | {old} | {one_s:.1f} ({one_s / n * 1e6:,.0f}) | "
          f"{took:.1f} ({took / n * 1e6:,.0f}) | {ratio if baseline else '-'} | {one_peak:,.0f} | {peak:,.0f} | {grown:,.0f} |", flush=True)
    with catalog._tx() as cur:
        for table in ("feature_keys", "feature_postings", "hash_index"):
            cur.execute(f"DELETE FROM {table}")
    catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default="100000,1000000", help="index sizes in photos (the first is the baseline)")
    parser.add_argument("--views", type=int, default=5, help="view hashes stored per photo")
    parser.add_argument("--keys", type=int, default=400, help="keypoint keys filed per photo")
    parser.add_argument("--query-keys", default="2560", help="keys a vote sends (%(default)s: today's lookups); several, comma-separated, "
                        "are each timed on the same index, alternating in two halves, a row each")
    parser.add_argument("--catalog", default="", help="also time loading the indexes from this catalog's tables (filled first; "
                        "e.g. sqlite:///var/bench/memory_load.db or a PostgreSQL URL)")
    parser.add_argument("--catalog-photos", default="10000", help="sizes for --catalog")
    parser.add_argument("--catalog-baseline-max", type=int, default=100_000,
                        help="time the load from postings (the baseline) at sizes up to this only: it holds every posting as a Python tuple")
    args = parser.parse_args()
    vote_sizes = [int(x) for x in args.query_keys.split(",") if x]
    print(f"# dedupe_memory: synthetic photos, {args.views} view hashes and {args.keys} keys each; {WARM_UP} warm-up then "
          f"{UPLOADS} uploads of {QUERY_HASHES} hashes (radius {RADIUS}) and {args.query_keys} vote keys ({SHARED_KEYS} of one photo's)\n")
    print("| photos | vote keys | hashes / postings | build s (hash + features) | RSS MiB (hash + features) | bytes a photo (RSS; feature arrays) | "
          f"search p50 / p99 ms | vote p50 / p99 ms | lookup p50 / p99 ms | vote with {TAIL_PHOTOS:,} photos in the tail p50 / p99 ms | "
          f"lookup p99 vs first size | found by hash / voted first | merging them: s, peak RSS above the start; segments after | "
          "an eighth of the photos deleted, their postings dropped: s, peak RSS above the start |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    baseline = None
    pauses: list[str] = []
    for n in [int(x) for x in args.photos.split(",") if x]:
        rng = np.random.default_rng(20261204 + n)
        targets = rng.choice(n, size=WARM_UP + UPLOADS, replace=False)
        hashes, features, ids, kept, f = build(n, args.views, args.keys, rng, targets)
        timed = {k: lookups(hashes, features, ids, kept, targets, k, rng) for k in vote_sizes}
        if len(vote_sizes) > 1:  # a second half in the other order, so drift in the machine's load falls on each alike
            for k in reversed(vote_sizes):
                more = lookups(hashes, features, ids, kept, targets, k, rng)
                timed[k] = {key: timed[k][key] + more[key] for key in more}  # type: ignore[operator]
        # Votes while the tail is full (a running index's worst case, just before a merge), then merged.
        for i in range(TAIL_PHOTOS):  # filed one by one, as uploads are
            features.add(f"tail{i}", None, (rng.integers(0, TABLES << KEY_BITS, size=args.keys) + KEY_BASE).tolist())
        tailed = {k: lookups(hashes, features, ids, kept, targets, k, rng)["vote"] for k in vote_sizes}
        _, f["tail merge s"], _, f["tail merge peak MiB"] = measured(lambda: features.rebuild())  # a segment at a time
        for photo_id in ids[: (n + TAIL_PHOTOS) // 8 + 1]:  # an eighth deleted: the next rebuild drops their postings, a segment at a time
            features.remove(photo_id)
        _, f["purge s"], _, f["purge peak MiB"] = measured(lambda: features.rebuild())
        for k, t in timed.items():
            p99 = pct(t["both"], 99)  # type: ignore[arg-type]
            baseline = baseline or p99
            rss_bytes = (f["hash MiB"] + f["feature MiB"]) * 2**20 / n
            print(f"| {n:,} | {k:,} | {n * args.views:,} / {int(f['postings']):,} | {f['hash build s']:.0f} + {f['feature build s']:.0f} | "
                  f"{f['hash MiB']:,.0f} + {f['feature MiB']:,.0f} | {rss_bytes:,.0f}; {f['feature array bytes'] / n:,.0f} | "
                  + " | ".join(f"{pct(t[k2], 50):.2f} / {pct(t[k2], 99):.2f}" for k2 in ("search", "vote", "both"))  # type: ignore[arg-type]
                  + f" | {pct(tailed[k], 50):.2f} / {pct(tailed[k], 99):.2f}"  # type: ignore[arg-type]
                  + f" | {p99 / baseline:.2f}x | {t['found_hash']}/{UPLOADS * (len(timed[k]['both']) // UPLOADS)} / "
                  f"{t['found_vote']}/{UPLOADS * (len(timed[k]['both']) // UPLOADS)} | {f['tail merge s']:.1f} s, {f['tail merge peak MiB']:,.0f} MiB; {len(features._segments)} segments | "
                  f"{f['purge s']:.1f} s, {f['purge peak MiB']:,.0f} MiB |", flush=True)
        unfrozen = collector_pause()
        started = time.perf_counter()
        freeze_loaded()
        freezing = time.perf_counter() - started
        pauses.append(f"| {n:,} | {gc.get_freeze_count():,} | {unfrozen * 1000:,.1f} | {freezing:.2f} | {collector_pause() * 1e6:,.0f} |")
        gc.unfreeze()  # the next size's run starts as a fresh process would
        del hashes, features, ids, kept
        gc.collect()
    if pauses:
        print("\n| photos | objects frozen | full gc.collect() ms, loaded | freeze_loaded() s | full gc.collect() us, frozen |")
        print("|---|---|---|---|---|")
        print("\n".join(pauses), flush=True)
    if args.catalog:
        print("\n| catalog | photos | view hashes s (us a photo) | postings loaded | from postings s (us a photo) | "
              "from packed rows, one read s (us a photo) | from packed rows, as a process loads s (us a photo) | "
              "postings / packed | peak RSS MiB above the start: one read | as a process loads | RSS MiB added (packed) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        if not args.catalog.startswith("sqlite"):
            from dedupe_index import ensure_database

            ensure_database(args.catalog)
        for n in [int(x) for x in args.catalog_photos.split(",") if x]:
            catalog_load(args.catalog, n, args.views, args.keys, baseline=n <= args.catalog_baseline_max)
    print(f"\npeak RSS of this process: {rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
