"""Thin tasks: they take an id, call one service function, and decide only about retries."""

from __future__ import annotations

import logging
import signal
from typing import Any, Callable

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import setup_logging, task_prerun, worker_process_init
from celery.worker.request import Request

from media_pipeline import logs, metrics, reprocess, service
from media_pipeline.errors import MediaPipelineError
from media_pipeline.jobs import ReprocessJob
from workers.celery_app import PROCESS_TASK, REPROCESS_TASK, app, make_queue

log = logging.getLogger(__name__)
_services: service.Services | None = None


def services() -> service.Services:
    global _services
    if _services is None:
        settings = app.conf.media_pipeline_settings
        _services = service.build_services(settings, queue=make_queue(settings, app))
    return _services


@setup_logging.connect
def _our_logging(**_: object) -> None:
    """Celery's own lines go through our handler too (text or JSON, with the photo id)."""
    settings = app.conf.media_pipeline_settings
    logs.configure(settings.log_level, settings.log_format)


@task_prerun.connect
def _photo_in_logs(task: Task | None = None, args: tuple | None = None, **_: object) -> None:
    """Celery's own lines about a task ("succeeded in …") carry the photo id too: a child runs
    one task at a time, so the id stays current until the next task starts."""
    is_photo_task = task is not None and task.name == PROCESS_TASK and args
    logs.current_photo_id.set(args[0] if is_photo_task else None)


@worker_process_init.connect
def _fresh_services_per_child(**_: object) -> None:
    global _services
    _services = None  # connections opened before the fork are never shared


