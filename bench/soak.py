"""Load and soak: uploads at 70% of measured capacity for a fixed time, with faults injected.

    .venv/bin/python bench/soak.py [--minutes 10] [--load 0.7] [--megapixels 1]

Everything on loopback: the S3 server (moto, its own process) behind ``tests/faulty_proxy.py``,
``media-pipeline api`` (gunicorn) and ``media-pipeline worker --concurrency 2`` on the embedded
broker and SQLite. First the capacity: two bursts of 30 uploads, timed from the first 202 to the
last ``ready``, one with S3 healthy and one with 10% of its requests failing (each retry backs
off, so the second is lower; the load is a share of it unless ``--load-of clean``). Then an
open-loop client (the schedule does not wait for answers) uploads distinct
JPEGs at ``--load`` x that rate, retrying 503s with the same Idempotency-Key as a client app
would, while: S3 answers 10% of requests with 503 SlowDown or a TCP reset, goes away for 5 s every
2 minutes, and a worker child is SIGKILLed every minute. Every 30 s a line: uploads, 503s, other
errors, upload p50/p99 in that window, photos ready/failed/in flight, RSS and open files of the
API and worker process trees. At the end, the drain time and ``media-pipeline check``. Prints;
asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.renditions import photo_jpeg  # noqa: E402
from tests.conftest import free_port, port_open  # noqa: E402
from tests.faulty_proxy import FaultyProxy  # noqa: E402


class Service:
    """moto, the proxy, the API and the worker, each a real process (the proxy a thread)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        s3_port, self.api_port = free_port(), free_port()
        self.moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(s3_port)
        self.proxy = FaultyProxy(f"http://127.0.0.1:{s3_port}", seed=11)
        self.proxy.start()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MP_")},
            "MP_DATA_DIR": str(work / "var"), "MP_PORT": str(self.api_port), "MP_STORAGE_BACKEND": "s3",
            "MP_S3_BUCKET": "soak", "MP_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}", "MP_S3_ADDRESSING_STYLE": "path",
            "MP_S3_ACCESS_KEY_ID": "testing", "MP_S3_SECRET_ACCESS_KEY": "testing", "MP_TASK_RETRY_BACKOFF": "0.5",
            "MP_TASK_MAX_RETRIES": "8", "MP_RATE_LIMIT": "0", "MP_STUCK_AFTER_SECONDS": "60",
        }
        from config.settings import Settings
        from media_pipeline.storage.s3 import S3Storage

        S3Storage.from_settings(Settings.from_env(self.env)).ensure_bucket()  # straight to S3, before the proxy is used
        self.env["MP_S3_ENDPOINT_URL"] = self.proxy.url
        me = [sys.executable, "-m", "media_pipeline.cli"]
        self.api = subprocess.Popen([*me, "api"], env=self.env, cwd=REPO, start_new_session=True,
                                    stdout=open(work / "api.log", "wb"), stderr=subprocess.STDOUT)
        self.worker = subprocess.Popen([*me, "worker", "--concurrency", "2"], env=self.env, cwd=REPO, start_new_session=True,
                                       stdout=open(work / "worker.log", "wb"), stderr=subprocess.STDOUT)
        self.reconciler = subprocess.Popen([*me, "reconcile", "--every", "30"], env=self.env, cwd=REPO, start_new_session=True,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.api_port)
        deadline = time.monotonic() + 60
        while b"ready." not in (work / "worker.log").read_bytes():
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in (self.api, self.worker, self.reconciler):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in (self.api, self.worker, self.reconciler):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.proxy.stop()
        self.moto.kill()

    def tree(self, root: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(stat.parent.name))
        found, todo = [], [root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def usage(self, root: int) -> tuple[float, int]:
        """(RSS MiB, open files) summed over a process tree."""
        rss, files = 0.0, 0
        for pid in self.tree(root):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1]) / 1024
                files += len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                continue
        return rss, files

    def kill_a_worker_child(self) -> bool:
        children = [pid for pid in self.tree(self.worker.pid) if pid != self.worker.pid]
        if not children:
            return False
        try:
            os.kill(random.choice(children), signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 60
    while not port_open("127.0.0.1", port):
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.1)


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.refused = 0  # 503s, retried
        self.errors: dict[str, int] = {}
        self.accepted: list[str] = []

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            return answer.status, answer.read()
        finally:
            conn.close()

    def upload(self, data: bytes, key: str) -> None:
        for _ in range(20):
            started = time.monotonic()
            try:
                status, body = self.request("POST", "/v1/photos", data, {"Content-Type": "image/jpeg", "Idempotency-Key": key})
            except OSError as exc:
                self._error(type(exc).__name__)
                time.sleep(0.5)
                continue
            with self.lock:
                self.latencies.append(time.monotonic() - started)
            if status == 202:
                with self.lock:
                    self.accepted.append(json.loads(body)["id"])
                return
            if status in (503, 409):  # 409: the same key is still in flight from a retry
                with self.lock:
                    self.refused += 1
                time.sleep(0.5)
                continue
            self._error(str(status))
            return
        self._error("gave_up")

    def _error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def take_latencies(self) -> list[float]:
        with self.lock:
            taken, self.latencies = self.latencies, []
        return taken


