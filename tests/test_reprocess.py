"""Batch reprocessing: the rendition diff, the job ledger (enqueue, checkpoint, resume, exactly-once
outcomes), storage-prefix imports, and real runs with worker processes, one of them killed."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from config.settings import Settings
from media_pipeline import reprocess, service
from media_pipeline.jobs import Selection
from media_pipeline.service import build_services
from tests import images
from tests.conftest import REPO, ingest_bytes


def add_photo(services: Any, width: int = 900, height: int = 600, seed: int = 0) -> str:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(width, height, seed=seed)))
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    return photo_id


def with_jpeg_quality(services: Any, quality: int) -> None:
    formats = tuple(dataclasses.replace(e, quality=quality) if e.format == "jpeg" else e for e in services.preset.formats)
    services.preset = dataclasses.replace(services.preset, formats=formats)


def stored(services: Any, photo_id: str) -> set[str]:
    return set(services.storage.list(f"renditions/{photo_id}/"))


def current(services: Any, photo_id: str) -> dict[tuple[str, int, str], str]:
    return {(r.aspect, r.width, r.format): r.key for r in services.catalog.get_photo(photo_id).renditions}


# --------------------------------------------------------------------------- the rendition diff
def test_only_renditions_whose_spec_changed_are_rendered(services: Any) -> None:
    services.settings = services.settings.replace(rendition_keep_seconds=0)
    photo_id = add_photo(services)
    before = current(services, photo_id)
    with_jpeg_quality(services, 60)
    result = service.run_photo(services, photo_id)
    assert result.outcome is service.Outcome.DONE and result.bytes_written > 0 and result.bytes_deleted > 0
    after = current(services, photo_id)
    assert after.keys() == before.keys()
    assert {aspect for aspect, _, _ in after} == {"original", *services.preset.aspects}  # crops too
    for (aspect, width, fmt), key in after.items():
        assert (key == before[(aspect, width, fmt)]) == (fmt != "jpeg")  # AVIF untouched, JPEG re-rendered
    assert stored(services, photo_id) == set(after.values())  # the old JPEGs are gone
    assert services.catalog.get_photo(photo_id).preset_version == services.preset.version
    assert service.process_photo(services, photo_id) is service.Outcome.ALREADY_DONE


def test_a_worker_that_died_before_cleaning_up_is_finished_by_the_next_delivery(services: Any) -> None:
    services.settings = services.settings.replace(rendition_keep_seconds=0)
    photo_id = add_photo(services)
    with_jpeg_quality(services, 59)
    real_cleanup = service.cleanup_retired
    service.cleanup_retired = lambda *a, **k: (0, 0)  # the worker dies right after completing
    try:
        assert service.run_photo(services, photo_id).outcome is service.Outcome.DONE
    finally:
        service.cleanup_retired = real_cleanup
    assert stored(services, photo_id) != set(current(services, photo_id).values())  # old JPEGs left behind
    result = service.run_photo(services, photo_id)  # the message, delivered again
    assert result.outcome is service.Outcome.ALREADY_DONE and result.bytes_deleted > 0
    assert stored(services, photo_id) == set(current(services, photo_id).values())


def test_a_new_width_renders_just_that_width(services: Any) -> None:
    photo_id = add_photo(services)
    before = current(services, photo_id)
    services.preset = dataclasses.replace(services.preset, widths=tuple(sorted({*services.preset.widths, 480}, reverse=True)))
    service.run_photo(services, photo_id)
    after = current(services, photo_id)
    assert set(after) - set(before) == {("original", 480, "avif"), ("original", 480, "jpeg")}
    assert all(after[k] == v for k, v in before.items())


def test_a_new_aspect_renders_just_its_crops_and_a_dropped_one_is_retired(services: Any) -> None:
    services.settings = services.settings.replace(rendition_keep_seconds=0)
    services.preset = dataclasses.replace(services.preset, aspects=("1:1", "4:5"))
    photo_id = add_photo(services)
    before = current(services, photo_id)
    services.preset = dataclasses.replace(services.preset, aspects=("1:1", "16:9"))
    result = service.run_photo(services, photo_id)
    assert result.outcome is service.Outcome.DONE
    after = current(services, photo_id)
    assert {k for k in set(after) - set(before)} == {("16:9", w, f) for w in (640, 320) for f in ("avif", "jpeg")}
    assert {k[0] for k in set(before) - set(after)} == {"4:5"}
    assert all(after[k] == v for k, v in before.items() if k[0] != "4:5")  # the rest kept their keys
    assert stored(services, photo_id) == set(after.values())


def test_retired_renditions_stay_servable_until_cleanup(services: Any, client: Any) -> None:
    services.settings = services.settings.replace(rendition_keep_seconds=3600)
    photo_id = add_photo(services)
    old_url = next(r["url"] for r in client.get(f"/v1/photos/{photo_id}").get_json()["renditions"] if r["format"] == "jpeg")
    with_jpeg_quality(services, 55)
    service.run_photo(services, photo_id)
    new_url = next(r["url"] for r in client.get(f"/v1/photos/{photo_id}").get_json()["renditions"] if r["format"] == "jpeg"
                   and r["aspect"] == "original" and r["width"] == int(old_url.rsplit("/", 1)[1].split(".")[0]))
    assert new_url != old_url
    assert client.get(old_url).status_code == 200 and client.get(new_url).status_code == 200
    assert service.cleanup_retired(services) == (0, 0)  # not old enough yet
    count, size = service.cleanup_retired(services, now=time.time() + 3601)
    assert count == sum(1 for (_, _, fmt) in current(services, photo_id) if fmt == "jpeg") and size > 0  # each old JPEG
    assert client.get(old_url).status_code == 404 and client.get(new_url).status_code == 200
    assert stored(services, photo_id) == set(current(services, photo_id).values())


# --------------------------------------------------------------------------- the job ledger
def test_enqueue_checkpoints_resumes_and_counts_each_photo_once(services: Any, queue: Any) -> None:
    ids = [add_photo(services, 200, 150, seed=i) for i in range(7)]
    with_jpeg_quality(services, 61)
    job = reprocess.start_job(services, Selection(mode="stale"))
    batches = {"n": 0}

    def stop_after_first() -> bool:
        batches["n"] += 1
        return batches["n"] == 1

    assert reprocess.enqueue(services, job, batch=3, should_stop=stop_after_first) == 3
    job = services.catalog.get_job(job.id)
    assert (job.status, job.enqueued, job.cursor) == ("interrupted", 3, sorted(ids)[2])
    assert reprocess.enqueue(services, job, batch=3) == 4  # resumed from the cursor
    assert services.catalog.get_job(job.id).enqueued == 7
    assert sorted(pid for _, pid in queue.reprocess) == sorted(ids)
    for _, photo_id in queue.reprocess + queue.reprocess[:2]:  # two duplicate deliveries
        reprocess.reprocess_one(services, job, photo_id)
    report = services.catalog.job_report(job.id)
    assert report.counts == {"updated": 7} and report.bytes_written > 0
    assert reprocess.wait(services, job, lambda r: None).counts == {"updated": 7}
    assert services.catalog.get_job(job.id).status == "done"


def test_the_rate_limit_spreads_enqueueing_over_time(services: Any, queue: Any) -> None:
    for i in range(6):
        add_photo(services, 120, 90, seed=i)
    with_jpeg_quality(services, 63)
    job = reprocess.start_job(services, Selection(mode="stale"))
    started = time.monotonic()
    assert reprocess.enqueue(services, job, batch=500, rate=10) == 6
    assert time.monotonic() - started >= 0.5  # 6 photos at 10/s


def test_dry_run_estimates_and_changes_nothing(services: Any, queue: Any) -> None:
    ids = [add_photo(services, 700, 500, seed=i) for i in range(3)]  # widths 700, 640, 320
    with_jpeg_quality(services, 62)
    est = reprocess.estimate(services, Selection(mode="stale"), workers=2)
    # Per photo, 3 whole-picture JPEGs and the 1:1 crop JPEG at 320 (its 500 px window is under 640).
    assert (est.selected, est.to_update, est.renditions_to_render, est.renditions_to_retire) == (3, 3, 12, 12)
    assert est.seconds is not None and est.seconds > 0 and est.bytes_written > 0
    assert queue.reprocess == [] and services.catalog.get_job() is None
    assert all(services.catalog.get_photo(i).preset_version != services.preset.version for i in ids)


def test_failed_photos_get_another_go(services: Any, queue: Any) -> None:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(400, 300)))
    services.catalog.fail(photo_id, "timeout", "the worker was too slow that day")
    job = reprocess.start_job(services, Selection(mode="failed"))
    reprocess.enqueue(services, job)
    assert reprocess.reprocess_one(services, job, photo_id) == "updated"
    assert services.catalog.get_photo(photo_id).status.value == "ready"


def test_prefix_catalogues_originals_that_have_no_row(services: Any, queue: Any) -> None:
    data = images.jpeg(images.scene(500, 400, seed=9))
    services.storage.put("imports/legacy-0001.jpg", data, "image/jpeg")
    services.storage.put("imports/readme.txt", b"not an image", "text/plain")
    job = reprocess.start_job(services, Selection(mode="all", prefix="imports/"))
    assert reprocess.enqueue(services, job) == 1
    (_, photo_id), = queue.reprocess
    assert reprocess.reprocess_one(services, job, photo_id) == "updated"
    photo = services.catalog.get_photo(photo_id)
    assert photo.status.value == "ready" and services.storage.get(photo.original_key) == data
    assert services.storage.exists("imports/legacy-0001.jpg")  # the source is left where it was


# --------------------------------------------------------------------------- real runs
def run_with_a_killed_worker(settings: Settings, start_worker: Callable[..., Any], tmp_path: Path, count: int) -> None:
    """Photos at one preset; the preset changes; `media-pipeline reprocess` runs against two
    worker processes, one of which is SIGKILLed mid-run. Every photo must end up to date, counted
    once, with no stale rendition left in storage."""
    from media_pipeline.queue import RecordingQueue

    settings = settings.replace(rendition_keep_seconds=0)
    seeding = build_services(settings, queue=RecordingQueue())
    ids = [add_photo(seeding, 360, 240, seed=i) for i in range(count)]
    presets = tmp_path / "presets.toml"
    shipped = Path(settings.presets_file).read_text()
    presets.write_text(shipped.replace('encoder = "jpegli"', 'encoder = "default"'))  # JPEG's, fixed or auto
    assert presets.read_text() != shipped
    settings = settings.replace(presets_file=presets)
    target = settings.preset().version
    victim = start_worker(settings, name="victim")
    start_worker(settings, name="survivor")
    env = {**os.environ, **settings.as_env()}
    cli = subprocess.Popen([sys.executable, "-m", "media_pipeline.cli", "reprocess", "--stale", "--batch", "40", "--stall-seconds", "4"],
                           env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    services = build_services(settings, queue=RecordingQueue())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill once the run is well under way
        job = services.catalog.get_job()
        if job and services.catalog.job_report(job.id).finished >= count // 4:
            break
        time.sleep(0.1)
    os.killpg(victim.proc.pid, signal.SIGKILL)
    output, _ = cli.communicate(timeout=240)
    assert cli.returncode == 0, output
    job = services.catalog.get_job()
    report = services.catalog.job_report(job.id)
    assert report.counts.get("pending", 0) == 0 and report.total == count, (report, output)
    assert report.counts.get("updated", 0) + report.counts.get("up_to_date", 0) == count, output
    assert "updated     " in output and "written" in output
    for photo_id in ids:
        photo = services.catalog.get_photo(photo_id)
        assert photo.status.value == "ready" and photo.preset_version == target
        assert stored(services, photo_id) == {r.key for r in photo.renditions}  # nothing stale left
        assert len(services.catalog.all_renditions(photo_id)) == len(photo.renditions)
    status = subprocess.run([sys.executable, "-m", "media_pipeline.cli", "reprocess", "status"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and f"job {job.id} [done]" in status.stdout


@pytest.mark.slow
def test_reprocess_run_on_embedded_defaults_survives_a_killed_worker(settings: Settings, start_worker: Callable[..., Any],
                                                                      tmp_path: Path) -> None:
    run_with_a_killed_worker(settings, start_worker, tmp_path, count=200)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_reprocess_run_on_redis_and_postgres_survives_a_killed_worker(settings: Settings, postgres_url: str, redis_url: str,
                                                                       start_worker: Callable[..., Any], tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:  # the session's database: start from an empty catalog
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    run_with_a_killed_worker(settings.replace(catalog_url=postgres_url, broker_url=redis_url), start_worker, tmp_path, count=200)
