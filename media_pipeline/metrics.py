"""Prometheus metrics: defined once here, counted by the service, the web layer and the tasks.

Processes started by the CLI run prometheus_client in multiprocess mode: ``media-pipeline api`` and
``worker`` point ``PROMETHEUS_MULTIPROC_DIR`` at ``MP_METRICS_DIR`` before anything imports
prometheus_client, every gunicorn worker and Celery child writes its own file there, and
``/metrics`` sums them. Celery recycles its children (``worker_max_tasks_per_child``) and gunicorn
restarts workers, so a scrape first folds the files of processes that have exited into one archive
file per type: totals survive their process and the folder does not grow. Elsewhere (tests, a
plain import) the counters live in the process.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import REGISTRY as PROCESS_REGISTRY
from prometheus_client import values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE  # what generate_latest writes
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

T = TypeVar("T")
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 150.0)

UPLOADS = Counter("mp_uploads", "Uploads by outcome: accepted, replayed (same Idempotency-Key and body), rejected.", ["outcome"])
API_ERRORS = Counter("mp_api_errors", "Error answers of the API, by error code and HTTP status (rejected uploads among them).",
                     ["code", "status"])
HTTP_REQUESTS = Counter("mp_http_requests", "HTTP requests by route, method and status.", ["route", "method", "status"])
HTTP_SECONDS = Histogram("mp_http_request_seconds", "Time to answer an HTTP request, by route (bodies streamed after it).",
                         ["route"], buckets=_SECONDS)
PHOTOS_PROCESSED = Counter("mp_photos_processed", "Processing runs by outcome: done, already_done, failed, missing.", ["outcome"])
PHOTO_FAILURES = Counter("mp_photo_failures", "Photos that ended `failed`, by error code.", ["code"])
STEP_SECONDS = Histogram("mp_step_seconds", "Time in each step of processing a photo.", ["step"], buckets=_SECONDS)
TASK_SECONDS = Histogram("mp_task_seconds", "Time of a whole task, by task.", ["task"], buckets=_SECONDS)
WEBHOOK_DELIVERIES = Counter("mp_webhook_deliveries", "Webhook delivery attempts by outcome: delivered, retried, failed (given up).",
                             ["outcome"])
WEBHOOK_DELAY = Histogram("mp_webhook_delay_seconds", "From an event's commit to its receiver's 2xx.", buckets=_SECONDS)
BYTES_WRITTEN = Counter("mp_bytes_written", "Bytes written to storage, by kind: original, rendition.", ["kind"])


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        STEP_SECONDS.labels(name).observe(time.perf_counter() - started)


def timed_iter(name: str, items: Iterable[T]) -> Iterator[T]:
    """Time each ``next()`` of a lazy producer (an encoder yielding renditions) as one step."""
    iterator = iter(items)
    while True:
        with step(name):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


class StateCollector:
    """Gauges read at scrape time from the backends: queue depth and photos in flight. A backend
    that does not answer leaves its gauge out of that scrape (``/readyz`` says which one)."""

    def __init__(self, queue_depths: Callable[[], dict[str, int]], in_flight: Callable[[], dict[str, int]],
                 webhooks_owed: Callable[[], dict[str, int]] | None = None,
                 undelivered_age: Callable[[], float | None] | None = None) -> None:
        self.queue_depths = queue_depths
        self.in_flight = in_flight
        self.webhooks_owed = webhooks_owed
        self.undelivered_age = undelivered_age

    def collect(self) -> Iterator[Metric]:
        for name, doc, label, read in (
            ("mp_queue_depth", "Messages waiting in each queue of the broker.", "queue", self.queue_depths),
            ("mp_photos_in_flight", "Photos accepted and not yet ready or failed, by status.", "status", self.in_flight),
            ("mp_webhook_deliveries_owed", "Webhook deliveries not acknowledged, by state: pending (being retried), failed (given up).",
             "state", self.webhooks_owed),
        ):
            if read is None:
                continue
            try:
                counts = read()
            except Exception:  # noqa: BLE001 - a scrape must not fail because one backend is down
                continue
            family = GaugeMetricFamily(name, doc, labels=[label])
            for key, value in sorted(counts.items()):
                family.add_metric([key], value)
            yield family
        if self.undelivered_age is not None:
            try:
                age = self.undelivered_age()
            except Exception:  # noqa: BLE001 - as above
                return
            yield GaugeMetricFamily("mp_events_oldest_undelivered_seconds",
                                    "Age of the oldest event a webhook receiver has not acknowledged (0 when none is owed).",
                                    value=age or 0.0)


class FolderCollector:
    """Sums the files of every process under ``folder``; those of exited processes are folded first."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def collect(self) -> Iterable[Metric]:
        fold_exited(self.folder)
        return MultiProcessCollector.merge(glob.glob(str(self.folder / "*.db")), accumulate=True)


def fold_exited(folder: Path, alive: Callable[[int], bool] | None = None) -> int:
    """Add the values of exited processes' files to ``<type>_archive.db`` and delete those files;
    returns how many were folded. Under a lock, so two scrapes never fold a file twice."""
    alive = alive or _pid_alive
    folded = 0
    with open(folder / ".fold.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        archives: dict[str, MmapedDict] = {}
        try:
            for path in sorted(folder.glob("*.db")):
                kind, _, rest = path.stem.partition("_")
                if kind not in ("counter", "histogram") or not (rest.isascii() and rest.isdecimal()) or alive(int(rest)):
                    continue  # gauges here are read at scrape time, never written by processes
                archive = archives.get(kind)
                if archive is None:
                    archive = archives[kind] = MmapedDict(str(folder / f"{kind}_archive.db"))
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(path)):
                    total, _ = archive.read_value(key)
                    archive.write_value(key, total + value, timestamp)
                path.unlink()
                folded += 1
        finally:
            for archive in archives.values():
                archive.close()
    return folded


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exposition(folder: Path | None, state: StateCollector) -> bytes:
    """The text format for ``/metrics``: this host's processes (or this process) plus the gauges."""
    if folder is None:
        counted = PROCESS_REGISTRY
    else:
        counted = CollectorRegistry(auto_describe=False)
        counted.register(FolderCollector(folder))  # type: ignore[arg-type]
    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(state)  # type: ignore[arg-type]
    return generate_latest(counted) + generate_latest(gauges)


def multiprocess() -> bool:
    """Whether prometheus_client writes to a folder in this process (the CLI turned it on)."""
    return values.ValueClass.__name__ == "MmapedValue"
