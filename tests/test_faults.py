"""Faults, nothing lost: S3 answering 503 SlowDown, resetting connections and going away for a
while (tests/faulty_proxy.py, in front of the real S3 server on loopback), and a broker restart.
Every upload a client got a 202 for ends `ready` exactly once, and `check` finds nothing wrong."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import pytest

from config.settings import Settings
from media_pipeline import service
from media_pipeline.check import check
from media_pipeline.errors import StorageUnavailable
from media_pipeline.service import build_services
from media_pipeline.storage.s3 import S3Storage
from tests import images
from tests.conftest import free_port, ingest_bytes, port_open, require, wait_for_status
from tests.faulty_proxy import FaultyProxy
from workers.celery_app import make_queue

pytestmark = pytest.mark.slow


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(s3_endpoint)
    proxy.start()
    yield proxy
    proxy.stop()


def upload_until_accepted(client: Any, data: bytes, key: str, attempts: int = 30,
                          refused: threading.Event | None = None) -> tuple[str, list[int]]:
    """What a client app does: retry a 503 with the same Idempotency-Key until it gets its 202
    (``refused`` is set at the first 503)."""
    statuses = []
    for _ in range(attempts):
        response = client.post("/v1/photos", data=data, headers={"Idempotency-Key": key})
        statuses.append(response.status_code)
        if response.status_code == 202:
            return response.json["id"], statuses
        assert response.status_code == 503, response.json
        assert response.json["error"]["code"] == "storage_unavailable"
        if refused is not None:
            refused.set()
        time.sleep(0.2)
    raise AssertionError(f"never accepted: {statuses}")


def test_s3_slowdowns_resets_and_an_outage_lose_nothing(s3_settings: Settings, proxy: FaultyProxy,
                                                        start_worker: Callable[..., Any]) -> None:
    from media_pipeline.web import create_app

    settings = s3_settings.replace(s3_endpoint_url=proxy.url, task_retry_backoff=0.2, task_max_retries=8)
    services = build_services(settings, queue=make_queue(settings))  # the real Celery queue on the embedded broker
    client = create_app(settings, services).test_client()
    start_worker(settings, concurrency=2)
    proxy.faults(rate=0.3)
    photos = [images.jpeg(images.scene(640, 480, seed=100 + i)) for i in range(12)]
    accepted: list[str] = []
    refused = 0
    # The endpoint goes away from the fifth upload on, with processing in flight, and comes back 3 s
    # after that upload first reaches its client as a 503 (the S3 call's own retries and the clean-up
    # of a PUT that may have landed take 7-14 s before that, more on a loaded machine, so a fixed
    # outage could end before them); a minute at most, after which the missing 503 fails the test.
    # (Started by the clock instead, the outage could miss every upload: how long they take depends
    # on the faults.)
    first_refusal = threading.Event()

    def outage() -> None:
        proxy.stop()
        first_refusal.wait(60)
        time.sleep(3)
        proxy.start()

    endpoint_back = threading.Thread(target=outage)
    for i, data in enumerate(photos):
        if i == 4:
            endpoint_back.start()
            while proxy.server is not None:  # stopped before this upload begins
                time.sleep(0.01)
        photo_id, statuses = upload_until_accepted(client, data, key=f"photo-{i}", refused=first_refusal)
        accepted.append(photo_id)
        refused += len(statuses) - 1
    endpoint_back.join()
    for photo_id in accepted:
        photo = wait_for_status(services.catalog, photo_id, timeout=180)
        assert photo.status.value == "ready", (photo.error_code, photo.error_message)
    proxy.faults(rate=0.0)
    assert sum(proxy.injected.values()) >= 10, proxy.injected  # the faults really happened
    assert refused >= 1  # the outage reached the clients as 503s, which they retried
    # Exactly once: one photo per accepted upload, whatever the client had to retry.
    report = check(services)
    assert report.ok, report.problems
    assert report.photos == {"ready": len(photos)}
    assert len(set(accepted)) == len(photos)
    for photo_id, data in zip(accepted, photos):
        photo = services.catalog.get_photo(photo_id)
        originals = [r for r in photo.renditions if r.aspect == "original"]  # crops are counted in test_crop_api.py
        assert len(originals) == len(services.preset.eager) * len({r.width for r in originals})
        assert S3Storage.from_settings(s3_settings).get(photo.original_key) == data
    s3 = boto3.client("s3", endpoint_url=s3_settings.s3_endpoint_url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    assert s3.list_multipart_uploads(Bucket=s3_settings.s3_bucket).get("Uploads", []) == []
    print(f"faults injected {proxy.injected}, upload attempts refused with 503: {refused}")


def test_an_s3_client_that_lived_through_an_outage_still_retries_slowdowns(s3_settings: Settings, proxy: FaultyProxy) -> None:
    """A worker's S3 client outlives outages. Calls made while the endpoint is gone fail (the task
    retries them later); once it is back, a call that meets a SlowDown or a reset must still be
    retried by the client, or every photo's attempt fails on one of its dozens of calls."""
    storage = S3Storage.from_settings(s3_settings.replace(s3_endpoint_url=proxy.url))
    proxy.stop()
    during = []

    def call(i: int) -> None:
        try:
            storage.put(f"outage/{i}", b"x", "application/octet-stream")
        except StorageUnavailable:
            during.append(i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(during) == len(threads)  # the outage was real
    proxy.start()
    proxy.faults(rate=0.3)
    failed = 0
    for i in range(100):
        try:
            storage.put(f"after/{i}", b"x", "application/octet-stream")
        except StorageUnavailable:
            failed += 1
    proxy.faults(rate=0.0)
    assert sum(proxy.injected.values()) >= 15, proxy.injected
    # With its retries, a call fails only when all 4 tries meet a fault (0.3^4, under 1%); a client
    # that stopped retrying would fail about one call in five.
    assert failed <= 5, (failed, proxy.injected)


class PrivateRedis:
    """A Redis of this test's own with an append-only file, so it can be SIGKILLed and started
    again without touching the session's shared one."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(folder),
                        "--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.port):
            assert time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no goodbye to the clients
        self.proc.wait()

    def restart(self) -> None:
        self.kill()
        time.sleep(1)
        self.start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    require(binary is not None and port_open("127.0.0.1", 6379), "redis-server")
    (tmp_path / "redis").mkdir()
    server = PrivateRedis(str(binary), tmp_path / "redis")
    yield server
    server.kill()


def test_a_broker_restart_loses_no_photo(settings: Settings, private_redis: PrivateRedis,
                                         start_worker: Callable[..., Any]) -> None:
    settings = settings.replace(broker_url=private_redis.url, stuck_after_seconds=5)
    services = build_services(settings, queue=make_queue(settings))
    start_worker(settings, concurrency=2)
    ids = [upload(services, seed) for seed in range(4)]
    private_redis.restart()  # with messages queued and tasks running
    ids += [upload(services, seed) for seed in range(4, 8)]  # the API's producer reconnects
    deadline = time.monotonic() + 120
    while not all(services.catalog.get_photo(i).status.value in ("ready", "failed") for i in ids):
        assert time.monotonic() < deadline, [services.catalog.get_photo(i).status.value for i in ids]
        service.reconcile(services)  # as `serve` and a production cron do
        time.sleep(1)
    assert [services.catalog.get_photo(i).status.value for i in ids] == ["ready"] * len(ids)
    report = check(services)
    assert report.ok and report.photos == {"ready": len(ids)}, report.problems


def upload(services: Any, seed: int) -> str:
    return ingest_bytes(services, images.jpeg(images.scene(1200, 900, seed=200 + seed)))
