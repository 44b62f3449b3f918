"""MP_DUPLICATE_INDEX=memory across processes: each process's memory indexes, loaded from one
catalog, find what another filed or removed on its next lookup (SQLite and PostgreSQL), also when
PostgreSQL commits the change log's numbers out of order, and two services find each other's photos.
The reconciler prunes the change log; a process that missed pruned rows reloads, one that keeps
up never does."""

from __future__ import annotations

import gc
import logging
import os
import random
import time
from typing import Any

import pytest

from bench import edits
from config.settings import ConfigError, Settings
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
    with catalog_a._tx(write=False) as cur:  # the packed rows are the store of record: no postings are written
        assert cur.fetchall("SELECT COUNT(*) FROM feature_postings")[0][0] == 0
        assert cur.fetchall("SELECT COUNT(*) FROM feature_keys")[0][0] == 2
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


# --------------------------------------------------------------------------- pruning the change log
RELOADED = "near-duplicate index reloaded"


def logged_changes(catalog: SqlCatalog) -> list[str]:
    with catalog._tx(write=False) as cur:
        return [row[0] for row in cur.fetchall("SELECT photo_id FROM index_changes ORDER BY seq")]


def test_pruning_deletes_the_changes_older_than_the_keep_period_a_batch_at_a_time(url: str) -> None:
    catalog, hashes, features = process(url)
    hashes.add("first", None, [("full", 1)])
    features.add("second", None, range(100, 110))
    time.sleep(0.01)
    cutoff = time.time()
    time.sleep(0.01)
    hashes.add("third", None, [("full", 2)])
    assert catalog.prune_index_changes(cutoff, batches=1, batch=1) == 1  # a bounded round
    assert logged_changes(catalog) == ["second", "third"]
    assert catalog.prune_index_changes(cutoff) == 1
    assert logged_changes(catalog) == ["third"]
    assert catalog.prune_index_changes(cutoff) == 0
    catalog.close()


