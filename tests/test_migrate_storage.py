"""migrate-storage: every object of the local store copied into S3 (a real S3 API on loopback),
killed half-way and resumed; the service runs on the new store while the copy runs (reads the
new store cannot answer come from the old one), a photo deleted meanwhile is not brought back,
and afterwards `check` is clean and every photo is served as before."""

from __future__ import annotations

import io
import re
from typing import Any, BinaryIO

import pytest

from config.settings import ConfigError, Settings
from media_pipeline import service
from media_pipeline.check import check
from media_pipeline.cli import main
from media_pipeline.models import OUTPUT_EXTENSIONS
from media_pipeline.service import Outcome, build_services
from media_pipeline.storage import make_storage
from media_pipeline.storage.base import ObjectInfo
from media_pipeline.storage.memory import MemoryStorage
from media_pipeline.storage.migrate import PREFIXES, copy_object, copy_storage
from media_pipeline.storage.urls import url_of
from media_pipeline.web import create_app
from tests import images
from tests.conftest import ingest_bytes

pytestmark = pytest.mark.slow


def ready_photos(services: Any, seeds: range) -> list[str]:
    ids = [ingest_bytes(services, images.jpeg(images.natural(800, 600, seed=seed))) for seed in seeds]
    for photo_id in ids:
        assert service.process_photo(services, photo_id) is Outcome.DONE
    return ids


def served(settings: Settings, services: Any, ids: list[str]) -> dict[str, tuple[int, bytes]]:
    """What a CDN gets for every rendition URL of these photos (status and body)."""
    client = create_app(settings, services=services).test_client()
    answers = {}
    for photo_id in ids:
        for r in services.catalog.get_photo(photo_id).renditions:
            path = f"/i/{photo_id}/{r.spec}/{r.width}.{OUTPUT_EXTENSIONS[r.format]}"
            response = client.get(path)
            answers[path] = (response.status_code, response.data)
    return answers


def objects(store: Any) -> set[str]:
    return {key for prefix in PREFIXES for key in store.list(prefix)}


def s3_url(s3_settings: Settings) -> str:
    return f"s3://{s3_settings.s3_bucket}?endpoint={s3_settings.s3_endpoint_url}&addressing=path"


def test_a_local_store_moves_to_s3_killed_half_way_and_resumed(settings: Settings, s3_settings: Settings, queue: Any,
                                                               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    services = build_services(settings, queue=queue)
    ids = ready_photos(services, range(3))
    before = served(settings, services, ids)
    assert before and all(status == 200 for status, _ in before.values())
    source, target = make_storage(settings), make_storage(s3_settings)
    total = len(objects(source))

    def killed(key: str, report: Any) -> None:
        if report.seen >= total // 2:
            raise KeyboardInterrupt  # as a Ctrl-C in the middle of the copy would

    with pytest.raises(KeyboardInterrupt):
        copy_storage(source, target, workers=2, progress=killed)
    half = len(objects(target))
    assert 0 < half < total
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["migrate-storage", "--to", s3_url(s3_settings), "--workers", "3"]) == 0
    out = capsys.readouterr().out
    copied, verified = map(int, re.search(r"(\d+) objects copied .*?, (\d+) already there and verified", out).groups())
    assert copied + verified == total and verified >= half - 3  # at most the copies in flight at the kill are redone
    assert "MP_STORAGE_BACKEND=s3" in out and f"MP_S3_BUCKET={s3_settings.s3_bucket}" in out
    assert main(["migrate-storage", "--to", url_of(settings)]) == 2  # copying a store onto itself is refused
    on_s3 = build_services(s3_settings, queue=queue)  # the same catalog, the new store
    report = check(on_s3)
    assert report.ok, report.problems
    assert served(s3_settings, on_s3, ids) == before
    for photo_id in ids:
        key = on_s3.catalog.get_photo(photo_id).original_key
        assert target.get(key) == source.get(key)


def test_the_service_runs_on_the_new_store_while_the_copy_runs(settings: Settings, s3_settings: Settings, queue: Any) -> None:
    on_local = build_services(settings, queue=queue)
    kept, deleted = ready_photos(on_local, range(10, 12))
    before = served(settings, on_local, [kept])
    switched = s3_settings.replace(storage_fallback_url=url_of(settings))
    services = build_services(switched, queue=queue)
    assert served(switched, services, [kept]) == before  # nothing copied yet: the old store answers
    (new,) = ready_photos(services, range(12, 13))
    new_keys = {key for key in objects(make_storage(s3_settings)) if new in key}
    assert new_keys and not {key for key in objects(make_storage(settings)) if new in key}  # written to the new store only
    assert create_app(switched, services=services).test_client().delete(f"/v1/photos/{deleted}").status_code == 204
    assert not {key for key in objects(make_storage(settings)) if deleted in key}  # gone from the old store too
    copy_storage(make_storage(settings), make_storage(s3_settings))
    moved = build_services(s3_settings, queue=queue)
    assert not {key for key in objects(moved.storage) if deleted in key}  # the copy did not bring it back
    report = check(moved)
    assert report.ok, report.problems
    assert served(s3_settings, moved, [kept]) == before
    assert all(status == 200 for status, _ in served(s3_settings, moved, [new]).values())


class DeletedWhileRead(MemoryStorage):
    """A source whose object is deleted (by a user's DELETE) right after the copier read it."""

    def open(self, key: str, byte_range: tuple[int, int] | None = None) -> tuple[ObjectInfo, BinaryIO]:
        info, stream = super().open(key, byte_range)
        data = stream.read()
        self.delete(key)
        return info, io.BytesIO(data)


class Corrupting(MemoryStorage):
    def get(self, key: str) -> bytes:
        return super().get(key)[:-1] + b"?"


def test_an_object_deleted_during_its_copy_is_not_brought_back_and_a_bad_copy_fails() -> None:
    source = DeletedWhileRead()
    source.put("originals/abc", b"photo", "application/octet-stream")
    target = MemoryStorage()
    assert copy_object(source, target, "originals/abc") == ("vanished", 0)
    assert not target.exists("originals/abc")
    good = MemoryStorage()
    good.put("originals/abc", b"photo", "application/octet-stream")
    report = copy_storage(good, Corrupting())
    assert report.copied == 0 and [key for key, _ in report.failed] == ["originals/abc"]
    assert "does not give back" in report.failed[0][1]


def test_a_bad_fallback_url_is_a_settings_error(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="MP_STORAGE_FALLBACK_URL"):
        Settings.from_env({**settings.as_env(), "MP_STORAGE_FALLBACK_URL": "ftp://old"})
