"""Fixtures: settings on temp folders, the app, real worker processes, an S3 server on loopback,
and the real PostgreSQL, Redis and RabbitMQ services (required in CI, skipped elsewhere)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from config.settings import Settings
from media_pipeline.queue import RecordingQueue
from media_pipeline.service import Services, build_services

REPO = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("MP_TESTDATA", REPO.parent / "shared" / "testdata"))
IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_ADMIN_URL = os.environ.get("MP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("MP_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
RABBITMQ_URL = os.environ.get("MP_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def require(available: bool, what: str) -> None:
    """Skip on a developer machine without ``what``; in CI a missing service is a failure, never a skip."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available")
    pytest.skip(f"{what} is not available")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def testdata() -> Path:
    require(TESTDATA.is_dir(), f"the shared test data folder {TESTDATA}")
    return TESTDATA


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({}, data_dir=tmp_path / "var")


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def services(settings: Settings, queue: RecordingQueue) -> Services:
    return build_services(settings, queue=queue)


@pytest.fixture
def app(services: Services) -> Any:
    from media_pipeline.web import create_app

    app = create_app(services.settings, services)
    app.testing = True
    return app


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


# --------------------------------------------------------------------------- S3 on loopback
@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto in server mode: a real S3 API over HTTP on 127.0.0.1, no mocked boto3 calls."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_settings(settings: Settings, s3_endpoint: str) -> Settings:
    from media_pipeline.storage.s3 import S3Storage

    s3 = settings.replace(
        storage_backend="s3",
        s3_bucket=f"mp-{uuid.uuid4().hex[:12]}",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        s3_addressing_style="path",
    )
    S3Storage.from_settings(s3).ensure_bucket()
    return s3


# --------------------------------------------------------------------------- real services
def fresh_postgres_database(prefix: str = "mp_test") -> Iterator[str]:
    """A new, empty database on the real PostgreSQL server (the generator of a fixture), dropped afterwards."""
    try:
        import psycopg

        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001
        require(False, f"PostgreSQL at {POSTGRES_ADMIN_URL} ({exc})")
        return
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for the session's PostgreSQL tests."""
    yield from fresh_postgres_database()


@pytest.fixture(scope="session")
def redis_url() -> str:
    require(port_open("127.0.0.1", 6379), "Redis on 127.0.0.1:6379")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    return REDIS_URL


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    require(port_open("127.0.0.1", 5672), "RabbitMQ on 127.0.0.1:5672")
    return RABBITMQ_URL


# --------------------------------------------------------------------------- worker processes
class WorkerProcess:
    def __init__(self, settings: Settings, log: Path, concurrency: int = 1, module: str = "media_pipeline.cli") -> None:
        self.log = log
        env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "worker", f"--concurrency={concurrency}"],
            env=env,
            stdout=open(log, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"ready." in self.log.read_bytes():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready: {self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(settings: Settings, concurrency: int = 1, name: str = "worker", module: str = "media_pipeline.cli") -> WorkerProcess:
        worker = WorkerProcess(settings, tmp_path / f"{name}-{len(started)}.log", concurrency, module)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


def ingest_bytes(services: Any, data: bytes, owner: str | None = None) -> str:
    """Accept ``data`` the way the API does (spooled, probed, stored, recorded, queued); returns the id."""
    import io

    from media_pipeline import service
    from media_pipeline.service import SpooledUpload

    upload = SpooledUpload.receive(io.BytesIO(data), services.settings.tmp_dir, services.settings.max_upload_bytes)
    try:
        return service.ingest(services, upload, owner).id
    finally:
        upload.close()


def wait_for_status(catalog: Any, photo_id: str, statuses: tuple[str, ...] = ("ready", "failed"), timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        photo = catalog.get_photo(photo_id)
        if photo is not None and photo.status.value in statuses:
            return photo
        time.sleep(0.2)
    raise TimeoutError(f"photo {photo_id} still {photo.status.value if photo else 'missing'} after {timeout} s")