def test_the_reconciler_prunes_the_changes_older_than_the_setting(services: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from media_pipeline import cli

    services.hash_index.add("old", None, [("full", 1)])
    services.hash_index.add("new", None, [("full", 2)])
    with services.catalog._tx() as cur:  # written a day and a minute ago
        cur.execute("UPDATE index_changes SET created_at = created_at - ? WHERE photo_id = 'old'",
                    (services.settings.index_changes_keep_seconds + 60,))
    assert cli.main(["reconcile", "--data-dir", str(services.settings.data_dir)]) == 0
    assert "pruned 1 index changes older than MP_INDEX_CHANGES_KEEP_SECONDS" in capsys.readouterr().out
    assert logged_changes(services.catalog) == ["new"]


def test_a_keep_period_shorter_than_the_wait_for_late_numbers_is_refused() -> None:
    with pytest.raises(ConfigError, match="MP_INDEX_CHANGES_KEEP_SECONDS must be at least 60"):
        Settings.from_env({"MP_INDEX_CHANGES_KEEP_SECONDS": "5"})


def test_a_process_idle_past_the_keep_period_reloads_and_sees_what_changed(url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Its next lookup finds the rows it had not applied pruned: it reads the tables again, so a
    photo filed meanwhile is found and one removed meanwhile is not."""
    rng = random.Random(7)
    gone, kept, new, later = (rng.getrandbits(BITS) for _ in range(4))
    catalog_a, hashes_a, features_a = process(url)
    hashes_a.add("gone", None, [("full", gone)])
    features_a.add("gone", None, range(100, 150))
    hashes_a.add("kept", None, [("full", kept)])
    catalog_b, hashes_b, features_b = process(url)
    assert [h.photo_id for h in hashes_b.search([gone, kept, new], 0)] == ["gone", "kept"]
    catalog_a.delete_photo("gone")  # while b does no lookup
    hashes_a.add("new", None, [("full", new)])
    features_a.add("new", None, range(300, 350))
    assert catalog_a.prune_index_changes(time.time() + 1) == 6  # b's keep period is long past
    with caplog.at_level(logging.WARNING, logger="media_pipeline.hashindex.synced"):
        assert [h.photo_id for h in hashes_b.search([gone, kept, new], 0)] == ["kept", "new"]
        assert features_b.votes(range(100, 150), limit=5, min_votes=1) == []
        assert features_b.votes(range(300, 320), limit=5, min_votes=2) == [("new", 20)]
        hashes_a.add("later", None, [("full", later)])  # and it keeps up from there, by the log
        assert [h.photo_id for h in hashes_b.search([later], 0)] == ["later"]
    assert caplog.text.count(RELOADED) == 1
    assert hashes_b.count() == 3
    catalog_a.close()
    catalog_b.close()


def test_a_process_that_keeps_up_never_reloads(url: str, caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(8)
    values = [rng.getrandbits(BITS) for _ in range(6)]
    catalog_a, hashes_a, features_a = process(url)
    catalog_b, hashes_b, features_b = process(url)
    with caplog.at_level(logging.WARNING, logger="media_pipeline.hashindex.synced"):
        for i, value in enumerate(values):
            hashes_a.add(f"p{i}", None, [("full", value)])
            features_a.add(f"p{i}", None, range(100 * i, 100 * i + 40))
            if i:
                hashes_a.remove(f"p{i - 1}")
            assert [h.photo_id for h in hashes_b.search(values, 0)] == [f"p{i}"]
            assert catalog_a.prune_index_changes(time.time() + 1) > 0  # everything b has applied
            assert hashes_b.count() == 1 + i  # a lookup with the log empty: p{i} and b's own so far
            hashes_b.add(f"b{i}", None, [("full", value ^ 1)])  # its own filings come back through the log
            assert [h.photo_id for h in hashes_b.search([value], 1)] == [f"p{i}", f"b{i}"]
        assert features_b.votes(range(500, 520), limit=5, min_votes=2) == [("p5", 20)]
    assert logged_changes(catalog_a) == ["b5"]
    assert RELOADED not in caplog.text
    catalog_a.close()
    catalog_b.close()


@pytest.mark.postgres
def test_a_late_number_pruned_before_it_was_read_makes_the_process_reload(postgres_url: str,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A number committed out of order, then pruned before the waiting process read it: the
    process must not give it up as rolled back once ``gap_seconds`` pass, but reload."""
    import psycopg

    rng = random.Random(9)
    late, early = rng.getrandbits(BITS), rng.getrandbits(BITS)
    catalog, hashes_a, _ = process(postgres_url)
    now = [0.0]
    waiting = CatalogIndexes(SqlCatalog(postgres_url), interval=0, gap_seconds=5, clock=lambda: now[0])
    hashes_b = SyncedHashIndex(waiting)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        with conn.transaction():
            slow = SqlCatalog(postgres_url)
            slow._local.conn, slow._local.pid = conn, os.getpid()
            SqlHashIndex(slow).add("late", None, [("full", late)])
            hashes_a.add("early", None, [("full", early)])
            assert [h.photo_id for h in hashes_b.search([early, late], 0)] == ["early"]  # waiting for the late number
    assert catalog.prune_index_changes(time.time() + 1) >= 2
    assert logged_changes(catalog) == []  # the late number's row went with the rest
    now[0] = 60.0  # past gap_seconds: the wait for the late number is over
    with caplog.at_level(logging.WARNING, logger="media_pipeline.hashindex.synced"):
        assert [h.photo_id for h in hashes_b.search([late], 0)] == ["late"]
    assert RELOADED in caplog.text
    catalog.close()


# --------------------------------------------------------------------------- the cycle collector
def test_a_loaded_index_is_frozen_out_of_the_cycle_collectors_way(url: str) -> None:
    """The loaded index's containers (its lists and dicts of ids) are in the permanent generation,
    which no collection walks; a reload freezes the new index too."""
    catalog, hashes, _ = process(url)
    photos = 300
    for i in range(photos):
        hashes.add(f"p{i}", None, [("full", i), ("crop", i << 128)])
    try:
        gc.unfreeze()
        assert gc.get_freeze_count() == 0
        catalog_b, hashes_b, _ = process(url)
        assert hashes_b.count() == 2 * photos
        assert gc.get_freeze_count() > 0
        tracked = {id(o) for o in gc.get_objects()}  # what collections walk: the frozen are not in it
        loaded = hashes_b.indexes.hashes
        assert len(loaded._photo_ids) == photos and not {id(loaded._photo_ids), id(loaded._number_of)} & tracked
        gc.unfreeze()
        hashes.add("new", None, [("full", 7 << 64)])
        catalog.prune_index_changes(time.time() + 1)  # before b applied it: b reloads
        assert [h.photo_id for h in hashes_b.search([7 << 64], 0)] == ["new"]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    catalog.close()
    catalog_b.close()


def test_a_photo_filed_between_the_loads_two_reads_is_loaded_the_one_pass_way(url: str, monkeypatch: pytest.MonkeyPatch,
                                                                                caplog: pytest.LogCaptureFixture) -> None:
    """A large keypoint index is read twice at a load (counted, then placed); a photo another process
    files in between makes the reads differ: the load reads once more in one pass, and every photo
    votes, the one filed in between too."""
    from media_pipeline.hashindex import counted_load, synced

    catalog_a, _, features_a = process(url)
    for i in range(30):
        features_a.add(f"p{i:02d}", None, range(1_000 * i, 1_000 * i + 60))
    reads, whole = [], []
    original = synced.photo_batches

    def filing_after_the_first_whole_read(catalog: SqlCatalog, table: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(table)
        yield from original(catalog, table, *args, **kwargs)
        whole.append(table)
        if whole.count("feature_keys") == 1 and table == "feature_keys":
            features_a.add("between", None, range(30, 90))

    monkeypatch.setattr(synced, "photo_batches", filing_after_the_first_whole_read)
    monkeypatch.setattr(counted_load, "ONE_PASS_MAX", 100)  # this small source loaded the way a large one is
    with caplog.at_level(logging.INFO, logger="media_pipeline.hashindex.synced"):
        catalog_b, _, features_b = process(url)
        assert features_b.votes(range(30, 90), limit=3, min_votes=2) == [("between", 60), ("p00", 30)]
    # The start of a one-pass read, the count, the placing (refused), the one-pass read.
    assert reads.count("feature_keys") == 4 and "changed between the load's two reads" in caplog.text
    assert features_b.votes(range(29_000, 29_060), limit=3, min_votes=2) == [("p29", 60)]
    catalog_a.close()
    catalog_b.close()


def test_a_load_allocates_its_view_hash_rows_once(url: str) -> None:
    """The rows are counted before they are read: the loaded index holds exactly their room, not
    a doubling's spare (up to twice the row arrays at a process's start)."""
    catalog, hashes, _ = process(url)
    for i in range(700):
        hashes.add(f"p{i}", None, [("full", i), ("crop", i << 128)])
    catalog_b, hashes_b, _ = process(url)
    loaded = hashes_b.indexes.hashes
    assert loaded.count() == 1_400 and len(loaded._words) == 1_400
    assert [h.photo_id for h in hashes_b.search([699 << 128], 0)] == ["p699"]
    catalog.close()
    catalog_b.close()
