"""`media-pipeline serve` as `make run` starts it: real HTTP under gunicorn, a real worker, Ctrl-C."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import images
from tests.conftest import REPO, free_port

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
        for i in range(0, len(body or b""), 4096):
            piece = body[i : i + 4096]
            conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        conn.send(b"0\r\n\r\n")
    else:
        conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def test_serve_runs_api_and_worker_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MP_")}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "media_pipeline.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path / "var")],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.3)

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
        children = child_pids(proc.pid)
        assert len(children) >= 3  # the API server, the worker and the reconciler
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the whole group
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, (tmp_path / "serve.log").read_text()
    assert [pid for pid in children if alive(pid)] == [], "serve left processes behind"


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def child_pids(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
