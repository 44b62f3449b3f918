"""The task's decisions: retry transient storage/catalog errors with backoff, fail bad images once,
turn a time-limit into `failed`/`timeout`. Run eagerly (``Task.apply``) against real local storage
and SQLite; only the failure is injected."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from media_pipeline import service
from media_pipeline.errors import StorageUnavailable
from tests import images
from tests.conftest import ingest_bytes


class FlakyStorage:
    """Wraps a real backend; the first ``failures`` reads raise StorageUnavailable."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    def get(self, key: str) -> bytes:
        self.calls += 1
        if self.calls <= self.failures:
            raise StorageUnavailable("S3 503 SlowDown")
        return self.inner.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def task(services: Any) -> Iterator[Any]:
    from workers import tasks

    services.settings = services.settings.replace(task_max_retries=3, task_retry_backoff=0.01)
    tasks.app.conf.media_pipeline_settings = services.settings
    tasks._services = services
    yield tasks.process_photo
    tasks._services = None


def test_transient_storage_errors_are_retried_until_they_pass(task: Any, services: Any) -> None:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(500, 400)))
    services.storage = FlakyStorage(services.storage, failures=3)  # more retries than MP_MAX_ATTEMPTS
    result = task.apply(args=[photo_id])
    assert result.get() == "done"
    assert services.storage.calls == 4
    photo = services.catalog.get_photo(photo_id)
    # Attempts ended by a transient error are handed back: only one attempt ran to its end.
    assert (photo.status.value, photo.attempts) == ("ready", 1)


def test_a_photo_that_killed_its_worker_in_every_start_of_a_job_is_given_up(task: Any, services: Any) -> None:
    from media_pipeline import reprocess
    from media_pipeline.jobs import Selection
    from workers import tasks

    photo_id = ingest_bytes(services, images.jpeg(images.scene(300, 200)))
    service.process_photo(services, photo_id)
    job = reprocess.start_job(services, Selection())
    services.catalog.checkpoint(job.id, photo_id, [photo_id])
    for _ in range(services.settings.max_attempts):
        services.catalog.start_item(job.id, photo_id)  # each start died with its worker
    assert tasks.reprocess_photos.apply(args=[job.id, [photo_id]]).get() == {"failed": 1}
    report = services.catalog.job_report(job.id)
    assert report.counts == {"failed": 1} and report.failures == [(photo_id, "abandoned")]
    assert services.catalog.get_photo(photo_id).status.value == "ready"  # it keeps what it had


def test_retries_are_bounded_and_end_failed_with_a_reason(task: Any, services: Any) -> None:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(300, 200)))
    services.storage = FlakyStorage(services.storage, failures=100)
    task.apply(args=[photo_id])
    photo = services.catalog.get_photo(photo_id)
    assert services.storage.calls == 4  # the first try and three retries
    assert (photo.status.value, photo.error_code) == ("failed", "transient_error")


def test_a_bad_image_is_not_retried(task: Any, services: Any) -> None:
    data = images.jpeg(images.scene(600, 400))
    photo_id = ingest_bytes(services, data[: len(data) // 2])
    services.storage = FlakyStorage(services.storage, failures=0)
    assert task.apply(args=[photo_id]).get() == "failed"
    assert services.storage.calls == 1
    photo = services.catalog.get_photo(photo_id)
    assert (photo.error_code, photo.attempts) == ("corrupt_image", 1)


def test_the_soft_time_limit_ends_the_photo_failed_with_timeout(task: Any, services: Any, monkeypatch: Any) -> None:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(300, 200)))

    def too_slow(*_: Any, **__: Any) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(service.pipeline, "prepare", too_slow)
    assert task.apply(args=[photo_id]).get() == "failed"
    assert services.catalog.get_photo(photo_id).error_code == "timeout"


def test_a_deleted_photo_is_a_no_op(task: Any, services: Any) -> None:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(300, 200)))
    service.delete_photo(services, photo_id)
    assert task.apply(args=[photo_id]).get() == "missing"
    assert list(services.storage.list("")) == []


def test_a_reprocess_batch_records_every_photo_and_a_bad_one_does_not_stop_it(task: Any, services: Any) -> None:
    import dataclasses

    from media_pipeline import reprocess
    from media_pipeline.jobs import Selection
    from workers import tasks

    good = [ingest_bytes(services, images.jpeg(images.scene(400, 300, seed=i))) for i in range(2)]
    data = images.jpeg(images.scene(400, 300, seed=5))
    bad = ingest_bytes(services, data[: len(data) // 2])
    job = reprocess.start_job(services, Selection(mode="all"))
    reprocess.enqueue(services, job)
    outcomes = tasks.reprocess_photos.apply(args=[job.id, [good[0], bad, good[1]]]).get()
    assert outcomes == {"updated": 2, "failed": 1}
    report = services.catalog.job_report(job.id)
    assert report.counts == {"updated": 2, "failed": 1} and report.failures == [(bad, "corrupt_image")]

    # A transient error with no retries left ends the photo failed, counted once.
    services.settings = services.settings.replace(task_max_retries=0)
    tasks.app.conf.media_pipeline_settings = services.settings
    services.preset = dataclasses.replace(services.preset, widths=(300,))
    services.storage = FlakyStorage(services.storage, failures=100)
    job2 = reprocess.start_job(services, Selection(mode="stale"))
    reprocess.enqueue(services, job2)
    assert tasks.reprocess_photos.apply(args=[job2.id, [good[0]]]).get() == {"failed": 1}
    assert services.catalog.job_report(job2.id).failures == [(good[0], "transient_error")]
