"""The keypoint keys' store of record (``feature_keys``, hashindex/features.py): one packed row a
photo, written in every mode, deleted with the photo, back-filled from the postings of an older
catalog; with MP_DUPLICATE_INDEX=memory no postings are written and the memory indexes load from
the packed rows; going back to ``sql`` rebuilds the postings from them, and ``check`` reports a
photo whose postings and packed row disagree. SQLite and PostgreSQL."""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import pytest

from bench import edits
from media_pipeline import check, cli, duplicates, keypoints
from media_pipeline.catalog.sql import SqlCatalog
from media_pipeline.hashindex.features import SqlFeatureIndex, unpack_keys
from media_pipeline.hashindex.synced import CatalogIndexes, SyncedFeatureIndex
from media_pipeline.service import SpooledUpload, build_services
from tests.contract.test_hashindex_contract import fresh_url  # noqa: F401 - the fixture
from tests.test_duplicates import ready, textured

DISAGREE = "keypoint_postings_disagree"


@pytest.fixture
def url(fresh_url: str) -> str:
    return fresh_url


def packed_row(catalog: SqlCatalog, photo_id: str) -> tuple[str, int, int, list[int]] | None:
    """(owner, lowest key, posted, keys) of a photo's packed row."""
    with catalog._tx(write=False) as cur:
        rows = cur.fetchall("SELECT owner, first_key, posted, keys FROM feature_keys WHERE photo_id = ?", (photo_id,))
    return None if not rows else (rows[0][0], int(rows[0][1]), int(rows[0][2]), unpack_keys(rows[0][3]).tolist())


def postings(catalog: SqlCatalog, photo_id: str | None = None) -> list[int]:
    where, params = (" WHERE photo_id = ?", (photo_id,)) if photo_id else ("", ())
    with catalog._tx(write=False) as cur:
        return [int(r[0]) for r in cur.fetchall(f"SELECT key FROM feature_postings{where} ORDER BY key", params)]


def test_the_packed_row_holds_the_filed_keys_and_goes_with_the_photo(url: str) -> None:
    catalog = SqlCatalog(url)
    catalog.migrate()
    rng = random.Random(3)
    keys = [keypoints.KEY_BASE + rng.randrange(keypoints.TABLES << keypoints.KEY_BITS) for _ in range(400)]
    keys += keys[:30] + [7, 2**31 - 1]  # repeats count once; the lowest and highest keys an INTEGER column holds
    filed = sorted(set(keys))
    sql_mode, memory_mode = SqlFeatureIndex(catalog), SqlFeatureIndex(catalog, postings=False)
    sql_mode.add("a", "alice", keys)
    assert packed_row(catalog, "a") == ("alice", 7, 1, filed)
    assert postings(catalog, "a") == filed
    memory_mode.add("b", None, keys[:100])  # votes in memory: the packed row alone
    assert packed_row(catalog, "b") == ("", min(keys[:100]), 0, sorted(set(keys[:100])))
    assert postings(catalog, "b") == []
    memory_mode.add("a", "alice", keys[200:250])  # filed again: the row replaced, the old postings gone
    assert packed_row(catalog, "a") == ("alice", min(keys[200:250]), 0, sorted(set(keys[200:250])))
    assert postings(catalog, "a") == []
    sql_mode.remove("b")
    assert packed_row(catalog, "b") is None
    catalog.close()


def found(services: Any, data: bytes) -> list[str]:
    """What ``POST /v1/duplicates/search`` answers for ``data``: the ids of its duplicates."""
    upload = SpooledUpload.receive(io.BytesIO(data), services.settings.tmp_dir, services.settings.max_upload_bytes)
    try:
        return [d.id for d in duplicates.search_duplicates(services, upload, None)[0]]
    finally:
        upload.close()


