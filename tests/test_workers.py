"""Real Celery worker processes consuming real brokers: the embedded filesystem broker always,
Redis and RabbitMQ (required in CI), and a production-like stack of PostgreSQL + S3 + Redis."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

import pytest

from config.settings import Settings
from media_pipeline.service import build_services
from tests import images
from tests.conftest import wait_for_status
from workers.celery_app import make_queue

pytestmark = pytest.mark.slow


def upload_all(settings: Settings, payloads: list[bytes]) -> tuple[Any, list[str]]:
    """Upload through the real app with the real Celery queue of ``settings``."""
    from media_pipeline.web import create_app

    services = build_services(settings, queue=make_queue(settings))
    client = create_app(settings, services).test_client()
    ids = []
    for data in payloads:
        response = client.post("/v1/photos", data=data)
        assert response.status_code == 202, response.get_data(as_text=True)
        ids.append(response.get_json()["id"])
    return services, ids


def photos(n: int, width: int = 900) -> list[bytes]:
    return [images.jpeg(images.scene(width, width * 2 // 3, seed=i)) for i in range(n)]


def consumed_by(log: Path) -> int:
    return len(re.findall(rb"Task workers.tasks.process_photo\[[^\]]+\] succeeded", log.read_bytes()))


def test_two_separate_worker_processes_share_the_embedded_filesystem_broker(settings: Settings, start_worker: Callable[..., Any]) -> None:
    first = start_worker(settings, name="a")
    second = start_worker(settings, name="b")
    services, ids = upload_all(settings, photos(10, width=1400))
    for photo_id in ids:
        assert wait_for_status(services.catalog, photo_id).status.value == "ready"
    counts = (consumed_by(first.log), consumed_by(second.log))
    assert sum(counts) == 10, counts  # every message consumed exactly once
    assert min(counts) >= 1, counts  # and both processes took work
    assert first.proc.pid != second.proc.pid


def test_a_bad_image_fails_once_with_a_code_and_the_worker_keeps_going(settings: Settings, start_worker: Callable[..., Any]) -> None:
    worker = start_worker(settings)
    good = images.jpeg(images.scene(700, 500))
    services, ids = upload_all(settings, [good[: len(good) // 2], good])
    bad = wait_for_status(services.catalog, ids[0])
    assert (bad.status.value, bad.error_code, bad.attempts) == ("failed", "corrupt_image", 1)
    assert wait_for_status(services.catalog, ids[1]).status.value == "ready"
    assert worker.proc.poll() is None


@pytest.mark.redis
def test_redis_broker(settings: Settings, redis_url: str, start_worker: Callable[..., Any]) -> None:
    settings = settings.replace(broker_url=redis_url)
    start_worker(settings, concurrency=2)
    services, ids = upload_all(settings, photos(4))
    assert [wait_for_status(services.catalog, i).status.value for i in ids] == ["ready"] * 4


@pytest.mark.rabbitmq
def test_rabbitmq_broker(settings: Settings, rabbitmq_url: str, start_worker: Callable[..., Any]) -> None:
    settings = settings.replace(broker_url=rabbitmq_url)
    start_worker(settings)
    services, ids = upload_all(settings, photos(2))
    assert [wait_for_status(services.catalog, i).status.value for i in ids] == ["ready"] * 2


@pytest.mark.postgres
@pytest.mark.redis
def test_production_stack_postgres_s3_redis(s3_settings: Settings, postgres_url: str, redis_url: str,
                                             start_worker: Callable[..., Any]) -> None:
    settings = s3_settings.replace(catalog_url=postgres_url, broker_url=redis_url)
    start_worker(settings)
    services, ids = upload_all(settings, photos(2, width=1200))
    for photo_id in ids:
        photo = wait_for_status(services.catalog, photo_id)
        assert photo.status.value == "ready"
        keys = set(services.storage.list(f"renditions/{photo_id}/"))
        originals = [r for r in photo.renditions if r.aspect == "original"]  # and the preset's crops
        assert keys == {r.key for r in photo.renditions} and len(originals) == 4 * len(services.preset.eager)
        stat = services.storage.stat(photo.renditions[0].key)
        assert stat.content_type.startswith("image/") and "immutable" in (stat.cache_control or "")
        assert services.storage.exists(f"originals/{photo_id}")
