"""The prefork pool, with children that do not hold the task pipe's lock while they wait.

With a broker that has no event loop (the embedded filesystem broker), Celery runs billiard's
blocking pool: every child reads tasks from one shared pipe under one lock, and billiard's child
takes that lock and then blocks in ``recv`` until a task arrives. A child killed while it waits
(the OOM killer, an operator, a test) never releases it, and every other child, and each
replacement the pool forks, waits for it forever: the worker is alive and takes no work. Here a
child waits for data with ``poll`` first and takes the lock only to read a message that is there,
so the lock is held for microseconds, not for the whole idle time. (Brokers with an event loop,
Redis and RabbitMQ, use Celery's AsynPool, which gives each child its own pipe.)
"""

from __future__ import annotations

from typing import Any, Callable

from billiard import pool as billiard_pool
from billiard.common import pickle_loads
from celery.concurrency import prefork


class Child(billiard_pool.Worker):
    def _make_recv_method(self, conn: Any) -> Callable[..., tuple[bool, Any]]:
        reader, lock = getattr(conn, "_reader", None), getattr(conn, "_rlock", None)
        if reader is None or lock is None:
            return super()._make_recv_method(conn)

        def receive(timeout: float) -> tuple[bool, Any]:
            if not reader.poll(timeout):
                return False, None
            if not lock.acquire(True, timeout):
                return False, None
            try:
                if not reader.poll(0):
                    return False, None  # a sibling read it first
                payload = reader.recv_bytes()
            finally:
                lock.release()
            return True, pickle_loads(payload)

        return receive


class BlockingPool(billiard_pool.Pool):
    Worker = Child


class TaskPool(prefork.TaskPool):
    BlockingPool = BlockingPool