def test_a_library_moves_between_sql_and_memory_votes_without_refiling(url: str, settings: Any, queue: Any,
                                                                      capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    """Filed with votes in SQL, a library loads in memory and finds its photos by keypoints alone
    (an asymmetric crop, which no view hash matches); what memory mode files has no postings, and
    a process started later loads it from the packed rows; back in SQL, check reports the missing
    postings and refile-keypoints writes them from the packed rows, after which SQL votes find it."""
    sql_settings = settings.replace(catalog_url=url, duplicate_index="sql")
    memory_settings = settings.replace(catalog_url=url, duplicate_index="memory")
    first_picture, second_picture = textured(41), textured(42)
    crop_of_first = edits.jpeg_bytes(edits.asymmetric_crop(first_picture, random.Random(1)))
    crop_of_second = edits.jpeg_bytes(edits.asymmetric_crop(second_picture, random.Random(2)))

    sql_services = build_services(sql_settings, queue=queue)
    first = ready(sql_services, edits.jpeg_bytes(first_picture))
    filed = packed_row(sql_services.catalog, first)
    assert filed is not None and filed[2] == 1 and postings(sql_services.catalog, first) == filed[3]
    assert found(sql_services, crop_of_first) == [first]

    memory_services = build_services(memory_settings, queue=queue)
    assert isinstance(memory_services.feature_index, SyncedFeatureIndex)
    assert found(memory_services, crop_of_first) == [first]
    second = ready(memory_services, edits.jpeg_bytes(second_picture))
    assert postings(memory_services.catalog, second) == []
    assert packed_row(memory_services.catalog, second)[2] == 0  # type: ignore[index]
    assert found(memory_services, crop_of_second) == [second]
    later = build_services(memory_settings, queue=queue)  # loads the second photo from its packed row alone
    assert found(later, crop_of_first) == [first] and found(later, crop_of_second) == [second]

    back = build_services(sql_settings, queue=queue)
    assert found(back, crop_of_second) == []  # no postings yet: no SQL vote reaches it
    problems = check.check(back).problems[DISAGREE]
    assert problems == [f"{second} ({len(packed_row(back.catalog, second)[3])} keys in its packed row, 0 postings)"  # type: ignore[index]
                        " (run media-pipeline refile-keypoints)"]
    assert duplicates.restore_postings(memory_services) == 0  # votes in memory need none
    monkeypatch.setenv("MP_CATALOG_URL", url)
    monkeypatch.setenv("MP_DUPLICATE_INDEX", "sql")
    monkeypatch.setenv("MP_DATA_DIR", str(settings.data_dir))
    assert cli.main(["refile-keypoints"]) == 0
    assert "wrote the keypoint postings of 1 photos filed while votes ran in memory" in capsys.readouterr().out
    assert postings(back.catalog, second) == packed_row(back.catalog, second)[3]  # type: ignore[index]
    assert found(back, crop_of_second) == [second]
    assert DISAGREE not in check.check(back).problems
    assert duplicates.restore_postings(back) == 0

    with back.catalog._tx() as cur:  # a posting lost behind the packed row's back
        cur.execute("DELETE FROM feature_postings WHERE photo_id = ? AND key = ?", (first, filed[3][5]))
    assert check.check(back).problems[DISAGREE] == [f"{first} ({len(filed[3])} keys in its packed row, {len(filed[3]) - 1} postings)"]
    assert DISAGREE not in check.check(memory_services).problems  # votes in memory read the packed rows alone

    assert back.catalog.delete_photo(second)
    assert packed_row(back.catalog, second) is None and postings(back.catalog, second) == []
    for services in (sql_services, memory_services, later, back):
        services.catalog.close()


def test_postings_of_an_older_catalog_are_packed_by_the_migration(url: str, monkeypatch: Any) -> None:
    """Migration 19 back-fills a packed row per photo from the postings (in SQL on PostgreSQL, in
    Python on SQLite): the same keys, posted, the lowest key for ``filed_below``; a memory index
    loads them."""
    from media_pipeline.catalog import sql

    rng = np.random.default_rng(19)
    old_keys = sorted(set(rng.integers(0, 4 << 16, 300).tolist()))  # the 16-bit format's
    new_keys = sorted(set((rng.integers(0, keypoints.TABLES << keypoints.KEY_BITS, 400) + keypoints.KEY_BASE).tolist()))
    monkeypatch.setattr(sql, "MIGRATIONS", tuple(m for m in sql.MIGRATIONS if m[0] < 19))
    old = SqlCatalog(url)
    old.migrate()
    with old._tx() as cur:
        cur.executemany("INSERT INTO feature_postings (key, photo_id, owner) VALUES (?, ?, ?)",
                        [(k, "old", "alice") for k in old_keys] + [(k, "new", "") for k in new_keys])
    old.close()
    monkeypatch.undo()
    catalog = SqlCatalog(url)
    catalog.migrate()
    assert packed_row(catalog, "old") == ("alice", old_keys[0], 1, old_keys)
    assert packed_row(catalog, "new") == ("", new_keys[0], 1, new_keys)
    index = SqlFeatureIndex(catalog)
    assert index.filed_below(keypoints.LEGACY_KEYS_BELOW, 10) == [("old", "alice")]
    assert list(index.disagreements()) == []
    memory = CatalogIndexes(catalog).features
    assert memory.votes(new_keys[:50] + old_keys[:20], limit=5, min_votes=2) == [("new", 50), ("old", 20)]
    assert memory.votes(old_keys[:20], limit=5, min_votes=2, owner="alice") == [("old", 20)]
    catalog.close()
