"""The Celery app: ``make_celery(settings)``; ``app`` is what ``celery -A workers.celery_app`` finds."""

from __future__ import annotations

from urllib.parse import urlparse

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

from config.settings import Settings
from media_pipeline.queue import CeleryQueue

PHOTOS_QUEUE = "photos"
PROCESS_TASK = "workers.tasks.process_photo"
REPROCESS_QUEUE = "reprocess"
REPROCESS_TASK = "workers.tasks.reprocess_photos"
TRANSPORT_ALIASES.setdefault("mpfs", "workers.fs_transport:Transport")


def make_celery(settings: Settings) -> Celery:
    broker = settings.broker_url
    options: dict[str, object] = {}
    if urlparse(broker).scheme == "filesystem":
        queue_dir = settings.broker_dir / "queue"
        control_dir = settings.broker_dir / "control"
        for folder in (queue_dir, control_dir):
            folder.mkdir(parents=True, exist_ok=True)
        broker = "mpfs://"
        options = {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "control_folder": str(control_dir),
            "polling_interval": 0.02,
        }
    app = Celery("media_pipeline", broker=broker, include=["workers.tasks"])
    app.conf.update(
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_default_queue=PHOTOS_QUEUE,
        # Reprocessing has its own queue so a backlog of millions never sits in front of uploads.
        task_routes={PROCESS_TASK: {"queue": PHOTOS_QUEUE}, REPROCESS_TASK: {"queue": REPROCESS_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A task is acknowledged only after it ran; a worker that dies mid-task gives it back.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # How long the pool waits for a dead child's last report before it calls the task lost
        # (Celery's default is 10 s). The report travels a local pipe, so a second is plenty, and
        # a crashed or killed child's photo goes back to the queue that much sooner.
        worker_lost_wait=1.0,
        worker_prefetch_multiplier=1,
        # Prefork, with children that survive a sibling killed while idle (see workers/pool.py).
        worker_pool="workers.pool:TaskPool",
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        worker_max_tasks_per_child=500,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # Remote control needs a broadcast exchange the filesystem broker handles poorly.
        worker_enable_remote_control=not options,
        broker_pool_limit=4,
    )
    app.conf.media_pipeline_settings = settings
    return app


def make_queue(settings: Settings, app: Celery | None = None) -> CeleryQueue:
    """The task-queue port over Celery, for an entry point to hand to ``service.build_services``:
    on ``app`` (the worker's own), or on a new app for ``settings`` (the API, the CLI)."""
    return CeleryQueue(app or make_celery(settings), PROCESS_TASK, PHOTOS_QUEUE, REPROCESS_TASK, REPROCESS_QUEUE)


app = make_celery(Settings.from_env())
