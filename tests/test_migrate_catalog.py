"""migrate-catalog: an SQLite catalog copied into PostgreSQL, verified table by table, refused
into a non-empty target, and resumed after being killed half-way; the service then answers from
PostgreSQL exactly as it did from SQLite."""

from __future__ import annotations

import random
from typing import Any, Iterator

import pytest

from bench import edits
from media_pipeline import service
from media_pipeline.catalog import copy as catalog_copy
from media_pipeline.catalog.sql import SqlCatalog
from media_pipeline.cli import main
from media_pipeline.errors import CatalogError
from media_pipeline.service import Outcome, build_services
from media_pipeline.web import create_app
from tests import images
from tests.conftest import fresh_postgres_database, ingest_bytes

pytestmark = pytest.mark.postgres


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    yield from fresh_postgres_database("mp_copy")


def populated(settings: Any, queue: Any) -> tuple[Any, list[str]]:
    """An SQLite catalog with ready photos, a failed one, a near duplicate and an idempotent upload."""
    services = build_services(settings, queue=queue)
    original = images.natural(900, 600, seed=81)
    ids = [ingest_bytes(services, edits.jpeg_bytes(original), owner="erin"),
           ingest_bytes(services, edits.jpeg_bytes(edits.mirror(original, random.Random(0)), 70)),
           ingest_bytes(services, edits.jpeg_bytes(images.natural(700, 500, seed=82)))]
    for photo_id in ids:
        assert service.process_photo(services, photo_id) is Outcome.DONE
    broken = ingest_bytes(services, edits.jpeg_bytes(images.natural(300, 200, seed=83)))
    service.fail_photo(services, broken, "corrupt_image", "made to fail")
    return services, ids + [broken]


def documents(settings: Any, services: Any, ids: list[str]) -> list[dict[str, Any]]:
    client = create_app(settings, services=services).test_client()
    return [client.get(f"/v1/photos/{photo_id}").get_json() for photo_id in ids]


def test_a_catalog_moves_to_postgresql_and_answers_the_same(settings: Any, queue: Any, empty_postgres: str) -> None:
    services, ids = populated(settings, queue)
    before = documents(settings, services, ids)
    assert any(doc["duplicates"] for doc in before)
    tables = catalog_copy.copy_catalog(SqlCatalog(settings.effective_catalog_url), SqlCatalog(empty_postgres))
    copied = {t.table: t.rows for t in tables}
    assert copied["photos"] == 4 and copied["renditions"] > 0 and copied["hash_index"] > 0 and copied["feature_postings"] > 0
    moved = settings.replace(catalog_url=empty_postgres)
    on_postgres = build_services(moved, queue=queue)
    assert documents(moved, on_postgres, ids) == before
    # The index moved too: a new repost is found against the copied photos.
    repost = ingest_bytes(on_postgres, edits.jpeg_bytes(images.natural(900, 600, seed=81), 60))
    assert service.process_photo(on_postgres, repost) is Outcome.DONE
    assert ids[0] in [d.id for d in on_postgres.catalog.get_photo(repost).duplicates]
    with pytest.raises(CatalogError, match="not empty"):
        catalog_copy.copy_catalog(SqlCatalog(settings.effective_catalog_url), SqlCatalog(empty_postgres))


def test_a_copy_killed_half_way_is_refused_then_resumed(settings: Any, queue: Any, empty_postgres: str,
                                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    services, ids = populated(settings, queue)
    before = documents(settings, services, ids)
    monkeypatch.setattr(catalog_copy, "_BATCH", 7)
    seen: list[str] = []

    def killed(table: str, rows: int) -> None:
        seen.append(table)
        if table == "renditions" and rows >= 7:
            raise KeyboardInterrupt  # as a Ctrl-C in the middle of a table would

    with pytest.raises(KeyboardInterrupt):
        catalog_copy.copy_catalog(SqlCatalog(settings.effective_catalog_url), SqlCatalog(empty_postgres), progress=killed)
    target = SqlCatalog(empty_postgres)
    with target._tx(write=False) as cur:
        assert cur.fetchall("SELECT COUNT(*) FROM renditions")[0][0] == 0  # the table in progress was rolled back
        assert cur.fetchall("SELECT COUNT(*) FROM photos")[0][0] == 4  # the ones before it are whole
    monkeypatch.setenv("MP_DATA_DIR", str(settings.data_dir))
    argv = ["migrate-catalog", "--to", empty_postgres]
    assert main(argv) == 1 and "not empty" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    out = capsys.readouterr().out
    assert "photos: 4 rows already there, verified" in out and "renditions:" in out and "rows copied, verified" in out
    moved = settings.replace(catalog_url=empty_postgres)
    assert documents(moved, build_services(moved, queue=queue), ids) == before
