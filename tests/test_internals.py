"""The private parts of libraries that our code overrides or calls, checked for shape.

pyproject.toml caps these libraries below their next minor release and requirements*.lock pins
them; an upgrade (``make lock LOCK_ARGS=--upgrade``) that renames, re-signs or stops calling one
of them fails here with a message naming what moved and the file of ours that depends on it,
rather than as a worker that takes no work or a /metrics that loses counts. What the overrides
are for is tested elsewhere: tests/test_reconcile.py (idle children killed), test_workers.py
(two workers on one queue folder), test_metrics.py (folding), test_core.py (the AVIF encoder
byte for byte, an image holding its memory).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import billiard
import kombu
import pytest
from billiard import pool as billiard_pool
from celery.concurrency import prefork
from kombu.transport import TRANSPORT_ALIASES, filesystem, resolve_transport
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

from tests.conftest import REPO
from workers import fs_transport, pool

# (owner, attribute, the signature our code was written against, who depends on it and how)
SIGNATURES: list[tuple[Any, str, str, str]] = [
    (billiard_pool.Worker, "_make_recv_method", "(self, conn)",
     "workers/pool.py: Child overrides it to read the task pipe without holding its lock while idle"),
    (billiard_pool.Worker, "_make_protected_receive", "(self, conn)",
     "workers/pool.py: billiard's child gets its receive through it"),
    (filesystem.Channel, "_put", "(self, queue, payload, **kwargs)",
     "workers/fs_transport.py: Channel._put overrides it (write to a temp name, rename into place)"),
    (filesystem.Channel, "_get", "(self, queue)",
     "workers/fs_transport.py: Channel._get overrides it (claim a message by an atomic rename)"),
    (filesystem.Channel, "_size", "(self, queue)",
     "workers/fs_transport.py: Channel._size overrides it (hidden temp files are not messages)"),
    (MmapedDict, "__init__", "(self, filename, read_mode=False)",
     "media_pipeline/metrics.py: fold_exited opens the archive file with it"),
    (MmapedDict, "read_all_values_from_file", "(filename)",
     "media_pipeline/metrics.py: fold_exited reads an exited process's file with it"),
    (MmapedDict, "read_value", "(self, key)", "media_pipeline/metrics.py: fold_exited adds to the archive"),
    (MmapedDict, "write_value", "(self, key, value, timestamp)", "media_pipeline/metrics.py: fold_exited adds to the archive"),
    (MmapedDict, "close", "(self)", "media_pipeline/metrics.py: fold_exited closes the archive"),
    (MultiProcessCollector, "merge", "(files, accumulate=True)",
     "media_pipeline/metrics.py: FolderCollector sums the per-process files with it"),
]


def version_of(owner: Any) -> str:
    from importlib.metadata import version

    top = owner.__module__.split(".")[0]
    return f"{top} {version(top.replace('_', '-'))}"


@pytest.mark.parametrize("owner, name, expected, used_by", SIGNATURES,
                         ids=[f"{o.__qualname__}.{n}" for o, n, _, _ in SIGNATURES])
def test_private_methods_we_override_or_call_keep_their_signature(owner: Any, name: str, expected: str, used_by: str) -> None:
    where = f"{owner.__module__}.{owner.__qualname__}.{name} ({version_of(owner)})"
    member = inspect.getattr_static(owner, name, None)
    assert member is not None, f"{where} is gone; {used_by}"
    assert str(inspect.signature(getattr(owner, name))) == expected, (
        f"{where} is now {name}{inspect.signature(getattr(owner, name))}, not {name}{expected}; {used_by}: "
        "read the library's change and adapt our code before raising the bound in pyproject.toml")


def test_billiards_child_receives_tasks_through_our_receive() -> None:
    """The whole path a pool child takes to its next task: ``_make_child_methods`` builds
    ``wait_for_job`` from ``_make_protected_receive``, which must ask our ``_make_recv_method``,
    which must find the queue's ``_reader`` and ``_rlock`` (without them it falls back to
    billiard's receive, the one that holds the lock while idle, and says nothing)."""
    asked: list[Any] = []

    class Spy(pool.Child):
        def _make_recv_method(self, conn: Any) -> Callable[..., tuple[bool, Any]]:
            asked.append(conn)
            return super()._make_recv_method(conn)

    ctx = billiard.get_context()
    inq, outq = ctx.SimpleQueue(), ctx.SimpleQueue()  # what billiard's Pool._setup_queues makes
    for attribute in ("_reader", "_rlock", "_writer"):
        assert hasattr(inq, attribute), f"billiard's SimpleQueue has no {attribute}: workers/pool.py reads it"
    child = Spy(inq, outq)
    receive = child._make_recv_method(inq)
    assert receive.__qualname__ == "Child._make_recv_method.<locals>.receive", \
        "workers/pool.py fell back to billiard's own receive: SimpleQueue's _reader or _rlock changed"
    asked.clear()
    child._make_child_methods()
    assert asked == [inq], "billiard's child no longer gets its receive from _make_recv_method(inq): workers/pool.py is bypassed"

    task: tuple[str, tuple[Any, ...]] = ("task", (1, 0, len, ("abc",), {}))
    inq._writer.send(task)  # as the pool's Pool._quick_put sends one
    assert child.wait_for_job() == task
    assert receive(0.05) == (False, None)  # an empty pipe: billiard's loop asks again
    assert inq._rlock.acquire(False), "our receive left the task pipe's lock held"
    inq._rlock.release()


