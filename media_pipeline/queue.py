"""The task-queue port: how the service asks for work to be done."""

from __future__ import annotations

from typing import Any, Protocol

from media_pipeline.errors import QueueUnavailable


class TaskQueue(Protocol):
    def enqueue_process(self, photo_id: str) -> None: ...

    def enqueue_reprocess(self, job_id: str, photo_ids: list[str]) -> None: ...

    def check(self) -> None: ...

    def depths(self) -> dict[str, int]:
        """Messages waiting, by queue name."""


class CeleryQueue:
    """Sends tasks by name, so the API never imports the worker's code."""

    def __init__(self, app: Any, task_name: str, queue: str, reprocess_task: str = "workers.tasks.reprocess_photos",
                 reprocess_queue: str = "reprocess", photos_per_message: int = 20) -> None:
        self.app = app
        self.task_name = task_name
        self.queue = queue
        self.reprocess_task = reprocess_task
        self.reprocess_queue = reprocess_queue
        self.photos_per_message = photos_per_message

    def enqueue_reprocess(self, job_id: str, photo_ids: list[str]) -> None:
        """A batch on the reprocess queue, ``photos_per_message`` ids a message, over one producer
        connection: publishing costs ~0.6 ms a message, so one message per photo would cap the rate."""
        settings = self.app.conf.media_pipeline_settings
        # Small batches (a small job, the tail of a big one) are spread over at least 8 messages so
        # every worker process gets a share.
        step = max(1, min(self.photos_per_message, len(photo_ids) // 8))
        try:
            with self.app.producer_or_acquire() as producer:
                for i in range(0, len(photo_ids), step):
                    chunk = photo_ids[i : i + step]
                    self.app.send_task(
                        self.reprocess_task, args=[job_id, chunk], queue=self.reprocess_queue, producer=producer, retry=True,
                        soft_time_limit=settings.task_soft_time_limit * len(chunk), time_limit=settings.task_time_limit * len(chunk),
                    )
        except Exception as exc:
            raise QueueUnavailable(f"cannot queue reprocess batch: {exc}") from exc

    def enqueue_process(self, photo_id: str) -> None:
        try:
            self.app.send_task(
                self.task_name,
                args=[photo_id],
                queue=self.queue,
                retry=True,
                retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
            )
        except Exception as exc:  # kombu raises a zoo of connection errors
            raise QueueUnavailable(f"cannot queue photo {photo_id}: {exc}") from exc

    def check(self) -> None:
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:
            raise QueueUnavailable(f"broker unreachable: {exc}") from exc

    def depths(self) -> dict[str, int]:
        """A passive declare answers the count on every transport (AMQP, Redis, the folder)."""
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
                channel = conn.default_channel
                return {name: int(channel.queue_declare(queue=name, passive=True).message_count)
                        for name in (self.queue, self.reprocess_queue)}
        except Exception as exc:
            raise QueueUnavailable(f"cannot read queue depths: {exc}") from exc


class RecordingQueue:
    """A queue that only records what was asked; for tests and ``render``."""

    def __init__(self) -> None:
        self.enqueued: list[str] = []
        self.reprocess: list[tuple[str, str]] = []
        self.fail_with: Exception | None = None

    def enqueue_reprocess(self, job_id: str, photo_ids: list[str]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.reprocess.extend((job_id, pid) for pid in photo_ids)

    def enqueue_process(self, photo_id: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.enqueued.append(photo_id)

    def check(self) -> None:
        if self.fail_with is not None:
            raise QueueUnavailable(str(self.fail_with))

    def depths(self) -> dict[str, int]:
        self.check()
        return {"photos": len(self.enqueued), "reprocess": len(self.reprocess)}
