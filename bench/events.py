"""Webhooks at the rate the service ingests: events delivered per second and the latency from a
photo's commit as ``ready`` to its ``photo.ready`` webhook received.

    .venv/bin/python bench/events.py [--photos 60] [--megapixels 1] [--backlog 2000]

On the embedded defaults (filesystem broker, SQLite, local storage): ``media-pipeline worker``
and ``media-pipeline webhooks`` run as processes, as ``serve`` runs them, with ``MP_WEBHOOK_URLS``
pointing at a receiver in this process that verifies each delivery with the ``standardwebhooks``
package and notes when it arrived. ``--photos`` distinct JPEGs are accepted through
``service.ingest`` at once; the workers turn them ready at the rate they sustain, and the
deliverer sends each event as it is committed.

Baselines, in this process: a plain signed POST of the same body to the same receiver (the
network and HTTP part of a delivery's latency), and the deliverer draining a backlog of
``--backlog`` events already in the outbox (what it can send per second when nothing else runs:
the headroom over the ingest rate). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from standardwebhooks.webhooks import Webhook  # noqa: E402

from bench.throughput import make_photos  # noqa: E402
from config.settings import Settings  # noqa: E402
from media_pipeline import service, webhook_signature, webhooks  # noqa: E402
from media_pipeline.catalog.events import record_event  # noqa: E402
from media_pipeline.service import SpooledUpload, build_services, new_photo_id  # noqa: E402
from workers.celery_app import make_queue  # noqa: E402

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


class Receiver:
    """Answers 204 to every POST after verifying it; keeps (arrival time, event) by event id."""

    def __init__(self) -> None:
        self.arrived: dict[str, tuple[float, dict[str, Any]]] = {}
        self.bad = 0
        self.lock = threading.Lock()
        verifier = Webhook(SECRET)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = time.time()
                try:
                    event = verifier.verify(body, dict(self.headers.items()))
                except Exception:  # noqa: BLE001 - counted: a bad signature is a result
                    with receiver.lock:
                        receiver.bad += 1
                else:
                    with receiver.lock:
                        receiver.arrived.setdefault(event["id"], (now, event))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.arrived) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(self.arrived) < count:
            raise TimeoutError(f"{len(self.arrived)} of {count} events arrived")


def start(settings: Settings, *command: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings.as_env()}
    return subprocess.Popen([sys.executable, "-m", "media_pipeline.cli", *command], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def plain_post_ms(receiver: Receiver, body: bytes, count: int = 200) -> list[float]:
    """Milliseconds of a signed POST from here to the receiver, one after the other."""
    key = webhook_signature.secret_key(SECRET)
    times = []
    for i in range(count):
        started = time.perf_counter()
        webhooks.post(receiver.url, body, webhook_signature.headers(key, f"baseline-{i}", int(time.time()), body), 10.0)
        times.append((time.perf_counter() - started) * 1000)
    return times


def ingest_run(work: Path, photos: list[Path], receiver: Receiver) -> dict[str, Any]:
    settings = Settings.from_env({}, data_dir=work / "ingest", log_level="WARNING", webhook_urls=receiver.url, webhook_secret=SECRET)
    services = build_services(settings, queue=make_queue(settings))
    worker, deliverer = start(settings, "worker"), start(settings, "webhooks")
    time.sleep(6)  # start-up is not part of the measurement
    try:
        for path in photos:
            upload = SpooledUpload.receive(io.BytesIO(path.read_bytes()), settings.tmp_dir, settings.max_upload_bytes)
            try:
                service.ingest(services, upload, None)
            finally:
                upload.close()
        deadline = time.monotonic() + 60 + 10 * len(photos)
        while sum(services.catalog.in_flight().values()) and time.monotonic() < deadline:
            time.sleep(0.5)
        events = services.catalog.events_after(0, 10_000)
        receiver.wait_for(len(events), timeout=120)
    finally:
        stop(worker)
        stop(deliverer)
    ready = [e for e in events if e.type == "photo.ready"]
    latency = [(receiver.arrived[e.id][0] - e.created_at) * 1000 for e in ready]
    arrivals = sorted(receiver.arrived[e.id][0] for e in events)
    return {"events": len(events), "ready": len(ready), "ready_per_s": len(ready) / (ready[-1].created_at - ready[0].created_at),
            "delivered_per_s": len(events) / (arrivals[-1] - arrivals[0]), "latency": latency}


def drain_run(work: Path, backlog: int, receiver: Receiver) -> float:
    """Events per second the deliverer sends from an outbox that already holds ``backlog`` events."""
    settings = Settings.from_env({}, data_dir=work / "drain", log_level="WARNING", webhook_urls=receiver.url, webhook_secret=SECRET)
    services = build_services(settings, queue=make_queue(settings))
    catalog: Any = services.catalog
    with catalog._tx() as cur:
        for _ in range(backlog):
            photo_id = new_photo_id()
            record_event(cur, "photo.ready", photo_id, {"photo": {"id": photo_id, "owner": None, "status": "ready"}}, time.time())
    ids = [e.id for e in catalog.events_after(0, backlog)]
    deliverer = start(settings, "webhooks")
    try:
        receiver.wait_for(len(receiver.arrived) + backlog, timeout=600)
    finally:
        stop(deliverer)
    arrivals = sorted(receiver.arrived[i][0] for i in ids)
    return backlog / (arrivals[-1] - arrivals[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--megapixels", type=float, default=1.0)
    parser.add_argument("--backlog", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mp-events-"))
    receiver = Receiver()
    photos = make_photos(args.photos, args.megapixels, work)
    ingest = ingest_run(work, photos, receiver)
    sample = next(e for _, e in receiver.arrived.values() if e["type"] == "photo.ready")
    plain = plain_post_ms(receiver, json.dumps(sample, separators=(",", ":")).encode())
    drained = drain_run(work, args.backlog, receiver)
    p50, p99 = statistics.median(ingest["latency"]), percentile(ingest["latency"], 0.99)
    plain50 = statistics.median(plain)
    print(f"{args.photos} distinct {args.megapixels:g} MP JPEGs on the embedded defaults (filesystem broker, SQLite), "
          f"one worker (`--concurrency` default) and one `media-pipeline webhooks`; receiver in this process, "
          f"every delivery verified with standardwebhooks ({receiver.bad} refused)\n")
    print("| figure | value | baseline (same process) | ratio |")
    print("|---|---|---|---|")
    print(f"| photos ready per second (the ingest rate sustained) | {ingest['ready_per_s']:.1f} | | |")
    print(f"| events delivered per second during it ({ingest['events']} events) | {ingest['delivered_per_s']:.1f} | "
          f"photos ready per second: {ingest['ready_per_s']:.1f} | {ingest['delivered_per_s'] / ingest['ready_per_s']:.2f} |")
    print(f"| events per second the deliverer drains from a backlog of {args.backlog} | {drained:.0f} | "
          f"photos ready per second: {ingest['ready_per_s']:.1f} | {drained / ingest['ready_per_s']:.0f}x headroom |")
    print(f"| ready committed -> webhook received, p50 ms | {p50:.0f} | a plain signed POST, p50 {plain50:.1f} ms | {p50 / plain50:.0f}x |")
    print(f"| ready committed -> webhook received, p99 ms | {p99:.0f} | a plain signed POST, p99 {percentile(plain, 0.99):.1f} ms | "
          f"{p99 / percentile(plain, 0.99):.0f}x |")


if __name__ == "__main__":
    main()
