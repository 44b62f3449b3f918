"""`media-pipeline serve` as `make run` starts it: real HTTP under gunicorn, a real worker; and how it
stops: Ctrl-C (once or again and again), a SIGTERM to `make run`'s group, a SIGKILL of serve."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from media_pipeline.supervisor import GRACE_SECONDS
from tests import images
from tests.conftest import REPO, free_port, require

pytestmark = pytest.mark.slow


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    if chunked:
        conn.putrequest(method, path)
        conn.putheader("Transfer-Encoding", "chunked")
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        data = body or b""
        for i in range(0, len(data), 4096):
            piece = data[i : i + 4096]
            conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        conn.send(b"0\r\n\r\n")
    else:
        conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def start(tmp_path: Path, command: list[str], env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """``command`` in a process group of its own, as a terminal or a supervisor starts it, with
    the service on a free port and data in ``tmp_path``; returns once the API answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MP_")} | {"MP_PORT": str(port)} | (env_extra or {})
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                return proc, port
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail((tmp_path / "serve.log").read_text())
        time.sleep(0.3)


def serve_command(tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "media_pipeline.cli", "serve", "--data-dir", str(tmp_path / "var")]


def test_serve_runs_api_and_worker_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    proc, port = start(tmp_path, serve_command(tmp_path))
    try:
        upright = images.scene(1000, 700, seed=21)
        status, headers, body = request(port, "POST", "/v1/photos", images.jpeg(upright), {"Content-Type": "image/jpeg"})
        assert status == 202, body
        photo_id = json.loads(body)["id"]
        status, _, body = request(port, "POST", "/v1/photos", images.jpeg(images.scene(300, 200)), chunked=True)
        assert status == 202, body
        status, _, body = request(port, "POST", "/v1/photos", images.forged_png(80_000, 80_000), chunked=True)
        assert status == 422 and json.loads(body)["error"]["code"] == "too_many_pixels"

        deadline = time.monotonic() + 90
        while True:
            status, _, body = request(port, "GET", f"/v1/photos/{photo_id}")
            photo = json.loads(body)
            if photo["status"] in ("ready", "failed"):
                break
            assert time.monotonic() < deadline, photo
            time.sleep(0.3)
        assert photo["status"] == "ready", photo
        avif = next(r for r in photo["renditions"] if r["format"] == "avif" and r["width"] == 640)
        status, headers, data = request(port, "GET", avif["url"])
        assert status == 200 and headers["content-type"] == "image/avif"
        assert images.mean_abs_diff(images.decode(data), upright) < 6
        assert (tmp_path / "var" / "catalog.db").exists() and (tmp_path / "var" / "storage" / "objects").is_dir()
        # /metrics sums every process of the host: gunicorn's workers and the Celery children.
        status, headers, body = request(port, "GET", "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        samples = metric_samples(body.decode())
        assert samples[("mp_uploads_total", (("outcome", "accepted"),))] == 2
        assert samples[("mp_uploads_total", (("outcome", "rejected"),))] == 1
        assert samples[("mp_api_errors_total", (("code", "too_many_pixels"), ("status", "422")))] == 1
        assert samples[("mp_photos_processed_total", (("outcome", "done"),))] >= 1  # written by a worker child
        assert samples[("mp_step_seconds_count", (("step", "encode"),))] >= 2
        assert samples[("mp_bytes_written_total", (("kind", "rendition"),))] > 0
        assert ("mp_queue_depth", (("queue", "photos"),)) in samples
        tree = service_tree(proc.pid)
        assert len([p for p in tree.values() if p.ppid == proc.pid]) == 3  # the API server, the worker and the reconciler
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the whole group
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, (tmp_path / "serve.log").read_text()
    assert_nothing_left(tree, "serve left processes behind")


def test_serve_with_webhook_urls_runs_the_deliverer_and_a_photo_ready_reaches_the_receiver(tmp_path: Path) -> None:
    from standardwebhooks.webhooks import Webhook

    from tests.front import PurgeHook
    from tests.test_webhooks import SECRET

    receiver = PurgeHook()
    proc, port = start(tmp_path, serve_command(tmp_path), {"MP_WEBHOOK_URLS": receiver.url, "MP_WEBHOOK_SECRET": SECRET})
    try:
        tree = service_tree(proc.pid)
        assert len([p for p in tree.values() if p.ppid == proc.pid]) == 4  # API, worker, reconciler, webhook deliverer
        status, _, body = request(port, "POST", "/v1/photos", images.jpeg(images.scene(500, 400, seed=22)), {"Content-Type": "image/jpeg"})
        assert status == 202, body
        assert receiver.arrived.wait(90), (tmp_path / "serve.log").read_text()
        headers, delivered = receiver.received[0]
        event = Webhook(SECRET).verify(delivered, dict(headers.items()))
        assert event["type"] == "photo.ready" and event["data"]["photo"]["id"] == json.loads(body)["id"]
        deadline = time.monotonic() + 30
        while True:  # the deliverer records the 2xx just after the receiver answered
            samples = metric_samples(request(port, "GET", "/metrics")[2].decode())
            if samples.get(("mp_webhook_deliveries_total", (("outcome", "delivered"),))) == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert samples[("mp_webhook_deliveries_total", (("outcome", "delivered"),))] == 1  # counted in the deliverer's process
        assert samples[("mp_events_oldest_undelivered_seconds", ())] == 0
        os.killpg(proc.pid, signal.SIGTERM)
        stop_and_check(proc, tree, tmp_path)
    finally:
        receiver.stop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_serve_with_the_nginx_front_serves_renditions_through_it_and_stops_it(tmp_path: Path) -> None:
    if shutil.which("nginx") is None:
        require(False, "nginx (apt-get install nginx-light)")
    front = free_port()
    proc, port = start(tmp_path, [*serve_command(tmp_path), "--front", "nginx"], {"MP_FRONT_LISTEN": f"127.0.0.1:{front}"})
    tree = service_tree(proc.pid)
    try:
        status, _, body = request(front, "POST", "/v1/photos", images.jpeg(images.scene(500, 400)), {"Content-Type": "image/jpeg"})
        assert status == 202, body
        photo_id = json.loads(body)["id"]
        deadline = time.monotonic() + 90
        while (photo := json.loads(request(front, "GET", f"/v1/photos/{photo_id}")[2]))["status"] not in ("ready", "failed"):
            assert time.monotonic() < deadline, photo
            time.sleep(0.3)
        url = photo["renditions"][0]["url"]
        status, headers, data = request(front, "GET", url)
        assert status == 200 and headers["server"] == "nginx" and data == request(port, "GET", url)[2]
        tree = service_tree(proc.pid)
        assert len([p for p in tree.values() if p.ppid == proc.pid]) == 4  # API, worker, reconciler, nginx
    finally:
        os.killpg(proc.pid, signal.SIGINT)
    stop_and_check(proc, tree, tmp_path)


def test_serve_front_nginx_says_so_when_nginx_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MP_")} | {"PATH": str(Path(sys.executable).parent)}
    run = subprocess.run([*serve_command(tmp_path), "--front", "nginx"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "no nginx binary on PATH" in run.stderr


def test_make_run_stops_every_process_on_a_sigterm_to_its_group(tmp_path: Path) -> None:
    """What `timeout make run` or a process supervisor does. GNU make passes the SIGTERM on to
    serve, so serve gets it twice, the second while it stops its children."""
    # -o install: make uses the venv that runs this test and never rebuilds it from here.
    make = ["make", "--no-print-directory", "-o", "install", "run", f"VENV={sys.prefix}", f"DATA_DIR={tmp_path / 'var'}"]
    proc, _ = start(tmp_path, make)
    tree = service_tree(proc.pid)
    assert any(p.cmd.endswith(f"serve --data-dir {tmp_path / 'var'}") for p in tree.values()), tree
    assert max(generation(tree, pid) for pid in tree) >= 3  # make, serve, gunicorn and Celery, their workers
    os.killpg(proc.pid, signal.SIGTERM)
    stop_and_check(proc, tree, tmp_path, code=None)  # make ends itself with the signal it was sent, whatever serve said


def test_ctrl_c_pressed_again_and_again_does_not_break_off_the_stop(tmp_path: Path) -> None:
    proc, _ = start(tmp_path, serve_command(tmp_path))
    tree = service_tree(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + GRACE_SECONDS + 10
    for n in itertools.count():  # more, every 20 ms, SIGINT and SIGTERM in turn, until serve is gone
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGTERM if n % 2 else signal.SIGINT)
    log = stop_and_check(proc, tree, tmp_path)
    assert "already stopping" in log  # the extra signals did arrive while serve stopped its children


def test_the_children_and_theirs_stop_when_serve_is_killed(tmp_path: Path) -> None:
    proc, _ = start(tmp_path, serve_command(tmp_path))
    tree = service_tree(proc.pid)
    assert max(generation(tree, pid) for pid in tree) >= 2  # gunicorn's and Celery's own children are in it
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + GRACE_SECONDS + 10
    while left_behind(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_nothing_left(tree, (tmp_path / "serve.log").read_text())


STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # ignored signals stay ignored across exec: the grandchild too
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
time.sleep(120)
"""
SUPERVISE = """
import sys
from media_pipeline.supervisor import Supervisor
polite = [sys.executable, "-c", "import time; time.sleep(120)"]
sys.exit(Supervisor({"stubborn": [sys.executable, "-c", sys.argv[1]], "polite": polite}, grace=1.0).run())
"""


def test_a_child_that_ignores_sigterm_is_killed_with_its_children_after_the_grace_period(tmp_path: Path) -> None:
    with open(tmp_path / "serve.log", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", SUPERVISE, STUBBORN], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 20
    tree = service_tree(proc.pid)
    try:
        while max(generation(tree, pid) for pid in tree) < 2:  # until the grandchild is up
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
            tree = service_tree(proc.pid)
        time.sleep(0.5)  # the stubborn child is past its signal() call
        os.kill(proc.pid, signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(timeout=15)
        took = time.monotonic() - started
        left = left_behind(tree)
    finally:  # after that look, and whatever failed: nothing of this test outlives it
        for group in {p.pgid for p in tree.values()}:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
    log = (tmp_path / "serve.log").read_text()
    assert code == 1, log  # non-zero: a child had to be killed
    assert "the stubborn (pid" in log and "did not stop within 1 s" in log and "the polite" not in log, log
    assert 1.0 <= took < 4, took  # the grace period, then no longer
    assert left == [], log


def stop_and_check(proc: subprocess.Popen[bytes], tree: dict[int, Proc], tmp_path: Path, code: int | None = 0) -> str:
    """After a stop signal: the process exits within the grace period with ``code`` (None: any),
    serve killed no child (it would say so), and nothing of the service is left. Returns the log."""
    try:
        status = proc.wait(timeout=GRACE_SECONDS + 10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    log = (tmp_path / "serve.log").read_text()
    assert "stopping" in log and "did not stop" not in log, log
    assert code is None or status == code, log
    assert_nothing_left(tree, log)
    return log


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    started: int  # clock ticks after boot: a pid used again later is another process
    cmd: str


def processes() -> dict[int, Proc]:
    """Every live process (zombies are dead: their parent has yet to collect them)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if fields[0] != "Z":
            pid = int(stat.parent.name)
            found[pid] = Proc(pid, int(fields[1]), int(fields[2]), int(fields[19]), cmd)
    return found


def service_tree(root: int) -> dict[int, Proc]:
    """``root`` and every process below it."""
    table = processes()
    tree = {root: table[root]}
    while True:
        below = {pid: p for pid, p in table.items() if p.ppid in tree and pid not in tree}
        if not below:
            return tree
        tree.update(below)


def generation(tree: dict[int, Proc], pid: int) -> int:
    """0 for the root, 1 for its children and so on."""
    n = 0
    while tree[pid].ppid in tree:
        pid, n = tree[pid].ppid, n + 1
    return n


def assert_nothing_left(tree: dict[int, Proc], context: str) -> None:
    left = left_behind(tree)
    for group in {p.pgid for p in left}:
        with contextlib.suppress(ProcessLookupError):  # a failing test does not leave the service running
            os.killpg(group, signal.SIGKILL)
    assert left == [], context


def left_behind(tree: dict[int, Proc]) -> list[Proc]:
    """Processes of the tree still alive, found by pid (the same process, not a pid used again)
    and by process group, which also holds anything they started later and any orphan of theirs."""
    groups = {p.pgid for p in tree.values()}
    return [p for p in processes().values() if p.pgid in groups or (p.pid in tree and tree[p.pid].started == p.started)]
