"""Snapshots of the memory indexes (MP_INDEX_SNAPSHOT_DIR): what a restored index answers and how it
changes are those of the index it was taken from; its postings and bucket tables are mapped from
the files, not copied; a process starts from the newest snapshot and the change log since (SQLite
and PostgreSQL), without reading the tables; a snapshot the log's pruning overtook, or one damaged,
is passed over for the tables; `media-pipeline index-snapshot` writes one and keeps the newest."""

from __future__ import annotations

import logging
import mmap
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from media_pipeline.catalog.sql import SqlCatalog
from media_pipeline.hashindex import MemoryFeatureIndex, MemoryHashIndex, key_table, snapshot, synced
from media_pipeline.hashindex.memory import to_words
from media_pipeline.hashindex.synced import CatalogIndexes, SyncedFeatureIndex, SyncedHashIndex, write_snapshot
from tests.contract.test_hashindex_contract import fresh_url  # noqa: F401 - the fixture

BITS = 256
OWNERS = ["alice", None, "bob"]


def mapped_from_a_file(array: np.ndarray) -> bool:
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return isinstance(base, mmap.mmap)


def same_answers(a: tuple[MemoryHashIndex, MemoryFeatureIndex], b: tuple[MemoryHashIndex, MemoryFeatureIndex],
                 values: list[int], rng: np.random.Generator) -> None:
    for _ in range(5):
        query = rng.integers(0, 4_000, size=900).tolist()
        for owner in (None, "alice", "bob", "nobody"):
            assert a[1].votes(query, 50, 1, owner=owner) == b[1].votes(query, 50, 1, owner=owner)
        assert a[1].votes(query, 10, 2, exclude="p003") == b[1].votes(query, 10, 2, exclude="p003")
    for owner in (None, "alice"):
        found = [(h.photo_id, h.view, h.distance, h.query) for h in a[0].search(values, 3, owner=owner)]
        assert found == [(h.photo_id, h.view, h.distance, h.query) for h in b[0].search(values, 3, owner=owner)]
    assert a[0].count() == b[0].count()
    assert a[1].filed_below(1 << 32, 1_000) == b[1].filed_below(1 << 32, 1_000)


