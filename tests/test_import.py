"""Importing an existing library: a manifest with bad items, a folder, an S3 prefix on another
bucket (server-side copy), interrupted and resumed runs, idempotent re-runs by external_id and by
SHA-256, reposts found as duplicates once processed, the lookup by external_id, and the command."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from config.settings import Settings
from media_pipeline import reprocess
from media_pipeline.importing import importer
from media_pipeline.importing.sources import open_source
from media_pipeline.queue import RecordingQueue
from media_pipeline.service import build_services
from tests import images
from tests.conftest import REPO, wait_for_status


def photo_bytes(seed: int, width: int = 480, height: int = 360) -> bytes:
    return images.jpeg(images.scene(width, height, seed=seed))


def write_manifest(folder: Path, lines: list[Any]) -> Path:
    manifest = folder / "library.jsonl"
    manifest.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return manifest


def library_with_bad_items(folder: Path, good: int = 4) -> Path:
    """``good`` photos of alice, then a missing object, a text file, an image over the pixel
    limit and a line that is not JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    lines: list[Any] = []
    for i in range(good):
        (folder / f"p{i}.jpg").write_bytes(photo_bytes(i))
        lines.append({"source": f"p{i}.jpg", "owner": "alice", "external_id": f"post-{i}", "taken_at": "2024-05-01T10:00:00Z"})
    (folder / "notes.jpg").write_bytes(b"these are notes, not a picture")
    (folder / "huge.png").write_bytes(images.forged_png(30000, 30000))
    lines += [
        {"source": "gone.jpg", "owner": "alice", "external_id": "post-gone"},
        {"source": "notes.jpg", "owner": "alice", "external_id": "post-notes"},
        {"source": "huge.png", "owner": "alice", "external_id": "post-huge", "visible": False},
        "{not json",
    ]
    return write_manifest(folder, lines)


def run_import(services: Any, spec: str, **options: Any) -> Any:
    job = importer.start_job(services, spec)
    importer.run(services, job, open_source(spec, services.settings, services.storage), **options)
    return job


def originals(services: Any) -> list[str]:
    return list(services.storage.list("originals/"))


# --------------------------------------------------------------------------- a manifest
def test_a_manifest_imports_good_items_and_records_bad_ones_with_their_reason(services: Any, queue: RecordingQueue,
                                                                             tmp_path: Path) -> None:
    manifest = library_with_bad_items(tmp_path / "library")
    job = run_import(services, str(manifest))
    report = services.catalog.import_report(job.id)
    assert report.counts == {"imported": 4, "bad": 4}
    assert {code for _, code, _ in report.bad} == {"object_not_found", "unsupported_format", "too_many_pixels", "bad_manifest_line"}
    enqueued = [photo_id for job_id, photo_id in queue.reprocess if job_id == job.id]
    assert len(enqueued) == 4 and queue.enqueued == []  # the reprocess queue, not the uploads' one
    for photo_id in enqueued:
        photo = services.catalog.get_photo(photo_id)
        seed = int(photo.external_id.split("-")[1])
        assert photo.owner == "alice" and photo.status.value == "queued"
        assert services.storage.get(photo.original_key) == photo_bytes(seed)
        assert photo.sha256 == hashlib.sha256(photo_bytes(seed)).hexdigest()
    assert len(originals(services)) == 4  # nothing of a bad item was stored
    # The workers' side: each photo is processed and counted in the job's ledger, as for a reprocess.
    stored_job = services.catalog.get_job(job.id)
    assert {reprocess.reprocess_one(services, stored_job, pid) for pid in enqueued} == {"updated"}
    assert services.catalog.job_report(job.id).counts == {"updated": 4}


def test_a_rerun_copies_nothing_again_by_external_id_or_by_sha256(services: Any, tmp_path: Path) -> None:
    manifest = library_with_bad_items(tmp_path / "library", good=3)
    run_import(services, str(manifest))
    before = sorted(originals(services))
    again = run_import(services, str(manifest))
    assert services.catalog.import_report(again.id).counts == {"already_imported": 3, "bad": 4}
    # The same bytes under another external id of the same owner: found by SHA-256.
    renamed = write_manifest(tmp_path / "library", [{"source": "p1.jpg", "owner": "alice", "external_id": "renamed"}])
    by_hash = run_import(services, str(renamed))
    assert services.catalog.import_report(by_hash.id).counts == {"already_imported": 1}
    assert sorted(originals(services)) == before


