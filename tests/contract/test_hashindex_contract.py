"""One contract for every near-duplicate index backend: in memory (both its scanned and its
bucketed rows), SQLite and PostgreSQL (a real server; required in CI)."""

from __future__ import annotations

import random
from typing import Any, Iterator

import pytest

from media_pipeline.catalog.sql import SqlCatalog
from media_pipeline.hashindex import HashIndex, MemoryHashIndex, SqlHashIndex
from media_pipeline.hashindex.base import SQL_LAYOUT
from media_pipeline.hashindex.sql import to_signed_words

BITS = 256


@pytest.fixture(params=["memory", "memory-bucketed", "memory-background", "memory-23bit", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        "synced-sqlite", pytest.param("synced-postgresql", marks=pytest.mark.postgres)])
def index(request: Any, tmp_path: Any) -> Any:
    if request.param == "memory":
        yield MemoryHashIndex()
        return
    if request.param == "memory-bucketed":
        yield MemoryHashIndex(rebuild_after=3)  # nearly every row goes through the bucket tables
        return
    if request.param == "memory-background":
        yield MemoryHashIndex(rebuild_after=3, rebuild_in_background=True)  # lookups while a thread buckets
        return
    if request.param == "memory-23bit":
        yield MemoryHashIndex(rebuild_after=40, chunk_bits=23)  # the 10M-row layout: substrings straddle words
        return
    yield from sql_backend(request, tmp_path, SqlHashIndex, "hash_index")


def sql_backend(request: Any, tmp_path: Any, backend: Any, *tables: str) -> Iterator[Any]:
    """``backend`` over a fresh SQLite file or the session's PostgreSQL database, emptied after;
    for ``synced-*``, the memory index loaded from that catalog (MP_DUPLICATE_INDEX=memory)."""
    from media_pipeline.hashindex.synced import memory_indexes

    dialect = request.param.removeprefix("synced-")
    url = f"sqlite:///{tmp_path / 'catalog.db'}" if dialect == "sqlite" else request.getfixturevalue("postgres_url")
    catalog = SqlCatalog(url)
    catalog.migrate()
    synced = request.param.startswith("synced-")
    yield memory_indexes(catalog)[0 if backend is SqlHashIndex else 1] if synced else backend(catalog)
    if dialect == "postgresql":
        with catalog._tx() as cur:
            for table in tables:
                cur.execute(f"DELETE FROM {table}")
    catalog.close()


def flip(value: int, bits: int, rng: random.Random) -> int:
    for position in rng.sample(range(BITS), bits):
        value ^= 1 << position
    return value


def test_is_a_hash_index(index: Any) -> None:
    assert isinstance(index, HashIndex)


def test_finds_exactly_what_is_within_the_radius(index: Any) -> None:
    """Planted hashes at every distance around the radius, among random ones: the search must
    answer what a brute-force scan answers, for radii that probe 0, 1, 2 and 3 bits per substring."""
    rng = random.Random(7)
    query = rng.getrandbits(BITS)
    planted = {f"p{d:02d}": d for d in range(0, 46)}
    for photo_id, distance in planted.items():
        index.add(photo_id, None, [("full", flip(query, distance, rng))])
    for i in range(200):
        index.add(f"r{i:03d}", None, [("full", rng.getrandbits(BITS))])
    for radius in (0, 9, 15, 16, 31, 40):
        hits = index.search([query], radius)
        assert [(h.photo_id, h.distance) for h in hits] == sorted(
            ((pid, d) for pid, d in planted.items() if d <= radius), key=lambda x: (x[1], x[0])
        ), radius
    assert index.count() == 246


def test_one_hit_per_photo_its_closest_view_and_query(index: Any) -> None:
    rng = random.Random(1)
    base = rng.getrandbits(BITS)
    index.add("a", None, [("full", flip(base, 20, rng)), ("centre85", flip(base, 3, rng)), ("top", rng.getrandbits(BITS))])
    index.add("b", None, [("full", flip(base, 12, rng))])
    other_query = rng.getrandbits(BITS)
    hits = index.search([other_query, base], 31)
    assert [(h.photo_id, h.view, h.distance, h.query) for h in hits] == [("a", "centre85", 3, 1), ("b", "full", 12, 1)]


def test_owner_scope_and_exclude(index: Any) -> None:
    value = random.Random(2).getrandbits(BITS)
    index.add("mine", "alice", [("full", value)])
    index.add("theirs", "bob", [("full", value)])
    index.add("anon", None, [("full", value)])
    assert {h.photo_id for h in index.search([value], 4)} == {"mine", "theirs", "anon"}
    assert [h.photo_id for h in index.search([value], 4, owner="alice")] == ["mine"]
    assert [h.photo_id for h in index.search([value], 4, owner="")] == ["anon"]
    assert [h.photo_id for h in index.search([value], 4, owner="carol")] == []
    assert {h.photo_id for h in index.search([value], 4, exclude="mine")} == {"theirs", "anon"}


def test_add_replaces_and_remove_forgets(index: Any) -> None:
    rng = random.Random(3)
    old, new = rng.getrandbits(BITS), rng.getrandbits(BITS)
    index.add("x", None, [("full", old), ("top", old)])
    index.add("x", None, [("full", new)])
    assert index.search([old], 10) == []
    assert [h.photo_id for h in index.search([new], 0)] == ["x"]
    assert index.count() == 1
    index.remove("x")
    index.remove("never-there")
    assert index.search([new], 10) == [] and index.count() == 0