@worker_process_init.connect
def _children_leave_sigterm_to_the_parent(**_: object) -> None:
    """A SIGTERM to the whole process group (a terminal, systemd's cgroup kill, ``kill -- -PID``)
    reaches the pool's children too, and Celery lets it kill them at once. A child that died so
    while writing its result held a lock of the pipe every child reports through, and the
    parent's shutdown waited on that lock forever. Children ignore it: the parent's warm shutdown
    stops each after its current task, a cold one too (it would have lost the task anyway), and a
    hard time limit still ends a stuck child (billiard follows its SIGTERM with SIGKILL)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _run(task: Task, photo_id: str, work: Callable[[], str]) -> str:
    """The retry policy shared by the tasks: transient errors retry with exponential backoff up to
    a bound; anything else, and running out of retries, ends the photo ``failed`` with a reason."""
    settings = app.conf.media_pipeline_settings
    try:
        return work()
    except SoftTimeLimitExceeded:
        service.fail_photo(services(), photo_id, "timeout", f"processing took longer than {settings.task_soft_time_limit} s")
        return service.Outcome.FAILED.value
    except MediaPipelineError as exc:
        if not exc.transient:
            service.fail_photo(services(), photo_id, exc.code, exc.message)
            return service.Outcome.FAILED.value
        if task.request.retries >= settings.task_max_retries:
            service.fail_photo(services(), photo_id, "transient_error", f"gave up after {task.request.retries} retries: {exc.message}")
            return service.Outcome.FAILED.value
        delay = settings.task_retry_backoff * 2**task.request.retries
        log.warning("transient error, retrying in %.1f s: %s", delay, exc, extra={"photo_id": photo_id})
        _hand_back(lambda: services().catalog.release(photo_id))
        raise task.retry(exc=exc, countdown=delay, max_retries=settings.task_max_retries) from exc
    except Exception as exc:
        # A bug, not a bad image: the photo still ends with a reason instead of hanging in `processing`.
        log.exception("processing crashed", extra={"photo_id": photo_id})
        service.fail_photo(services(), photo_id, "internal", f"{type(exc).__name__}: {exc}"[:500])
        return service.Outcome.FAILED.value


class HandBackWhenCutShort(Request):
    """Celery acknowledges a task killed at its hard time limit (and a child that crashed before
    it reported is seen the same way), which would leave the photo in ``processing`` until the
    reconciler's deadline. Hand the message back instead, as for a worker that died: the next
    start counts the attempt, and MP_MAX_ATTEMPTS ends the loop."""

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> None:
        exc = exc_info.exception
        exc = exc.exc if isinstance(exc, ExceptionWithTraceback) else exc
        if isinstance(exc, (TimeLimitExceeded, WorkerLostError)) and not self.acknowledged:
            log.error("task cut short (%r): its message goes back to the queue", exc)
            self.reject(requeue=True)  # first, so what Celery does next cannot acknowledge it
        super().on_failure(exc_info, send_failed_event, return_ok)


class PipelineTask(Task):
    Request = HandBackWhenCutShort


@app.task(bind=True, base=PipelineTask, name=PROCESS_TASK, acks_late=True, reject_on_worker_lost=True)
def process_photo(self: Task, photo_id: str) -> str:
    with logs.photo_context(photo_id), metrics.TASK_SECONDS.labels("process_photo").time():
        outcome = _run(self, photo_id, lambda: service.process_photo(services(), photo_id).value)
    metrics.PHOTOS_PROCESSED.labels(outcome).inc()
    return outcome


_jobs: dict[str, ReprocessJob] = {}


@app.task(bind=True, base=PipelineTask, name=REPROCESS_TASK, acks_late=True, reject_on_worker_lost=True)
def reprocess_photos(self: Task, job_id: str, photo_ids: list[str], attempt: int = 0) -> dict[str, int]:
    """Several photos of a job per message (enqueueing one message per photo would cap the rate
    at what Celery can publish). Each photo's outcome goes to the job's ledger; photos that hit a
    transient error go back on the queue together, with backoff, up to MP_TASK_MAX_RETRIES."""
    with metrics.TASK_SECONDS.labels("reprocess_photos").time():
        return _reprocess_batch(self, job_id, photo_ids, attempt)


def _reprocess_batch(task: Task, job_id: str, photo_ids: list[str], attempt: int) -> dict[str, int]:
    settings = app.conf.media_pipeline_settings
    svc = services()
    job = _jobs.get(job_id) or svc.catalog.get_job(job_id)
    if job is None:
        return {}
    _jobs[job_id] = job
    outcomes: dict[str, int] = {}
    retry: list[str] = []
    for photo_id in photo_ids:
        token = logs.current_photo_id.set(photo_id)
        try:
            starts = svc.catalog.start_item(job_id, photo_id)
            if starts is None:
                continue  # a redelivered batch: this one already has its outcome
            if starts > settings.max_attempts:
                # Every earlier start died with its worker: a poison file must not loop the batch.
                log.warning("photo abandoned in the job after %d attempts", starts - 1)
                svc.catalog.record_item(job_id, photo_id, "failed", "abandoned", 0, 0, 0.0)
                outcome = "failed"
            else:
                outcome = reprocess.reprocess_one(svc, job, photo_id)
        except SoftTimeLimitExceeded:
            service.fail_photo(svc, photo_id, "timeout", "reprocessing took longer than its time limit")
            outcome = _record_failure(job_id, photo_id)
        except MediaPipelineError as exc:
            if exc.transient and attempt < settings.task_max_retries:
                retry.append(photo_id)
                _hand_back(lambda: svc.catalog.release_item(job_id, photo_id))
                continue
            code = "transient_error" if exc.transient else exc.code
            service.fail_photo(svc, photo_id, code, exc.message)
            outcome = _record_failure(job_id, photo_id)
        except Exception as exc:  # a bug: the photo ends failed with a reason, the batch goes on
            log.exception("reprocessing crashed", extra={"photo_id": photo_id})
            service.fail_photo(svc, photo_id, "internal", f"{type(exc).__name__}: {exc}"[:500])
            outcome = _record_failure(job_id, photo_id)
        finally:
            logs.current_photo_id.reset(token)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if retry:
        delay = settings.task_retry_backoff * 2**attempt
        log.warning("transient errors, retrying %d photos in %.1f s", len(retry), delay)
        task.apply_async(args=[job_id, retry, attempt + 1], countdown=delay, **time_limits(settings, len(retry)))
    return outcomes


def _hand_back(release: Callable[[], None]) -> None:
    """An attempt that ended in a transient error is not one cut short; if the catalog is the thing
    that is down, the count stays one high, which only brings MP_MAX_ATTEMPTS a little closer."""
    try:
        release()
    except MediaPipelineError as exc:
        log.warning("could not hand the attempt back: %s", exc)


def _record_failure(job_id: str, photo_id: str) -> str:
    photo = services().catalog.get_photo(photo_id)
    services().catalog.record_item(job_id, photo_id, "failed", photo.error_code if photo else None, 0, 0, 0.0)
    return "failed"


def time_limits(settings: object, photos: int) -> dict[str, int]:
    return {
        "soft_time_limit": getattr(settings, "task_soft_time_limit") * photos,
        "time_limit": getattr(settings, "task_time_limit") * photos,
    }
