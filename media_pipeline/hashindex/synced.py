"""The memory indexes serving lookups, the catalog's tables their store of record
(MP_DUPLICATE_INDEX=memory).

A process loads ``hash_index`` and ``feature_keys`` (each photo's keys packed in one row: one
``np.frombuffer`` a batch, no Python object per key) into a ``MemoryHashIndex`` and a
``MemoryFeatureIndex`` at start. No keypoint postings are written (``SqlFeatureIndex(postings=False)``):
the packed rows are the keys' store of record. Writes go to the tables only (the SQL backends log
each photo filed or removed in ``index_changes``, in the same transaction), and this process's arrays learn them from
the log like any other process's: writing them here too would file each photo twice, as its own
log entry brings it back. A write makes the next lookup catch up at once. Before a
lookup (at most every ``interval`` seconds) the process reads the log after the last number it
applied and reads those photos' rows again, so what one worker filed is found by every other
process's next lookup. PostgreSQL hands out the numbers at insert and transactions commit in any
order, so a number can appear after a higher one: a missing number is looked for again on every
catch-up until it appears or ``gap_seconds`` pass (a rolled-back filing's number never appears).

The reconciler prunes the log (catalog/index_changes.py) and marks the highest number it deleted.
A process that still needed a number at or below the mark (idle longer than
MP_INDEX_CHANGES_KEEP_SECONDS, so the rows of what it missed are gone) cannot tell which photos
changed: it reads both tables again, as at start, and logs that it did. After each load, what is
alive is frozen out of the cycle collector's way (``freeze_loaded``).

With a snapshot folder (MP_INDEX_SNAPSHOT_DIR, ``hashindex/snapshot.py``), a load takes the newest
snapshot the log's pruning has not overtaken instead of the tables, and the log from its number;
every minute a lookup also looks for a newer snapshot and moves to it the same way, so the copies
a process's own merges made give way to the mapped ones its host's processes share.
``write_snapshot`` is what ``media-pipeline index-snapshot`` runs.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np

from media_pipeline.catalog.index_changes import changes_after, last_change, pruned_through
from media_pipeline.catalog.sql import SqlCatalog
from media_pipeline.hashindex import snapshot
from media_pipeline.hashindex.base import IndexHit
from media_pipeline.hashindex.features import PACKED_KEY, SqlFeatureIndex, unpack_keys
from media_pipeline.hashindex.memory import MemoryHashIndex, to_words
from media_pipeline.hashindex.memory_features import MemoryFeatureIndex
from media_pipeline.hashindex.sql import SqlHashIndex, from_signed_words

_LOOKBACK = 10_000  # numbers before the load's last one that may still be uncommitted then
_HASH_ROW = "photo_id, owner, view, h0, h1, h2, h3"
_KEYS_ROW = "photo_id, owner, keys"

log = logging.getLogger(__name__)


SNAPSHOT_CHECK_SECONDS = 60.0  # how often a lookup looks for a newer snapshot (a directory listing)


class Mapped(NamedTuple):
    """Indexes taken from a snapshot."""

    path: Path
    position: snapshot.Position
    hashes: MemoryHashIndex
    features: MemoryFeatureIndex


class CatalogIndexes:
    """Both memory indexes of one process, loaded from the catalog and kept up with its change log."""

    def __init__(self, catalog: SqlCatalog, interval: float = 0.002, gap_seconds: float = 5.0, batch: int = 50_000,
                 clock: Callable[[], float] = time.monotonic, snapshots: Path | None = None,
                 snapshot_every: float = SNAPSHOT_CHECK_SECONDS) -> None:
        """``snapshots``: a directory of snapshots (MP_INDEX_SNAPSHOT_DIR) to start from, when one
        is still ahead of the log's pruning, instead of reading both tables; every
        ``snapshot_every`` seconds a lookup looks there for a newer one and moves to it."""
        self.catalog = catalog
        self.sql_hashes, self.sql_features = SqlHashIndex(catalog), SqlFeatureIndex(catalog, postings=False)
        self._interval, self._gap_seconds, self._batch, self._clock = interval, gap_seconds, batch, clock
        self._snapshots, self._snapshot_every = snapshots, snapshot_every
        self._mapped_from: Path | None = None  # the snapshot the indexes were taken from
        self._snapshot_checked = clock()
        self._adopting = threading.Lock()  # one thread reads a newer snapshot at a time
        self._lock = threading.Lock()
        self._high = 0  # the highest number applied
        self._gaps: dict[int, float] = {}  # numbers below it not seen yet -> when first missed
        self._checked = float("-inf")
        self.hashes, self.features = self._load()
        freeze_loaded()
        self.catch_up(force=True)  # what was filed since a snapshot, before the first lookup

    def position(self) -> snapshot.Position:
        """Where in the change log the indexes stand."""
        with self._lock:
            return snapshot.Position(self._high, sorted(self._gaps))

    def _load(self) -> tuple[MemoryHashIndex, MemoryFeatureIndex]:
        """New indexes from the newest usable snapshot, else both tables read; the log's numbers
        they stand at set as applied."""
        with self.catalog._tx(write=False) as cur:
            high = last_change(cur)
            pruned = pruned_through(cur)
            recent = {seq for seq, _ in changes_after(cur, max(0, high - _LOOKBACK), _LOOKBACK)}
        now = self._clock()
        mapped = self._mapped(pruned, at_start=True)
        if mapped is not None:
            self._mapped_from, self._high, self._gaps = mapped.path, mapped.position.high, {seq: now for seq in mapped.position.gaps}
            return mapped.hashes, mapped.features
        # A number missing at or below the mark was pruned after it committed: the tables read
        # below hold its change already.
        gaps = {seq: now for seq in range(max(1, pruned + 1, high - _LOOKBACK + 1), high + 1) if seq not in recent}
        hashes, features = load_hash_index(self.catalog, self._batch), load_feature_index(self.catalog, self._batch)
        # Only now: a reload that fails half-way leaves the old indexes and the old numbers, and the
        # next catch-up finds the mark past them again.
        self._mapped_from, self._high, self._gaps = None, high, gaps
        return hashes, features

    def _mapped(self, pruned: int, at_start: bool = False, newer_than: str = "") -> Mapped | None:
        """The indexes of the newest readable snapshot (named after ``newer_than``) the log still
        holds every change after, or None: none such, and at start the tables are read instead."""
        if self._snapshots is None:
            return None
        for path in snapshot.usable(self._snapshots, lambda position: position.kept_after(pruned)):
            if path.name <= newer_than:
                break
            started = time.monotonic()
            try:
                taken = snapshot.read(path)
            except snapshot.SnapshotError as exc:
                log.warning("near-duplicate index snapshot unusable: %s", exc)
                continue
            hashes = MemoryHashIndex.restored(taken.hashes, rebuild_in_background=True)
            features = MemoryFeatureIndex.restored(taken.features, merge_in_background=True)
            log.info("near-duplicate indexes mapped from %s (change %d) in %.1f s", taken.path, taken.position.high,
                     time.monotonic() - started)
            return Mapped(taken.path, taken.position, hashes, features)
        if at_start and snapshot.paths(self._snapshots):  # some, none usable: worth an operator's look
            log.warning("no near-duplicate index snapshot in %s is usable and newer than the change log's pruning "
                        "(number %d): reading the tables", self._snapshots, pruned)
        return None

    def _newer_snapshot(self) -> Mapped | None:
        """A snapshot written since the indexes were taken, read (outside the lock: lookups go on),
        when one is due to be looked for (every ``snapshot_every`` seconds) and there is one.
        Moving to it gives up the process's own copies, which its merges and rebuilds made since
        (a merge writes new segments in the process's memory), for the mapped ones every process
        of the host shares."""
        if self._snapshots is None or self._clock() - self._snapshot_checked < self._snapshot_every:
            return None
        if not self._adopting.acquire(blocking=False):
            return None  # another thread is reading one
        try:
            self._snapshot_checked = self._clock()
            with self.catalog._tx(write=False) as cur:
                pruned = pruned_through(cur)
            return self._mapped(pruned, newer_than=self._mapped_from.name if self._mapped_from else "")
        finally:
            self._adopting.release()

    # ------------------------------------------------------------------ catching up
    def written(self) -> None:
        """This process wrote to the tables: its next lookup catches up whatever the interval."""
        with self._lock:
            self._checked = float("-inf")

    def catch_up(self, force: bool = False) -> None:
        """Apply what other processes filed or removed since the last catch-up; first move to a
        newer snapshot if one is due and there, then apply the log from where it stands."""
        newer = self._newer_snapshot()
        with self._lock:
            now = self._clock()
            if newer is not None:
                self.hashes, self.features = newer.hashes, newer.features
                self._mapped_from, self._high, self._gaps = newer.path, newer.position.high, {seq: now for seq in newer.position.gaps}
            elif not force and now - self._checked < self._interval:
                return
            self._checked = now
            # From the oldest number still awaited, those about to be given up included: had
            # pruning taken one of them since the last catch-up, the mark below shows it.
            after = min(self._gaps, default=self._high + 1) - 1
            while True:
                with self.catalog._tx(write=False) as cur:
                    changes = changes_after(cur, after, self._batch)
                    pruned = pruned_through(cur)  # read after the rows: a prune that took some of them shows
                if min(self._gaps, default=self._high + 1) <= pruned:
                    self._reload_everything(pruned)
                    # and on from where that left the indexes (a snapshot's position, or now)
                    after = min(self._gaps, default=self._high + 1) - 1
                    continue
                fresh = [(seq, p) for seq, p in changes if seq > self._high or self._gaps.pop(seq, None) is not None]
                numbers = {seq for seq, _ in fresh}
                top = max(numbers, default=self._high)
                self._gaps.update((seq, now) for seq in range(self._high + 1, top + 1) if seq not in numbers)
                self._high = max(self._high, top)
                self._reload(sorted({p for _, p in fresh}))
                if len(changes) < self._batch:
                    break
                after = changes[-1][0]
            self._gaps = {seq: seen for seq, seen in self._gaps.items() if now - seen < self._gap_seconds}
        if newer is not None:
            freeze_loaded()  # the old indexes' objects back to the collector, the new ones out of its way
            log.info("near-duplicate indexes moved to the snapshot %s and the change log since", newer.path)

    def _reload_everything(self, pruned: int) -> None:
        """Rows this process had not applied were pruned, and with them which photos changed:
        read both tables again, as at start. Lookups wait meanwhile (as long as the start's load),
        and the old indexes stay until the new ones are whole, so a lookup never sees half of one."""
        behind, started = self._high, time.monotonic()
        self.hashes, self.features = self._load()
        freeze_loaded()  # the old indexes' objects back to the collector, the new ones out of its way
        log.warning("near-duplicate index reloaded: the change log was pruned up to number %d, this process "
                    "had applied up to %d; loaded %d view hashes and %d postings anew in %.1f s",
                    pruned, behind, self.hashes.count(), self.features.postings(), time.monotonic() - started)

    def _reload(self, photo_ids: list[str]) -> None:
        """Read the photos' rows again from the tables: what they hold now is what the index holds."""
        for start in range(0, len(photo_ids), 500):
            some = photo_ids[start : start + 500]
            marks = ", ".join("?" * len(some))
            with self.catalog._tx(write=False) as cur:
                hashes = cur.fetchall(f"SELECT {_HASH_ROW} FROM hash_index WHERE photo_id IN ({marks})", some)
                packed = cur.fetchall(f"SELECT {_KEYS_ROW} FROM feature_keys WHERE photo_id IN ({marks})", some)
            hashes_of: dict[str, list[tuple[Any, ...]]] = {}
            for row in hashes:
                hashes_of.setdefault(row[0], []).append(row)
            keys_of = {row[0]: row for row in packed}
            for photo_id in some:
                mine, keys = hashes_of.get(photo_id, []), keys_of.get(photo_id)
                if mine:
                    self.hashes.add(photo_id, mine[0][1] or None, [(r[2], from_signed_words(r[3:])) for r in mine])
                else:
                    self.hashes.remove(photo_id)
                if keys is not None:
                    self.features.add(photo_id, keys[1] or None, unpack_keys(keys[2]).tolist())
                else:
                    self.features.remove(photo_id)


class SyncedHashIndex:
    """``HashIndex`` over the table (writes) and this process's memory index (lookups)."""

    def __init__(self, indexes: CatalogIndexes) -> None:
        self.indexes = indexes

    def add(self, photo_id: str, owner: str | None, hashes: Sequence[tuple[str, int]]) -> None:
        self.indexes.sql_hashes.add(photo_id, owner, hashes)
        self.indexes.written()

    def remove(self, photo_id: str) -> None:
        self.indexes.sql_hashes.remove(photo_id)
        self.indexes.written()

    def search(self, queries: Sequence[int], radius: int, owner: str | None = None,
               exclude: str | None = None) -> list[IndexHit]:
        self.indexes.catch_up()
        return self.indexes.hashes.search(queries, radius, owner=owner, exclude=exclude)

    def count(self) -> int:
        self.indexes.catch_up()
        return self.indexes.hashes.count()


class SyncedFeatureIndex:
    """``FeatureIndex`` over the packed rows (writes, refiling batches) and memory (votes)."""

    def __init__(self, indexes: CatalogIndexes) -> None:
        self.indexes = indexes

    def add(self, photo_id: str, owner: str | None, keys: Sequence[int]) -> None:
        self.indexes.sql_features.add(photo_id, owner, keys)
        self.indexes.written()

    def remove(self, photo_id: str) -> None:
        self.indexes.sql_features.remove(photo_id)
        self.indexes.written()

    def votes(self, keys: Sequence[int], limit: int, min_votes: int, owner: str | None = None,
              exclude: str | None = None) -> list[tuple[str, int]]:
        self.indexes.catch_up()
        return self.indexes.features.votes(keys, limit, min_votes, owner=owner, exclude=exclude)

    def filed_below(self, key: int, limit: int) -> list[tuple[str, str]]:
        return self.indexes.sql_features.filed_below(key, limit)


def load_hash_index(catalog: SqlCatalog, batch: int = 50_000) -> MemoryHashIndex:
    """``hash_index`` read into a new memory index, built; room for its rows reserved first (a
    count is one index scan, and growing by doubling would hold up to twice the rows' arrays)."""
    hashes = MemoryHashIndex(rebuild_in_background=True)
    with catalog._tx(write=False) as cur:
        hashes.reserve(int(cur.fetchall("SELECT COUNT(*) FROM hash_index")[0][0]))
    for rows in photo_batches(catalog, "hash_index", _HASH_ROW, batch, then="view"):
        hashes.add_many([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], _words(rows), rebuild=False)
    hashes.rebuild()
    return hashes


def load_feature_index(catalog: SqlCatalog, batch: int = 50_000) -> MemoryFeatureIndex:
    """``feature_keys`` read into a new memory index, built: each batch's packed rows joined and
    read as one array (no Python object per key). Read twice, keys counted then placed, so the
    load's peak is the built arrays' (``MemoryFeatureIndex.load``); if photos were filed or
    removed between the two reads, read once more the one-pass way (the changes since the load
    began are replayed after it either way)."""
    def batches() -> Iterator[tuple[list[str], list[str | None], np.ndarray, np.ndarray]]:
        for rows in photo_batches(catalog, "feature_keys", _KEYS_ROW, batch):
            yield ([r[0] for r in rows], [r[1] or None for r in rows], *_unpacked([r[2] for r in rows]))

    features = MemoryFeatureIndex(merge_in_background=True)
    try:
        features.load(batches)
    except ValueError:
        log.info("feature_keys changed between the load's two reads: loading it in one")
        features.load_in_one_read(batches)
    return features


def photo_batches(catalog: SqlCatalog, table: str, columns: str, batch: int, then: str = "") -> Iterator[list[tuple[Any, ...]]]:
    """Every row of ``table`` in photo id order (then ``then``), a batch at a time, no photo split between two."""
    after, size, order = "", batch, f"photo_id, {then}" if then else "photo_id"
    while True:
        with catalog._tx(write=False) as cur:
            rows = cur.fetchall(f"SELECT {columns} FROM {table} WHERE photo_id > ? ORDER BY {order} LIMIT ?", (after, size))
        if len(rows) < size:
            if rows:
                yield rows
            return
        whole = [r for r in rows if r[0] != rows[-1][0]]  # the last photo may go on in the next batch
        if not whole:
            size *= 2
            continue
        yield whole
        after = whole[-1][0]


def memory_indexes(catalog: SqlCatalog, snapshots: Path | None = None) -> tuple[SyncedHashIndex, SyncedFeatureIndex]:
    indexes = CatalogIndexes(catalog, snapshots=snapshots)
    return SyncedHashIndex(indexes), SyncedFeatureIndex(indexes)


def write_snapshot(catalog: SqlCatalog, directory: Path, keep: int = 2,
                   indexes: CatalogIndexes | None = None) -> tuple[Path, CatalogIndexes]:
    """A new snapshot in ``directory`` of the indexes as they stand now, their tails merged; all
    but the ``keep`` newest snapshots deleted. ``indexes``: those the last call returned, brought
    up to date by the log (a writer that runs every hour keeps them); else loaded from the newest
    snapshot there and the log since, or from the tables. Returns its path and the indexes written."""
    if indexes is None:
        indexes = CatalogIndexes(catalog, snapshots=directory)
    else:
        indexes.catch_up(force=True)
    indexes.hashes.rebuild()
    indexes.features.rebuild()
    path = snapshot.write(directory, indexes.hashes.state(), indexes.features.state(), indexes.position())
    snapshot.prune(directory, keep)
    return path, indexes


def freeze_loaded() -> None:
    """Move every object alive now, a loaded index's lists and dicts of ids among them, to the
    cycle collector's permanent generation (``gc.freeze``), which no collection walks: a full pass
    over them took 0.3 s at 5 million hash rows, a stall on whatever lookup it landed on. What an
    earlier call froze (an index since replaced) is handed back first and a full collection runs
    before the freeze, so garbage in reference cycles is freed now instead of kept for good."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _words(rows: list[tuple[Any, ...]]) -> np.ndarray:
    return to_words([from_signed_words(r[3:7]) for r in rows])


def _unpacked(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(keys each, every key in order) of packed rows, in one pass over their bytes."""
    counts = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs)) // PACKED_KEY.itemsize
    return counts, np.frombuffer(b"".join(blobs), dtype=PACKED_KEY)