def test_billiards_pool_builds_children_from_its_worker_attribute() -> None:
    source = inspect.getsource(billiard_pool.Pool._create_worker_process)
    assert "self.Worker(" in source, \
        "billiard's Pool no longer builds children from Pool.Worker: workers/pool.py's BlockingPool.Worker = Child does nothing"
    assert pool.BlockingPool.Worker is pool.Child


def test_celerys_prefork_pool_takes_its_blocking_pool_from_the_class() -> None:
    assert inspect.getattr_static(prefork.TaskPool, "BlockingPool", None) is billiard_pool.Pool, \
        "celery's prefork TaskPool.BlockingPool is gone or no longer billiard's Pool: workers/pool.py replaces it"
    assert "self.BlockingPool" in inspect.getsource(prefork.TaskPool.on_start), \
        "celery's prefork TaskPool.on_start no longer uses self.BlockingPool: workers/pool.py's pool is not used"
    assert pool.TaskPool.BlockingPool is pool.BlockingPool


def test_kombus_virtual_channel_drives_our_filesystem_channel(tmp_path: Path) -> None:
    """Publish, count, consume and purge through kombu's public API: each reaches one of our
    overrides (or, for purge, the stock method on our file names) the way kombu calls it now."""
    queue_dir, control_dir = tmp_path / "queue", tmp_path / "control"
    queue_dir.mkdir()
    control_dir.mkdir()
    options = {"data_folder_in": str(queue_dir), "data_folder_out": str(queue_dir), "control_folder": str(control_dir)}
    with kombu.Connection(transport=fs_transport.Transport, transport_options=options) as conn:
        assert type(conn.default_channel) is fs_transport.Channel, "kombu's filesystem Transport no longer takes its Channel class attribute"
        # A name no other test used: kombu keeps the bindings it made of every virtual transport in a
        # process-wide state and skips a binding it has seen, so a queue another test bound would not
        # be bound in this control folder, and its messages would go nowhere.
        name = f"internals{uuid.uuid4().hex}"
        queue = conn.SimpleQueue(name)
        for n in range(3):  # within a millisecond: they must still come out in order
            queue.put({"n": n})
        names = sorted(os.listdir(queue_dir))
        assert len(names) == 3 and all(n.endswith(f".{name}.msg") and not n.startswith(".") for n in names), names
        assert queue.qsize() == 3, "kombu no longer counts a queue with Channel._size"
        message = queue.get(timeout=5)
        assert message.payload == {"n": 0}
        message.ack()
        assert (tmp_path / "claimed").is_dir(), "kombu's get did not go through fs_transport.Channel._get"
        assert queue.clear() == 2, "kombu's stock _purge no longer matches the message names fs_transport writes"
        queue.close()


def test_a_transport_alias_still_resolves(monkeypatch: pytest.MonkeyPatch) -> None:
    # workers/celery_app.py registers mpfs:// this way.
    monkeypatch.setitem(TRANSPORT_ALIASES, "mpfs-internals-test", "workers.fs_transport:Transport")
    assert resolve_transport("mpfs-internals-test") is fs_transport.Transport


def test_pyvips_passes_an_images_references_on_to_images_made_from_it() -> None:
    """vips.load appends the memory it reads to ``Image._references``; pyvips must hand that list
    on to every image an operation makes, or a resized image could outlive the upload's mapping."""
    import pyvips

    from media_pipeline import vips
    from media_pipeline.models import ImageFormat
    from tests import images

    image = vips.load(images.jpeg(images.scene(64, 48)), ImageFormat.JPEG)
    view = image._references[-1]
    assert isinstance(view, memoryview)
    derived = image.resize(0.5).colourspace("b-w")
    assert any(ref is view for ref in derived._references), \
        f"pyvips {pyvips.__version__} no longer passes Image._references on: media_pipeline/vips.py relies on it"


def test_prometheus_client_runs_in_multiprocess_mode_under_the_class_name_we_test(tmp_path: Path) -> None:
    """metrics.multiprocess() tells multiprocess mode by the name of prometheus_client's value
    class, and fold_exited finds a process's file as ``counter_<pid>.db``."""
    probe = ("import os; from media_pipeline import metrics; metrics.UPLOADS.labels('accepted').inc(); "
             "print(metrics.multiprocess(), os.getpid())")

    def run(env: dict[str, str]) -> tuple[str, str]:
        out = subprocess.run([sys.executable, "-c", probe], env={"PATH": "/usr/bin:/bin", **env}, cwd=REPO, check=True,
                             capture_output=True, text=True).stdout
        flag, pid = out.split()
        return flag, pid

    flag, pid = run({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert flag == "True", "prometheus_client's value class changed name: media_pipeline/metrics.py's multiprocess() is wrong"
    assert run({})[0] == "False"
    assert (tmp_path / f"counter_{pid}.db").exists(), \
        "prometheus_client names per-process files differently: media_pipeline/metrics.py's fold_exited misses them"