def test_empty_queries_and_empty_index(index: Any) -> None:
    assert index.search([], 31) == []
    assert index.search([123], 31) == []


# --------------------------------------------------------------------------- keypoint votes
@pytest.fixture(params=["memory", "memory-rebuilt", "memory-background", "memory-segmented", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        "synced-sqlite", pytest.param("synced-postgresql", marks=pytest.mark.postgres)])
def features(request: Any, tmp_path: Any) -> Any:
    from media_pipeline.hashindex import MemoryFeatureIndex, SqlFeatureIndex

    if request.param == "memory":
        yield MemoryFeatureIndex()  # every posting in the tail
        return
    if request.param == "memory-rebuilt":
        yield MemoryFeatureIndex(rebuild_after=3)  # sorted into the arrays at nearly every add, dead photos dropped
        return
    if request.param == "memory-background":
        yield MemoryFeatureIndex(rebuild_after=3, merge_in_background=True)  # lookups while a thread merges
        return
    if request.param == "memory-segmented":
        yield MemoryFeatureIndex(rebuild_after=3, merge_in_background=True, segment_postings=4)  # merged a key range at a time
        return
    yield from sql_backend(request, tmp_path, SqlFeatureIndex, "feature_postings", "feature_keys")


def test_feature_votes(features: Any) -> None:
    from media_pipeline.hashindex import FeatureIndex

    assert isinstance(features, FeatureIndex)
    features.add("a", "alice", range(0, 100))
    features.add("b", None, range(50, 120))
    features.add("c", "bob", range(95, 200))
    query = list(range(40, 110)) + [40, 41]  # repeated keys count once
    assert features.votes(query, limit=5, min_votes=1) == [("a", 60), ("b", 60), ("c", 15)]
    assert features.votes(query, limit=1, min_votes=1) == [("a", 60)]
    assert features.votes(query, limit=5, min_votes=20) == [("a", 60), ("b", 60)]
    assert features.votes(query, limit=5, min_votes=1, owner="") == [("b", 60)]
    assert features.votes(query, limit=5, min_votes=1, owner="bob") == [("c", 15)]
    assert features.votes(query, limit=5, min_votes=1, exclude="a") == [("b", 60), ("c", 15)]
    features.add("a", "alice", range(1000, 1010))  # replaces
    assert features.votes(query, limit=5, min_votes=1) == [("b", 60), ("c", 15)]
    features.remove("b")
    features.remove("never-there")
    assert features.votes(query, limit=5, min_votes=1) == [("c", 15)]
    assert features.votes([], limit=5, min_votes=1) == []


def test_photos_filed_below_a_key(features: Any) -> None:
    features.add("old", "alice", [5, 70_000])
    features.add("mixed", None, [10, 1 << 30])
    features.add("new", None, [1 << 30, (1 << 30) + 7])
    assert sorted(features.filed_below(1 << 18, limit=10)) == [("mixed", ""), ("old", "alice")]
    one = features.filed_below(1 << 18, limit=1)  # a batch: which photo comes first is the backend's
    assert len(one) == 1 and one[0] in [("mixed", ""), ("old", "alice")]
    assert features.filed_below(6, limit=10) == [("old", "alice")]
    features.add("old", "alice", [(1 << 30) + 5])  # filed again under new keys
    features.remove("mixed")
    assert features.filed_below(1 << 18, limit=10) == []


# --------------------------------------------------------------------------- migration 6
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_url(request: Any, tmp_path: Any) -> Iterator[str]:
    """An empty database of its own: a migration test must start before every migration."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    from tests.conftest import fresh_postgres_database

    yield from fresh_postgres_database("mp_migrate")


def test_hashes_indexed_before_the_lean_indexes_are_found_after(fresh_url: str, monkeypatch: Any) -> None:
    """Migration 6 rebuilds the substring indexes without photo id, view and owner (and gives
    PostgreSQL rows a number): what a catalog held before it is still found, scoped, and removable."""
    from media_pipeline.catalog import sql

    rng = random.Random(6)
    value = rng.getrandbits(BITS)
    before = [(version, statements) for version, statements in sql.MIGRATIONS if version < 6]
    monkeypatch.setattr(sql, "MIGRATIONS", tuple(before))
    old = SqlCatalog(fresh_url)
    old.migrate()
    with old._tx() as cur:  # a row as the migration-5 code wrote it
        cur.execute("INSERT INTO hash_index (photo_id, view, owner, h0, h1, h2, h3, "
                    + ", ".join(f"c{i}" for i in range(16)) + ") VALUES (" + ", ".join("?" * 23) + ")",
                    ("old", "full", "alice", *to_signed_words(value), *SQL_LAYOUT.chunks(value)))
    old.close()
    monkeypatch.undo()
    catalog = SqlCatalog(fresh_url)
    catalog.migrate()
    index = SqlHashIndex(catalog)
    index.add("new", None, [("full", flip(value, 5, rng))])
    assert [(h.photo_id, h.distance) for h in index.search([value], 31)] == [("old", 0), ("new", 5)]
    assert [h.photo_id for h in index.search([value], 31, owner="alice")] == ["old"]
    index.remove("old")
    assert [h.photo_id for h in index.search([value], 31)] == ["new"]
    catalog.close()