def test_reposts_by_other_owners_are_imported_and_found_as_duplicates(services: Any, queue: RecordingQueue,
                                                                      tmp_path: Path) -> None:
    folder = tmp_path / "library"
    folder.mkdir()
    original = images.scene(640, 480, seed=5)
    (folder / "first.jpg").write_bytes(images.jpeg(original))
    (folder / "repost.jpg").write_bytes(images.jpeg(original[:, ::-1].copy(), quality=70))  # mirrored, recompressed
    (folder / "same-bytes.jpg").write_bytes(images.jpeg(original))
    manifest = write_manifest(folder, [
        {"source": "first.jpg", "owner": "alice", "external_id": "a1"},
        {"source": "repost.jpg", "owner": "bob", "external_id": "b1"},
        {"source": "same-bytes.jpg", "owner": "carol", "external_id": "c1"},
    ])
    job = run_import(services, str(manifest))
    assert services.catalog.import_report(job.id).counts == {"imported": 3}
    stored_job = services.catalog.get_job(job.id)
    ids = {}
    for _, photo_id in queue.reprocess:
        reprocess.reprocess_one(services, stored_job, photo_id)
        ids[services.catalog.get_photo(photo_id).external_id] = photo_id
    # A photo lists the earlier-processed photos it repeats: look at each pair from either side.
    found = {frozenset((pid, d.id)): d.kind for pid in ids.values() for d in services.catalog.get_photo(pid).duplicates}
    assert found.get(frozenset((ids["a1"], ids["b1"]))) == "near"
    assert found.get(frozenset((ids["a1"], ids["c1"]))) == "exact"


# --------------------------------------------------------------------------- resume
def test_an_interrupted_import_resumes_with_its_job_and_counts_each_item_once(services: Any, queue: RecordingQueue,
                                                                              tmp_path: Path) -> None:
    manifest = library_with_bad_items(tmp_path / "library", good=7)
    spec = str(manifest)
    job = importer.start_job(services, spec)
    batches = iter(range(100))
    importer.run(services, job, open_source(spec, services.settings, services.storage), batch=3,
                 should_stop=lambda: next(batches) >= 1)  # stopped after two batches
    stopped = services.catalog.get_job(job.id)
    assert stopped.status == "interrupted" and stopped.cursor == "6"
    assert services.catalog.import_report(job.id).items == 6
    importer.run(services, stopped, open_source(spec, services.settings, services.storage), batch=3)
    report = services.catalog.import_report(job.id)
    assert report.counts == {"imported": 7, "bad": 4}
    assert services.catalog.get_job(job.id).enqueued == 7 and len(originals(services)) == 7
    assert len({pid for _, pid in queue.reprocess}) == 7


def test_a_batch_cut_short_before_its_checkpoint_is_enqueued_again(services: Any, queue: RecordingQueue, tmp_path: Path) -> None:
    manifest = library_with_bad_items(tmp_path / "library", good=2)
    job = importer.start_job(services, str(manifest))
    source = open_source(str(manifest), services.settings, services.storage)
    next(importer.batches(services, job, source, 100))  # imported and in the ledger; no checkpoint, nothing enqueued
    assert services.catalog.get_job(job.id).cursor == "" and queue.reprocess == []
    importer.run(services, services.catalog.get_job(job.id), source)
    assert services.catalog.import_report(job.id).counts == {"imported": 2, "bad": 4}
    assert len({pid for _, pid in queue.reprocess}) == 2 and len(originals(services)) == 2


def test_a_reprocess_resume_refuses_an_import_job(services: Any, tmp_path: Path) -> None:
    job = importer.start_job(services, str(library_with_bad_items(tmp_path / "library", good=1)))
    with pytest.raises(ValueError, match="import --job"):
        reprocess.enqueue(services, job)