def statuses(work: Path, ids: list[str]) -> dict[str, int]:
    from config.settings import Settings
    from media_pipeline.catalog import make_catalog

    catalog = make_catalog(Settings.from_env({}, data_dir=work / "var"))
    counts: dict[str, int] = {}
    for photo_id in ids:
        photo = catalog.get_photo(photo_id)
        status = photo.status.value if photo else "missing"
        counts[status] = counts.get(status, 0) + 1
    return counts


def capacity(client: Client, photos: list[bytes], work: Path, label: str) -> float:
    """Photos per second from a burst of uploads: first upload to last ``ready``."""
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.upload(photos[i] + label.encode(), f"{label}-{i}"), range(len(photos))))
    ids = list(client.accepted)
    while statuses(work, ids).get("ready", 0) + statuses(work, ids).get("failed", 0) < len(ids):
        time.sleep(0.5)
    client.accepted.clear()
    client.take_latencies()
    return len(ids) / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.7, help="fraction of the measured capacity")
    parser.add_argument("--megapixels", type=float, default=1.0)
    parser.add_argument("--distinct", type=int, default=60, help="distinct source photos (each upload re-encodes one)")
    parser.add_argument("--load-of", choices=("faults", "clean"), default="faults",
                        help="the capacity --load is a share of: measured with 10%% of S3 requests failing, or without")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mp-soak-"))
    width = int((args.megapixels * 1e6 * 4 / 3) ** 0.5)
    sources = [photo_jpeg(work / f"src-{i}.jpg", width, width * 3 // 4, seed=i).read_bytes() for i in range(max(60, args.distinct))]
    service = Service(work)
    client = Client(service.api_port)
    try:
        clean = capacity(client, sources[:30], work, "calibrate")
        # Every S3 request fails 10% of the time in the soak, and each retry backs off, so the
        # service's capacity under that fault is what the load is a share of (--load-of clean
        # takes the fault-free figure instead, which the service cannot sustain with faults).
        service.proxy.faults(rate=0.10)
        faulty = capacity(client, sources[30:60], work, "calibrate-faults")
        rate = clean if args.load_of == "clean" else faulty
        target = rate * args.load
        print(f"capacity {clean:.2f} photos/s without faults, {faulty:.2f} with 10% of S3 requests failing; soaking at "
              f"{target:.2f} uploads/s ({args.load:.0%} of the {args.load_of} figure) for {args.minutes:g} min with faults",
              flush=True)
        print(f"{'t s':>5} {'sent':>5} {'202':>5} {'503':>5} {'errors':>7} {'p50 ms':>7} {'p99 ms':>7} {'ready':>6} "
              f"{'failed':>6} {'flight':>6} {'API MiB':>8} {'API fds':>7} {'wkr MiB':>8} {'wkr fds':>7}  events", flush=True)
        pool = ThreadPoolExecutor(32)
        started = time.monotonic()
        end = started + args.minutes * 60
        sent, next_report, next_kill, next_outage = 0, started + 30, started + 60, started + 120
        events: list[str] = []
        while (now := time.monotonic()) < end:
            due = int((now - started) * target)
            while sent < due:
                pool.submit(client.upload, sources[sent % len(sources)] + sent.to_bytes(4, "big"), f"soak-{sent}")
                sent += 1
            if now >= next_kill:
                events.append("killed a worker child" if service.kill_a_worker_child() else "no child to kill")
                next_kill += 60
            if now >= next_outage:
                threading.Thread(target=lambda: (service.proxy.stop(), time.sleep(5), service.proxy.start()), daemon=True).start()
                events.append("S3 down 5 s")
                next_outage += 120
            if now >= next_report:
                report_line(service, client, work, now - started, sent, events)
                events = []
                next_report += 30
            time.sleep(0.01)
        pool.shutdown(wait=True)
        service.proxy.faults(rate=0.0)
        drain_started = time.monotonic()
        ids = list(client.accepted)
        while (counts := statuses(work, ids)).get("ready", 0) + counts.get("failed", 0) < len(ids):
            if time.monotonic() - drain_started > 600:
                break
            time.sleep(1)
        report_line(service, client, work, time.monotonic() - started, sent, ["drained"])
        print(f"drain after the last upload: {time.monotonic() - drain_started:.1f} s; outcomes of {len(ids)} accepted "
              f"uploads: {counts}; client errors: {client.errors or 'none'}; faults injected: {service.proxy.injected}")
        check = subprocess.run([sys.executable, "-m", "media_pipeline.cli", "check"], env=service.env, cwd=REPO,
                               capture_output=True, text=True)
        print(f"media-pipeline check (exit {check.returncode}):\n{check.stdout.strip()}")
    finally:
        service.stop()


def report_line(service: Service, client: Client, work: Path, elapsed: float, sent: int, events: list[str]) -> None:
    latencies = sorted(client.take_latencies())
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else float("nan")
    counts = statuses(work, list(client.accepted))
    api_rss, api_fds = service.usage(service.api.pid)
    worker_rss, worker_fds = service.usage(service.worker.pid)
    flight = counts.get("queued", 0) + counts.get("processing", 0)
    print(f"{elapsed:5.0f} {sent:5d} {len(client.accepted):5d} {client.refused:5d} {sum(client.errors.values()):7d} "
          f"{p50:7.0f} {p99:7.0f} {counts.get('ready', 0):6d} {counts.get('failed', 0):6d} {flight:6d} {api_rss:8.0f} "
          f"{api_fds:7d} {worker_rss:8.0f} {worker_fds:7d}  {', '.join(events)}", flush=True)


if __name__ == "__main__":
    main()
