"""The reconciler: photos whose message was lost are re-enqueued; a photo that keeps killing its
worker is given up as `failed`/`abandoned` after MP_MAX_ATTEMPTS; nothing accepted vanishes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from config.settings import Settings
from media_pipeline import service
from media_pipeline.service import build_services
from tests import images
from tests.conftest import ingest_bytes, wait_for_status
from workers.celery_app import make_queue


def test_stuck_photos_are_re_enqueued_then_abandoned(services: Any, queue: Any) -> None:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(300, 200)))
    fresh = ingest_bytes(services, images.jpeg(images.scene(300, 200, seed=2)))
    queue.enqueued.clear()
    stuck_at = time.time() + services.settings.stuck_after_seconds + 1
    services.catalog.start_processing(photo_id)  # a worker took it, then died
    assert service.reconcile(services, now=time.time()) == (0, 0)  # nothing is old enough
    assert service.reconcile(services, now=stuck_at) == (2, 0)
    assert sorted(queue.enqueued) == sorted([photo_id, fresh])
    for _ in range(services.settings.max_attempts - 1):
        services.catalog.start_processing(photo_id)  # and died again, and again
    service.process_photo(services, fresh)
    assert service.reconcile(services, now=stuck_at + services.settings.stuck_after_seconds + 1) == (0, 1)
    photo = services.catalog.get_photo(photo_id)
    assert (photo.status.value, photo.error_code) == ("failed", "abandoned") and "3 attempts" in photo.error_message
    assert services.catalog.get_photo(fresh).status.value == "ready"


@pytest.mark.slow
def test_a_photo_whose_worker_was_killed_mid_task_still_ends_ready(settings: Settings, start_worker: Callable[..., Any]) -> None:
    settings = settings.replace(stuck_after_seconds=2)
    services = build_services(settings, queue=make_queue(settings))  # the real Celery queue on the embedded broker
    victim = start_worker(settings, name="victim")
    photo_id = ingest_bytes(services, images.jpeg(images.scene(6000, 4000)))
    wait_for_status(services.catalog, photo_id, ("processing",), timeout=60)
    os.killpg(victim.proc.pid, signal.SIGKILL)  # the filesystem broker loses the message with it
    time.sleep(3)
    assert services.catalog.get_photo(photo_id).status.value == "processing"
    start_worker(settings, name="rescuer")
    assert service.reconcile(services) == (1, 0)
    photo = wait_for_status(services.catalog, photo_id)
    assert (photo.status.value, photo.attempts) == ("ready", 2)


@pytest.mark.slow
def test_files_that_crash_or_hang_their_worker_end_failed_and_the_rest_ready(settings: Settings,
                                                                              start_worker: Callable[..., Any]) -> None:
    """A decoder that segfaults or hangs in C (tests/fault_worker.py) on one file: the broker hands
    the message back each time, the attempts are counted, and after MP_MAX_ATTEMPTS the photo ends
    `failed`/`abandoned`; photos around it, and the next upload, are processed as usual."""
    settings = settings.replace(task_soft_time_limit=2, task_time_limit=4)
    services = build_services(settings, queue=make_queue(settings))
    start_worker(settings, concurrency=2, module="tests.fault_worker")
    crasher = ingest_bytes(services, images.jpeg(images.scene(400, 300), comment=b"mp-fault:segfault"))
    hanger = ingest_bytes(services, images.jpeg(images.scene(400, 300, seed=1), comment=b"mp-fault:hang"))
    fine = [ingest_bytes(services, images.jpeg(images.scene(400, 300, seed=2 + i))) for i in range(3)]
    for photo_id in (crasher, hanger):
        photo = wait_for_status(services.catalog, photo_id, ("failed",), timeout=120)
        assert photo.error_code == "abandoned", photo
        assert f"{settings.max_attempts} attempts" in photo.error_message
    for photo_id in fine:
        assert wait_for_status(services.catalog, photo_id).status.value == "ready"
    after = ingest_bytes(services, images.jpeg(images.scene(400, 300, seed=9)))
    assert wait_for_status(services.catalog, after).status.value == "ready"
    assert service.reconcile(services) == (0, 0)  # nothing left stuck for the reconciler


@pytest.mark.slow
def test_idle_worker_children_killed_do_not_stall_the_pool(settings: Settings, start_worker: Callable[..., Any]) -> None:
    """An idle child waits for its next task on the pool's shared pipe; billiard's stock child
    holds the pipe's read lock while it waits, so a child killed then (the OOM killer, an operator)
    took the lock with it and every other child waited for it forever. Kill every idle child: the
    replacements must still take work, on the embedded broker (the blocking pool) as elsewhere."""
    services = build_services(settings, queue=make_queue(settings))
    worker = start_worker(settings, concurrency=2)
    first = ingest_bytes(services, images.jpeg(images.scene(400, 300)))
    assert wait_for_status(services.catalog, first).status.value == "ready"
    time.sleep(1.5)  # both children back to waiting for work
    children = [int(pid) for pid in Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children").read_text().split()]
    assert len(children) == 2
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    time.sleep(3)  # the pool replaces them
    after = [ingest_bytes(services, images.jpeg(images.scene(400, 300, seed=3 + i))) for i in range(3)]
    for photo_id in after:
        assert wait_for_status(services.catalog, photo_id, timeout=60).status.value == "ready"


@pytest.mark.slow
def test_a_sigterm_to_the_whole_group_lets_the_running_photo_finish(settings: Settings, start_worker: Callable[..., Any]) -> None:
    """A terminal's Ctrl-C, systemd or ``kill -- -PID`` signal every process of the worker. Its
    children ignore SIGTERM (workers/tasks.py), so the photo in hand is finished, not lost, and the
    warm shutdown ends the worker; a child that died of it mid-report could leave a pool lock held
    and the shutdown waiting for ever."""
    services = build_services(settings, queue=make_queue(settings))
    worker = start_worker(settings, concurrency=2)
    photo_id = ingest_bytes(services, images.jpeg(images.scene(6000, 4000)))
    wait_for_status(services.catalog, photo_id, ("processing",), timeout=60)
    os.killpg(worker.proc.pid, signal.SIGTERM)
    worker.proc.wait(timeout=90)
    photo = services.catalog.get_photo(photo_id)
    assert (photo.status.value, photo.attempts) == ("ready", 1)