def test_a_restored_index_answers_and_changes_like_the_one_it_was_taken_from(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(key_table, "_DIRECT_MIN_KEYS", 200)  # segments with key tables, and without
    rng = np.random.default_rng(11)
    chance = random.Random(11)
    features = MemoryFeatureIndex(rebuild_after=400, segment_postings=700)
    hashes = MemoryHashIndex(rebuild_after=20)
    values: list[int] = []
    for i in range(240):
        features.add(f"p{i:03d}", OWNERS[i % 3], sorted(set(rng.integers(0, 4_000, size=30).tolist())))
        values += [chance.getrandbits(BITS), chance.getrandbits(BITS)]
        hashes.add(f"p{i:03d}", OWNERS[i % 3], [("full", values[-2]), ("crop", values[-1])])
    piece = [chance.getrandbits(BITS) for _ in range(3)]  # a photo bulk-loaded in two pieces: rows not contiguous
    hashes.add_many(["split"], ["bob"], ["full"], to_words(piece[:1]))
    hashes.add_many(["other", "split"], [None, "bob"], ["full", "top"], to_words(piece[1:]))
    values += piece
    for i in range(0, 240, 9):
        features.remove(f"p{i:03d}")
        hashes.remove(f"p{i:03d}")
    features.rebuild()
    hashes.rebuild()
    path = snapshot.write(tmp_path, hashes.state(), features.state(), snapshot.Position(57, [55, 41]))
    taken = snapshot.read(path)
    assert taken.position == snapshot.Position(57, [41, 55])
    restored = (MemoryHashIndex.restored(taken.hashes, rebuild_after=20),
                MemoryFeatureIndex.restored(taken.features, rebuild_after=400, segment_postings=700))
    segments = taken.features.segments
    assert len(segments) > 5 and any(s.direct is not None for s in segments) and any(s.direct is None for s in segments)
    assert all(mapped_from_a_file(a) for s in segments for a in (s.keys, s.offsets, s.photos.low, s.photos.high))
    assert all(mapped_from_a_file(a) for pair in taken.hashes.buckets for a in pair)
    assert not mapped_from_a_file(restored[0]._words) and not mapped_from_a_file(restored[1]._alive)
    taken_postings = features.postings()
    same_answers((hashes, features), restored, values, rng)
    # The same changes to both: past an eighth dead (27 + 5 of 240), the postings of the dead go;
    # then past a merge, a renumbering and a bucketing.
    for index in (features, restored[1]):
        for photo_id in ("p001", "p002", "p004", "p005", "p007"):
            index.remove(photo_id)
        index.rebuild()
    assert restored[1].postings() == features.postings() < taken_postings
    for index in ((hashes, features), restored):
        steps = random.Random(3)
        for i in range(240, 300):
            keys = sorted({steps.randrange(4_000) for _ in range(30)})
            index[1].add(f"p{i:03d}", OWNERS[i % 3], keys)
            index[0].add(f"p{i:03d}", OWNERS[i % 3], [("full", values[i % 50] ^ (1 << (i % 200)))])
        for i in range(1, 240, 2):
            index[1].remove(f"p{i:03d}")
            index[0].remove(f"p{i:03d}")
        index[0].remove("split")
        index[1].rebuild()
    same_answers((hashes, features), restored, values, rng)
    assert features.postings() == restored[1].postings()


def process(url: str, snapshots: Path | None = None, **options: Any) -> tuple[SqlCatalog, CatalogIndexes]:
    catalog = SqlCatalog(url)
    catalog.migrate()
    return catalog, CatalogIndexes(catalog, interval=0, snapshots=snapshots, **options)


def tables_read(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the process loads that read the tables."""
    read: Counter[str] = Counter()
    for name in ("load_hash_index", "load_feature_index"):
        original = getattr(synced, name)

        def counted(*args: Any, original: Any = original, name: str = name) -> Any:
            read[name] += 1
            return original(*args)

        monkeypatch.setattr(synced, name, counted)
    return read


def file_photo(indexes: CatalogIndexes, photo_id: str, value: int, keys: range, owner: str | None = None) -> None:
    SyncedHashIndex(indexes).add(photo_id, owner, [("full", value)])
    SyncedFeatureIndex(indexes).add(photo_id, owner, keys)


def found(indexes: CatalogIndexes, values: list[int]) -> list[str]:
    return sorted({h.photo_id for h in SyncedHashIndex(indexes).search(values, 0)})


def voted(indexes: CatalogIndexes, keys: range) -> list[str]:
    return sorted(p for p, _ in SyncedFeatureIndex(indexes).votes(keys, limit=10, min_votes=5))


def test_a_process_starts_from_the_newest_snapshot_and_the_log_since(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    chance = random.Random(12)
    values = [chance.getrandbits(BITS) for _ in range(5)]
    catalog_a, a = process(url)
    file_photo(a, "one", values[0], range(100, 150), "alice")
    file_photo(a, "two", values[1], range(200, 250))
    first, _ = write_snapshot(catalog_a, tmp_path / "snapshots")
    file_photo(a, "three", values[2], range(300, 350))  # after the snapshot: in the log only
    SyncedFeatureIndex(a).remove("one")
    SyncedHashIndex(a).remove("one")
    read = tables_read(monkeypatch)
    with caplog.at_level(logging.INFO, logger="media_pipeline.hashindex.synced"):
        catalog_b, b = process(url, tmp_path / "snapshots")
    assert str(first) in caplog.text and not read
    assert found(b, values) == ["three", "two"]
    assert voted(b, range(100, 350)) == ["three", "two"]
    assert SyncedFeatureIndex(b).votes(range(200, 210), limit=5, min_votes=5, owner="alice") == []
    file_photo(a, "four", values[3], range(400, 450), "alice")  # and on by the log
    assert found(b, values) == ["four", "three", "two"]
    assert SyncedFeatureIndex(b).votes(range(400, 420), limit=5, min_votes=5, owner="alice") == [("four", 20)]
    # Idle while what it had not read is pruned: it takes the newer snapshot, not the tables, and
    # the log since.
    file_photo(a, "five", values[4], range(500, 550))
    catalog_a.prune_index_changes(time.time() + 1)
    second, _ = write_snapshot(catalog_a, tmp_path / "snapshots")  # from the tables: the first is overtaken too
    assert read["load_feature_index"] == 1
    read.clear()
    SyncedHashIndex(a).remove("two")
    with caplog.at_level(logging.INFO, logger="media_pipeline.hashindex.synced"):
        assert found(b, values) == ["five", "four", "three"]
    assert "near-duplicate index reloaded" in caplog.text and str(second) in caplog.text and not read
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == sorted([first.name, second.name])
    catalog_a.close()
    catalog_b.close()


def test_a_snapshot_the_pruning_overtook_or_a_damaged_one_is_passed_over_for_the_tables(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    chance = random.Random(13)
    values = [chance.getrandbits(BITS) for _ in range(3)]
    catalog_a, a = process(url)
    file_photo(a, "one", values[0], range(100, 150))
    path, _ = write_snapshot(catalog_a, tmp_path / "snapshots")
    file_photo(a, "two", values[1], range(200, 250))
    read = tables_read(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="media_pipeline.hashindex.synced"):
        next(path.glob("f0-low.npy")).write_bytes(b"cut short")
        catalog_b, b = process(url, tmp_path / "snapshots")
        assert "snapshot unusable" in caplog.text and "reading the tables" in caplog.text and read["load_feature_index"] == 1
        assert found(b, values) == ["one", "two"] and voted(b, range(100, 250)) == ["one", "two"]
        write_snapshot(catalog_a, tmp_path / "snapshots")  # a good one again, but the pruning passes it
        file_photo(a, "three", values[2], range(300, 350))
        catalog_a.prune_index_changes(time.time() + 1)
        catalog_c, c = process(url, tmp_path / "snapshots")
    assert "newer than the change log's pruning" in caplog.text and read["load_feature_index"] == 3  # b, the writer, c
    assert found(c, values) == ["one", "three", "two"] and voted(c, range(100, 350)) == ["one", "three", "two"]
    for catalog in (catalog_a, catalog_b, catalog_c):
        catalog.close()


def test_a_running_process_moves_to_a_newer_snapshot_and_the_log_since(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Its own copies (read from the tables here; made by its merges otherwise) give way to the
    mapped ones of the newest snapshot once a minute, and what was filed and removed after the
    snapshot still counts, also what the process had applied before it moved."""
    snapshots = tmp_path / "snapshots"
    chance = random.Random(15)
    values = [chance.getrandbits(BITS) for _ in range(3)]
    now = [0.0]
    catalog_a, a = process(url)
    file_photo(a, "one", values[0], range(100, 150))
    catalog_b, b = process(url, snapshots, clock=lambda: now[0])  # no snapshot yet: from the tables
    assert not any(mapped_from_a_file(segment.keys) for segment in b.features._segments)
    file_photo(a, "two", values[1], range(200, 250))
    written, _ = write_snapshot(catalog_a, snapshots)
    file_photo(a, "three", values[2], range(300, 350))
    now[0] = 30.0
    assert found(b, values) == ["one", "three", "two"]  # not due yet: by the log, past the snapshot
    SyncedHashIndex(a).remove("one")
    SyncedFeatureIndex(a).remove("one")
    read = tables_read(monkeypatch)
    now[0] = 61.0
    with caplog.at_level(logging.INFO, logger="media_pipeline.hashindex.synced"):
        assert found(b, values) == ["three", "two"]
        assert voted(b, range(100, 350)) == ["three", "two"]
        now[0] = 200.0
        assert found(b, values) == ["three", "two"]  # nothing newer: it stays
    assert caplog.text.count(f"moved to the snapshot {written}") == 1 and not read
    assert all(mapped_from_a_file(segment.keys) for segment in b.features._segments)
    catalog_a.close()
    catalog_b.close()


def test_the_command_writes_a_snapshot_a_service_starts_from_and_keeps_the_newest(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from config.settings import Settings
    from media_pipeline import cli
    from media_pipeline.queue import RecordingQueue
    from media_pipeline.service import build_services

    snapshots = tmp_path / "snapshots"
    env = {"MP_DUPLICATE_INDEX": "memory", "MP_INDEX_SNAPSHOT_DIR": str(snapshots), "MP_DATA_DIR": str(tmp_path / "var")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(env)
    services = build_services(settings, queue=RecordingQueue())
    chance = random.Random(14)
    values = [chance.getrandbits(BITS) for _ in range(3)]
    for i, value in enumerate(values):
        services.hash_index.add(f"p{i}", None, [("full", value)])
        assert cli.main(["index-snapshot", "--keep", "2"]) == 0
        assert f"{i + 1} view hashes" in capsys.readouterr().out
    written = sorted(snapshots.iterdir())
    assert len(written) == 2 and snapshot.read(written[-1]).position.high > snapshot.read(written[0]).position.high
    read = tables_read(monkeypatch)
    started = build_services(settings, queue=RecordingQueue())
    assert not read
    assert sorted({h.photo_id for h in started.hash_index.search(values, 0)}) == ["p0", "p1", "p2"]
    # --every: a snapshot a round, the indexes kept and brought up to date by the log, until stopped.
    rounds = []

    def between_rounds(seconds: float) -> None:
        rounds.append(seconds)
        if len(rounds) == 2:
            raise KeyboardInterrupt
        services.hash_index.add("p3", None, [("full", values[0] ^ 1)])

    monkeypatch.setattr(time, "sleep", between_rounds)
    caplog.clear()  # what the starts above logged (captured when the CLI's logging setup lets INFO through)
    with caplog.at_level(logging.INFO, logger="media_pipeline.hashindex.synced"):
        assert cli.main(["index-snapshot", "--every", "3600"]) == 0
    assert caplog.text.count("mapped from") == 1  # mapped once, then kept
    wrote = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    assert rounds == [3600.0, 3600.0] and len(wrote) == 2 and "3 view hashes" in wrote[0] and "4 view hashes" in wrote[1], wrote
    assert not read
    monkeypatch.delenv("MP_INDEX_SNAPSHOT_DIR")
    assert cli.main(["index-snapshot"]) == 2
    assert "set MP_INDEX_SNAPSHOT_DIR or pass --dir" in capsys.readouterr().err


@pytest.fixture
def url(fresh_url: str) -> str:
    """A catalog of its own on SQLite or PostgreSQL."""
    return fresh_url