# --------------------------------------------------------------------------- folders and S3
def test_a_folder_imports_every_file_under_it_with_its_path_as_external_id(services: Any, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    (folder / "2019").mkdir(parents=True)
    (folder / "2019" / "x.jpg").write_bytes(photo_bytes(1))
    (folder / "2019.jpg").write_bytes(photo_bytes(2))
    (folder / "readme.txt").write_text("an export")
    job = run_import(services, str(folder), batch=1)
    report = services.catalog.import_report(job.id)
    assert report.counts == {"imported": 2, "bad": 1} and report.bad[0][:2] == ("readme.txt", "unsupported_format")
    assert services.catalog.photo_by_external_id(None, "2019/x.jpg") is not None
    assert services.catalog.get_job(job.id).cursor == "readme.txt"


def source_bucket(s3_settings: Settings, objects: dict[str, bytes]) -> str:
    from media_pipeline.storage.s3 import S3Storage

    bucket = f"{s3_settings.s3_bucket}-legacy"
    other = S3Storage.from_settings(s3_settings.replace(s3_bucket=bucket))
    other.ensure_bucket()
    for key, data in objects.items():
        other.client.put_object(Bucket=bucket, Key=key, Body=data)
    return bucket


def test_an_s3_prefix_on_the_same_endpoint_is_copied_server_side(s3_settings: Settings, queue: RecordingQueue,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    services = build_services(s3_settings, queue=queue)
    bucket = source_bucket(s3_settings, {"posts/1.jpg": photo_bytes(1), "posts/2 (copy).jpg": photo_bytes(2),
                                         "posts/empty.jpg": b"", "other/3.jpg": photo_bytes(3)})
    copies: list[str] = []
    real_copy_in = services.storage.copy_in
    monkeypatch.setattr(services.storage, "copy_in", lambda key, *a, **k: (copies.append(key), real_copy_in(key, *a, **k))[1])
    job = run_import(services, f"s3://{bucket}/posts/")
    report = services.catalog.import_report(job.id)
    assert report.counts == {"imported": 2, "bad": 1} and report.bad[0][1] == "empty_file"
    for name, seed in (("1.jpg", 1), ("2 (copy).jpg", 2)):
        photo = services.catalog.get_photo(services.catalog.photo_by_external_id(None, name)[0])
        assert services.storage.get(photo.original_key) == photo_bytes(seed)
        assert services.storage.stat(photo.original_key).cache_control == "private, no-store"
    assert len(copies) == 2  # CopyObject: the bytes never went through this process to be stored


def test_a_manifest_with_sha256_on_the_same_endpoint_reads_only_headers(s3_settings: Settings, queue: RecordingQueue,
                                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    services = build_services(s3_settings, queue=queue)
    data = photo_bytes(4, 1600, 1200)
    bucket = source_bucket(s3_settings, {"a.jpg": data})
    manifest = write_manifest(tmp_path, [{"source": f"s3://{bucket}/a.jpg", "owner": "dan", "external_id": "9",
                                          "sha256": hashlib.sha256(data).hexdigest()}])
    monkeypatch.setattr(importer, "_download", lambda *a: pytest.fail("the whole object was read"))
    job = run_import(services, str(manifest))
    assert services.catalog.import_report(job.id).counts == {"imported": 1}
    photo = services.catalog.get_photo(services.catalog.photo_by_external_id("dan", "9")[0])
    assert services.storage.get(photo.original_key) == data and photo.original_width == 1600


def test_an_s3_prefix_on_another_endpoint_uses_the_import_settings(s3_settings: Settings, settings: Settings,
                                                                   queue: RecordingQueue) -> None:
    bucket = source_bucket(s3_settings, {"p/1.jpg": photo_bytes(7)})
    local = settings.replace(import_s3_endpoint_url=s3_settings.s3_endpoint_url, import_s3_access_key_id="testing",
                             import_s3_secret_access_key="testing", import_s3_addressing_style="path")
    services = build_services(local, queue=queue)
    job = run_import(services, f"s3://{bucket}/p/")
    assert services.catalog.import_report(job.id).counts == {"imported": 1}
    photo = services.catalog.get_photo(services.catalog.photo_by_external_id(None, "1.jpg")[0])
    assert services.storage.get(photo.original_key) == photo_bytes(7)


def test_opted_out_and_hidden_items_through_the_api_and_the_console_search(services: Any, client: Any, tmp_path: Path) -> None:
    folder = tmp_path / "library"
    folder.mkdir()
    for i in range(4):
        (folder / f"p{i}.jpg").write_bytes(photo_bytes(40 + i))
    assert client.put("/v1/owners/carol/visibility", json={"visible": False}).status_code == 200
    manifest = write_manifest(folder, [
        {"source": "p0.jpg", "owner": "carol", "external_id": "c-0"},  # opted out: skipped
        {"source": "p1.jpg", "owner": "carol", "external_id": "c-1", "visible": True},  # the manifest says import it
        {"source": "p2.jpg", "owner": "dave", "external_id": "d-2", "visible": False},  # imported, hidden on its own
        {"source": "p3.jpg", "owner": "dave", "external_id": "d-3"},
    ])
    job = run_import(services, str(manifest))
    report = services.catalog.import_report(job.id)
    assert report.counts == {"imported": 3, "skipped": 1}
    found = {ext: client.get(f"/v1/photos?external_id={ext}&owner={owner}").get_json()["photos"]
             for owner, ext in (("carol", "c-0"), ("carol", "c-1"), ("dave", "d-2"), ("dave", "d-3"))}
    assert found["c-0"] == []
    assert [(p["visible"], p["hidden_by"]) for ext in ("c-1", "d-2", "d-3") for p in found[ext]] == [
        (False, "owner"), (False, "photo"), (True, None)]
    # The console's search finds an imported photo by the main app's id too.
    assert [p["id"] for p in client.get("/v1/photos?q=d-3").get_json()["photos"]] == [found["d-3"][0]["id"]]


# --------------------------------------------------------------------------- the API
def test_an_imported_photo_is_found_by_its_external_id_and_owner(services: Any, client: Any, tmp_path: Path) -> None:
    run_import(services, str(library_with_bad_items(tmp_path / "library", good=2)))
    answer = client.get("/v1/photos?external_id=post-1&owner=alice")
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    (photo,) = answer.get_json()["photos"]
    assert photo["external_id"] == "post-1" and photo["owner"] == "alice"
    assert client.get(photo["links"]["self"]).get_json()["external_id"] == "post-1"
    assert client.get("/v1/photos?external_id=post-1&owner=bob").get_json()["photos"] == []
    assert client.get("/v1/photos?external_id=post-1").get_json()["photos"] == []  # no owner is an owner of its own
    # Without external_id the path is the console's list of every photo; with it, no list filter.
    assert {p["id"] for p in client.get("/v1/photos?owner=alice").get_json()["photos"]} >= {photo["id"]}
    mixed = client.get("/v1/photos?external_id=post-1&owner=alice&status=ready")
    assert mixed.status_code == 400 and mixed.get_json()["error"]["code"] == "bad_query"


# --------------------------------------------------------------------------- the command
def cli(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.as_env()}
    return subprocess.run([sys.executable, "-m", "media_pipeline.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_the_command_dry_run_then_import_with_workers_then_status(settings: Settings, start_worker: Callable[..., Any],
                                                                   tmp_path: Path) -> None:
    manifest = library_with_bad_items(tmp_path / "library", good=3)
    dry = cli(settings, "import", str(manifest), "--dry-run", "--workers", "2")
    assert dry.returncode == 0, dry.stderr
    assert "items:            7" in dry.stdout and "bad:              2" in dry.stdout and "to import:        5" in dry.stdout
    services = build_services(settings, queue=RecordingQueue())
    assert services.catalog.latest_import_job_id() is None  # a dry run changes nothing
    start_worker(settings)
    run = cli(settings, "import", str(manifest), "--rate", "100")
    assert run.returncode == 1, run.stdout + run.stderr  # bad items make the exit status 1
    assert "imported 3, already imported 0, bad 4" in run.stdout and "bad: 4: gone.jpg: object_not_found" in run.stdout
    job_id = services.catalog.latest_import_job_id()
    assert services.catalog.job_report(job_id).counts == {"updated": 3}
    for i in range(3):
        photo_id, _ = services.catalog.photo_by_external_id("alice", f"post-{i}")
        assert wait_for_status(services.catalog, photo_id, timeout=5).status.value == "ready"
    status = cli(settings, "import", "status")
    assert status.returncode == 0 and f"import {job_id} [done]" in status.stdout and "done 3" in status.stdout


@pytest.mark.testdata
def test_real_photos_and_malformed_files_by_manifest(services: Any, queue: RecordingQueue, testdata: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Real photos are imported and processed; real malformed files are bad items with their reason,
    the decompression bombs refused from their header alone."""
    corpus = sorted((testdata / "corpus-dev").glob("*.jpg"))[:5]
    bad = {"zero-byte.jpg": "empty_file", "not-an-image_pdf.jpg": "unsupported_format",
           "bomb-jpeg-20000x14000_sharp.jpg": "too_many_pixels", "bomb-png-65536x65536_sharp.png": "too_many_pixels"}
    lines = [{"source": str(path), "owner": "real", "external_id": path.stem} for path in corpus]
    lines += [{"source": str(testdata / "malformed" / name), "owner": "real", "external_id": name} for name in bad]
    downloads: list[str] = []
    real_download = importer._download
    monkeypatch.setattr(importer, "_download", lambda svc, src, item: (downloads.append(item.external_id), real_download(svc, src, item))[1])
    job = run_import(services, str(write_manifest(tmp_path, lines)))
    report = services.catalog.import_report(job.id)
    assert report.counts == {"imported": 5, "bad": 4}
    assert {item.split(": ", 1)[1].rsplit("/", 1)[1]: code for item, code, _ in report.bad} == bad
    assert not set(downloads) & set(bad)  # refused from the size or the first bytes
    stored_job = services.catalog.get_job(job.id)
    for _, photo_id in queue.reprocess:
        assert reprocess.reprocess_one(services, stored_job, photo_id) == "updated"
        assert services.catalog.get_photo(photo_id).status.value == "ready"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_catalog(request: pytest.FixtureRequest, settings: Settings, queue: RecordingQueue) -> Any:
    if request.param == "sqlite":
        yield build_services(settings, queue=queue)
        return
    from tests.conftest import fresh_postgres_database

    database = fresh_postgres_database("mp_import")
    yield build_services(settings.replace(catalog_url=next(database)), queue=queue)
    next(database, None)


def test_an_item_imported_meanwhile_by_another_run_is_counted_once_and_its_copy_dropped(any_catalog: Any,
                                                                                        tmp_path: Path) -> None:
    services = any_catalog
    manifest = library_with_bad_items(tmp_path / "library", good=2)
    first = run_import(services, str(manifest))
    assert services.catalog.import_report(first.id).counts == {"imported": 2, "bad": 4}
    (tmp_path / "library" / "p1.jpg").write_bytes(photo_bytes(99))  # other bytes: only the external id repeats
    source = open_source(str(manifest), services.settings, services.storage)
    item = next(item for _, item in source.items("") if item.external_id == "post-1")
    racing = importer.import_item(services, source, item, taken={})  # it did not see the first run's photo
    assert racing.photo is not None and services.storage.exists(racing.photo.original_key)
    (result,) = importer._catalog(services, [racing])
    assert result.outcome == "already_imported"
    assert result.photo_id == services.catalog.photo_by_external_id("alice", "post-1")[0]
    assert not services.storage.exists(racing.photo.original_key) and len(originals(services)) == 2
    again = run_import(services, str(manifest))
    assert services.catalog.import_report(again.id).counts == {"already_imported": 2, "bad": 4}


def test_the_command_stops_on_sigint_at_a_checkpoint_and_resumes_with_its_job(settings: Settings, tmp_path: Path) -> None:
    import signal
    import time

    manifest = library_with_bad_items(tmp_path / "library", good=12)
    env = {**os.environ, **settings.as_env()}
    run = subprocess.Popen([sys.executable, "-m", "media_pipeline.cli", "import", str(manifest), "--no-wait", "--batch", "2",
                            "--rate", "4"], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    services = build_services(settings, queue=RecordingQueue())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (services.catalog.latest_import_job_id()
                                               and services.catalog.import_report(services.catalog.latest_import_job_id()).items):
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    output, _ = run.communicate(timeout=60)
    job_id = services.catalog.latest_import_job_id()
    assert run.returncode == 130 and f"resume with `media-pipeline import --job {job_id}`" in output, output
    stopped = services.catalog.get_job(job_id)
    assert stopped.status == "interrupted" and services.catalog.import_report(job_id).items < 16
    resumed = cli(settings, "import", "--job", job_id, "--no-wait")
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr  # done, with bad items
    assert services.catalog.import_report(job_id).counts == {"imported": 12, "bad": 4}
    assert services.catalog.get_job(job_id).enqueued == 12 and len(originals(services)) == 12


def test_owners_who_opted_out_are_skipped_unless_the_manifest_says_visible(services: Any, client: Any, tmp_path: Path) -> None:
    from media_pipeline import visibility

    folder = tmp_path / "library"
    folder.mkdir()
    for i in range(4):
        (folder / f"p{i}.jpg").write_bytes(photo_bytes(i))
    visibility.set_owner_visible(services, "shy", False)
    manifest = write_manifest(folder, [
        {"source": "p0.jpg", "owner": "shy", "external_id": "s0"},
        {"source": "p1.jpg", "owner": "shy", "external_id": "s1", "visible": True},
        {"source": "p2.jpg", "owner": "alice", "external_id": "a2", "visible": False},
        {"source": "p3.jpg", "owner": "alice", "external_id": "a3"},
    ])
    job = run_import(services, str(manifest))
    assert services.catalog.import_report(job.id).counts == {"imported": 3, "skipped": 1}
    assert services.catalog.photo_by_external_id("shy", "s0") is None and len(originals(services)) == 3

    def shown(owner: str, external_id: str) -> tuple[bool, str | None]:
        (photo,) = client.get(f"/v1/photos?external_id={external_id}&owner={owner}").get_json()["photos"]
        return photo["visible"], photo["hidden_by"]

    assert shown("shy", "s1") == (False, "owner")  # imported as the line says, still hidden by its owner's choice
    assert shown("alice", "a2") == (False, "photo")
    assert shown("alice", "a3") == (True, None)
