"""The operator console's catalog reads on both backends: pages walk every photo once, newest
first, under every filter; and each list is answered from an index, in order, with no sort and
no scan of the photos table (the query plans of SQLite and PostgreSQL, read here)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from media_pipeline.catalog.console import photo_list_sql
from media_pipeline.console import PhotoFilter
from media_pipeline.models import Duplicate, PhotoStatus
from media_pipeline.service import new_photo_id
from tests.contract.test_catalog_contract import catalog, make_photo  # noqa: F401 - the fixture, for both backends

T0 = 1_790_000_000.0  # photos accepted a minute apart from here


def seed(catalog: Any) -> list[str]:  # noqa: F811
    """Nine photos, newest last: owners alternate, three failed (two codes), one pair of duplicates.
    The lists read every photo, so rows other tests left in the session's PostgreSQL go first."""
    with catalog._tx() as cur:
        for table in ("renditions", "photo_hashes", "photo_duplicates", "photo_fingerprints", "photos"):
            cur.execute(f"DELETE FROM {table}")
    ids = []
    for i in range(9):
        at = T0 + 60 * i
        photo = make_photo(id=new_photo_id(at), created_at=at, updated_at=at, owner="alice" if i % 2 else "bob", sha256=f"{i:02x}" * 32)
        catalog.add_photo(photo)
        ids.append(photo.id)
    catalog.fail(ids[2], "corrupt_image", "the file ends early")
    catalog.fail(ids[5], "abandoned", "its worker died three times")
    catalog.fail(ids[6], "corrupt_image", "no image data")
    catalog.replace_duplicates(ids[7], [Duplicate(id=ids[1], kind="near", distance=12, transform="mirror")])
    return ids


def walk(catalog: Any, **filters: Any) -> list[str]:  # noqa: F811
    seen, cursor = [], None
    while True:
        page, cursor = catalog.list_photos(PhotoFilter(cursor=cursor, limit=2, **filters))
        assert len(page) <= 2
        seen += [p.id for p in page]
        if cursor is None:
            return seen


def test_pages_walk_each_photo_once_newest_first_under_every_filter(catalog: Any) -> None:  # noqa: F811
    ids = seed(catalog)
    newest_first = ids[::-1]
    assert walk(catalog) == newest_first
    assert walk(catalog, status="failed") == [ids[6], ids[5], ids[2]]
    assert walk(catalog, status="failed", error_code="corrupt_image") == [ids[6], ids[2]]
    assert walk(catalog, owner="alice") == [i for n, i in enumerate(newest_first) if (8 - n) % 2]
    assert walk(catalog, kind="duplicate") == [ids[7], ids[1]]
    assert walk(catalog, created_after=T0 + 120, created_before=T0 + 300) == [ids[4], ids[3], ids[2]]
    assert walk(catalog, search=ids[3]) == [ids[3]]
    assert walk(catalog, search="04" * 32) == [ids[4]]
    page, _ = catalog.list_photos(PhotoFilter(search=ids[7]))
    assert page[0].kinds == ("duplicate",) and page[0].owner == "alice" and page[0].status == "queued"


def test_counts_activity_clusters_and_jobs(catalog: Any) -> None:  # noqa: F811
    ids = seed(catalog)
    assert catalog.status_counts() == {"queued": 6, "failed": 3}
    assert catalog.failure_counts() == [("corrupt_image", 2), ("abandoned", 1)]
    arrived, _ = catalog.activity(T0 + 300)
    assert sum(arrived.values()) == 4 and set(arrived) == {T0 - T0 % 60 + 60 * i for i in range(5, 9)}
    clusters, cursor = catalog.duplicate_clusters(None, 10)
    assert cursor is None and [c.id for c in clusters] == [ids[1]]
    assert [(c.id, c.transform, c.distance) for c in clusters[0].copies] == [(ids[7], "mirror", 12)]
    assert catalog.stuck_count(time.time()) == 6


PLAN_FILTERS = [
    PhotoFilter(),
    PhotoFilter(status="ready", cursor="0" * 26),
    PhotoFilter(owner="alice"),
    PhotoFilter(status="failed", error_code="abandoned"),
    PhotoFilter(created_after=T0, created_before=T0 + 3600),
    PhotoFilter(kind="duplicate"),
]
SEARCHES = [PhotoFilter(search="0" * 26), PhotoFilter(search="ab" * 32)]


def plan(catalog: Any, sql: str, params: list[Any], no_sort: bool = True) -> str:  # noqa: F811
    """The query plan as text. On PostgreSQL, nine rows would be read by a scan whatever the
    indexes: scans (and sorts) are taken away from the planner, and what it still has to do in the
    plan is what the indexes cannot."""
    with catalog._tx(write=False) as cur:
        if catalog.dialect == "sqlite":
            return "\n".join(str(r[-1]) for r in cur.fetchall("EXPLAIN QUERY PLAN " + sql, params))
        cur.execute("SET LOCAL enable_seqscan = off")
        if no_sort:
            cur.execute("SET LOCAL enable_sort = off")
        return "\n".join(r[0] for r in cur.fetchall("EXPLAIN " + sql, params))


def assert_indexed(catalog: Any, text: str, in_order: bool = True) -> None:  # noqa: F811
    if catalog.dialect == "sqlite":
        # "SCAN p" alone is the whole table; "SCAN p USING INDEX" walks an index in order.
        assert not any(line.strip() in ("SCAN p", "SCAN photos") for line in text.splitlines()), text
        assert "INDEX" in text, text
        assert not in_order or "TEMP B-TREE" not in text, text
    else:
        assert "Seq Scan on photos" not in text and "Index" in text, text
        assert not in_order or " Sort " not in f" {text} ", text


@pytest.mark.parametrize("query", PLAN_FILTERS, ids=lambda q: ",".join(f"{k}" for k, v in vars(q).items() if v not in (None, 50)) or "all")
def test_each_list_reads_an_index_in_order(catalog: Any, query: PhotoFilter) -> None:  # noqa: F811
    seed(catalog)
    assert_indexed(catalog, plan(catalog, *photo_list_sql(query)))


@pytest.mark.parametrize("query", SEARCHES, ids=["id", "sha256"])
def test_a_search_is_an_index_lookup(catalog: Any, query: PhotoFilter) -> None:  # noqa: F811
    """One photo by id, or the few of one original's bytes: a lookup, then maybe a small sort."""
    seed(catalog)
    assert_indexed(catalog, plan(catalog, *photo_list_sql(query), no_sort=False), in_order=False)


@pytest.mark.parametrize("sql", [
    "SELECT status, COUNT(*) FROM photos GROUP BY status",
    "SELECT COALESCE(error_code, 'internal'), COUNT(*) FROM photos WHERE status = 'failed' GROUP BY error_code",
], ids=["statuses", "failures"])
def test_counts_read_an_index(catalog: Any, sql: str) -> None:  # noqa: F811
    seed(catalog)
    assert_indexed(catalog, plan(catalog, sql, [], no_sort=False), in_order=False)
