"""MP_DUPLICATE_INDEX=memory across processes: each process's memory indexes, loaded from one
catalog, find what another filed or removed on its next lookup (SQLite and PostgreSQL), also when
PostgreSQL commits the change log's numbers out of order, and two services find each other's photos."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from bench import edits
from media_pipeline import service
from media_pipeline.catalog.sql import SqlCatalog
from media_pipeline.hashindex.sql import SqlHashIndex
from media_pipeline.hashindex.synced import CatalogIndexes, SyncedFeatureIndex, SyncedHashIndex
from media_pipeline.service import Outcome, build_services
from tests import images
from tests.conftest import ingest_bytes
from tests.contract.test_hashindex_contract import fresh_url  # noqa: F401 - the fixture

BITS = 256


@pytest.fixture
def url(fresh_url: str) -> str:
    """A catalog of its own on SQLite or PostgreSQL."""
    return fresh_url


def process(url: str) -> tuple[SqlCatalog, SyncedHashIndex, SyncedFeatureIndex]:
    """What one process holds: its own connection and its own memory indexes."""
    catalog = SqlCatalog(url)
    catalog.migrate()
    indexes = CatalogIndexes(catalog, interval=0)
    return catalog, SyncedHashIndex(indexes), SyncedFeatureIndex(indexes)


def test_what_one_process_files_or_removes_the_other_sees_on_its_next_lookup(url: str) -> None:
    rng = random.Random(4)
    value = rng.getrandbits(BITS)
    catalog_a, hashes_a, features_a = process(url)
    hashes_a.add("before", "alice", [("full", value)])
    features_a.add("before", "alice", range(100, 150))
    catalog_b, hashes_b, features_b = process(url)  # loads what was filed before it started
    assert [h.photo_id for h in hashes_b.search([value], 4)] == ["before"]
    assert features_b.votes(range(100, 120), limit=5, min_votes=2, owner="alice") == [("before", 20)]
    hashes_a.add("after", None, [("full", value ^ 1)])
    features_a.add("after", None, range(140, 200))
    assert [h.photo_id for h in hashes_b.search([value], 4)] == ["before", "after"]
    assert features_b.votes(range(140, 160), limit=5, min_votes=2) == [("after", 20), ("before", 10)]
    hashes_a.add("before", "alice", [("full", value ^ (1 << 200) ^ (1 << 100))])  # replaced
    features_a.remove("after")
    assert [(h.photo_id, h.distance) for h in hashes_b.search([value], 4)] == [("after", 1), ("before", 2)]
    assert features_b.votes(range(140, 160), limit=5, min_votes=2) == [("before", 10)]
    catalog_a.delete_photo("before")  # the catalog's own delete logs the change too
    assert [h.photo_id for h in hashes_b.search([value], 4)] == ["after"]
    assert features_b.votes(range(100, 160), limit=5, min_votes=1) == []
    assert hashes_b.count() == 1
    catalog_a.close()
    catalog_b.close()


@pytest.mark.postgres
def test_a_number_committed_after_a_higher_one_is_still_applied(postgres_url: str) -> None:
    """PostgreSQL numbers a change at insert: a filing that commits late shows up below one
    already applied; the reader looks for the missing number until it appears."""
    import psycopg

    rng = random.Random(5)
    late, early = rng.getrandbits(BITS), rng.getrandbits(BITS)
    catalog, hashes_a, _ = process(postgres_url)
    _, hashes_b, _ = process(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        with conn.transaction():
            slow = SqlCatalog(postgres_url)
            slow._local.conn, slow._local.pid = conn, os.getpid()  # its filing is a savepoint in the open transaction
            SqlHashIndex(slow).add("late", None, [("full", late)])  # takes its number now, commits after the other filing
            hashes_a.add("early", None, [("full", early)])
            assert [h.photo_id for h in hashes_b.search([early, late], 0)] == ["early"]
    assert [h.photo_id for h in hashes_b.search([late], 0)] == ["late"]
    catalog.close()


def test_two_services_on_one_catalog_find_each_others_photos(url: str, settings: Any, queue: Any) -> None:
    settings = settings.replace(duplicate_index="memory", catalog_url=url)
    api, worker = build_services(settings, queue=queue), build_services(settings, queue=queue)
    assert isinstance(api.hash_index, SyncedHashIndex) and isinstance(worker.feature_index, SyncedFeatureIndex)
    original = images.natural(900, 600, seed=121)
    first = ingest_bytes(api, edits.jpeg_bytes(original))
    assert service.process_photo(worker, first) is Outcome.DONE
    repost = ingest_bytes(api, edits.jpeg_bytes(edits.mirror(original, random.Random(0)), 70))
    assert service.process_photo(api, repost) is Outcome.DONE  # the other process filed the original
    assert [d.id for d in api.catalog.get_photo(repost).duplicates] == [first]
    assert api.catalog.delete_photo(first)
    again = ingest_bytes(worker, edits.jpeg_bytes(original, 80))
    assert service.process_photo(worker, again) is Outcome.DONE
    assert [d.id for d in worker.catalog.get_photo(again).duplicates] == [repost]



def test_a_process_holds_what_it_filed_once_and_finds_it_at_once(url: str) -> None:
    """Its own writes reach its arrays through the log, as others' do: once, not again beside a
    direct copy, and before its very next lookup even when the catch-up interval has not passed."""
    value = random.Random(5).getrandbits(BITS)
    _, hashes, features = process(url)
    for _ in range(3):  # filed again, as a reprocess or a refile does
        hashes.add("photo", None, [("full", value), ("crop", value ^ 3)])
        features.add("photo", None, range(100, 150))
        assert [h.photo_id for h in hashes.search([value], 4)] == ["photo"]
        assert features.votes(range(100, 120), limit=5, min_votes=2) == [("photo", 20)]
    assert features.indexes.features.postings() == 3 * 50  # one filing's 50 keys each time, the older ones dead
    assert hashes.count() == 2
    catalog = SqlCatalog(url)
    patient = CatalogIndexes(catalog, interval=3600)
    hashes, features = SyncedHashIndex(patient), SyncedFeatureIndex(patient)
    hashes.add("later", None, [("full", value ^ (1 << 255))])
    features.add("later", None, range(300, 340))
    assert [h.photo_id for h in hashes.search([value ^ (1 << 255)], 0)] == ["later"]
    assert features.votes(range(300, 320), limit=5, min_votes=2) == [("later", 20)]
