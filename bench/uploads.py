"""Uploads from phones: resumable (tus) against plain over a link that keeps dropping, and the
API's memory while 16 clients send direct uploads.

    .venv/bin/python bench/uploads.py [--megabytes 40] [--cut-every-mb 5] [--small-mb 1] [--clients 16]
                                      [--backends local,s3]

1. A ``--megabytes`` photo (a noise PNG, as incompressible as a camera's file) is sent over a
   loopback link (``bench/cut_link.py``) that drops every connection each time another
   ``--cut-every-mb`` MB have gone through it: with tuspy (the tus project's client; one PATCH of
   the rest, resumed from the server's offset after each cut) and with ``POST /v1/photos`` (which
   can only start again from zero, given up after ``--post-attempts``). The same on an uncut link
   is the baseline. Time, bytes the client sent in all, and bytes sent again.
2. ``--clients`` concurrent direct uploads (``POST /v1/uploads``, send, complete) of a
   ``--small-mb`` and of a ``--megabytes`` photo; the API's RSS (gunicorn master and workers),
   sampled every 20 ms, before and at its peak, the heap (RssAnon) apart from mapped files (RssFile). With local storage the body goes through the API
   (its one-time URL); with S3 (moto on loopback, its own process) the client posts to S3 itself.

The API runs under gunicorn with the service's defaults; no worker runs (the photos stay queued:
this measures the upload). Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urljoin

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.cut_link import CutLink  # noqa: E402
from bench.proc_memory import tree_memory_mib  # noqa: E402
from bench.origin import free_port, wait_http  # noqa: E402
from config.settings import Settings  # noqa: E402

TUS = {"Tus-Resumable": "1.0.0"}


def noise_png(path: Path, megabytes: float) -> Path:
    """An RGB noise PNG of about ``megabytes`` MB (noise does not compress: 3 bytes a pixel)."""
    import pyvips

    side = int((megabytes * 1e6 / 3) ** 0.5)
    bands = [pyvips.Image.gaussnoise(side, side, mean=128, sigma=60, seed=seed).cast("uchar") for seed in range(3)]
    bands[0].bandjoin(bands[1:]).pngsave(str(path), compression=1)
    return path


class Api:
    """The API under gunicorn (and moto for the S3 backend), each its own process."""

    def __init__(self, work: Path, backend: str, max_bytes: int) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        port = free_port()
        settings = Settings.from_env({}, data_dir=work / f"var-{backend}", port=port, access_log="", log_level="WARNING",
                                     rate_limit=0, max_upload_bytes=max_bytes)
        if backend == "s3":
            s3_port = free_port()
            self.procs.append(subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
            wait_http(f"http://127.0.0.1:{s3_port}/moto-api/")
            settings = settings.replace(storage_backend="s3", s3_bucket="bench-uploads", s3_endpoint_url=f"http://127.0.0.1:{s3_port}",
                                        s3_access_key_id="testing", s3_secret_access_key="testing", s3_addressing_style="path")
            from media_pipeline.storage.s3 import S3Storage

            S3Storage.from_settings(settings).ensure_bucket()
        self.api = subprocess.Popen([sys.executable, "-m", "media_pipeline.cli", "api"], env={**os.environ, **settings.as_env()},
                                    cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(self.api)
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        wait_http(f"{self.base}/healthz")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


# --------------------------------------------------------------------------- 1. over a cut link
@contextmanager
def _requests_time_out(seconds: float) -> Iterator[None]:
    """tuspy sends its requests with no timeout, so one left waiting by a dropped connection
    would hold the bench for good (a smoke run once hung 600 s without a line of output). Within
    this, a request without a timeout of its own gets ``seconds`` of silence before it fails and
    the upload goes on from the server's offset. Wraps ``HTTPAdapter.send``, requests' documented
    transport-adapter call."""
    send = requests.adapters.HTTPAdapter.send

    def with_timeout(self: requests.adapters.HTTPAdapter, request: Any, stream: bool = False, timeout: Any = None, **kwargs: Any) -> Any:
        return send(self, request, stream=stream, timeout=seconds if timeout is None else timeout, **kwargs)

    requests.adapters.HTTPAdapter.send = with_timeout  # type: ignore[method-assign]
    try:
        yield
    finally:
        requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]


def tus_upload(base: str, photo: Path, link: CutLink) -> dict[str, Any]:
    with _requests_time_out(60):
        return _tus_upload(base, photo, link)


def _tus_upload(base: str, photo: Path, link: CutLink) -> dict[str, Any]:
    from tusclient import client as tus_client

    link.reset_counts()
    started = time.monotonic()
    tus = tus_client.TusClient(f"{base}/v1/tus/")
    uploader = tus.uploader(str(photo), metadata={"owner": "bench"})
    offsets = []
    while time.monotonic() - started < 600:
        try:
            uploader.upload()
            break
        except Exception:  # noqa: BLE001 - the link went down: ask where we got to, go on from there
            time.sleep(0.05)
            try:
                if uploader.url:
                    uploader.offset = uploader.get_offset()
                    offsets.append(uploader.offset)
            except Exception:  # noqa: BLE001
                pass
    seconds = time.monotonic() - started
    head = requests.head(uploader.url, headers=TUS, timeout=30)
    return {"seconds": seconds, "sent": link.sent, "cuts": link.cuts, "done": "Photo-Id" in head.headers, "offsets": offsets}


def post_upload(base: str, photo: Path, link: CutLink, attempts: int) -> dict[str, Any]:
    link.reset_counts()
    started = time.monotonic()
    done = False
    for _ in range(attempts):
        try:
            with open(photo, "rb") as body:
                answer = requests.post(f"{base}/v1/photos", data=body, headers={"Content-Type": "image/png"}, timeout=120)
            done = answer.status_code == 202
            break
        except requests.RequestException:
            time.sleep(0.05)
    return {"seconds": time.monotonic() - started, "sent": link.sent, "cuts": link.cuts, "done": done, "offsets": []}


def cut_link_table(api: Api, photo: Path, cut_every: int, attempts: int, backend: str) -> list[str]:
    size = photo.stat().st_size
    rows = []
    for name, cut in (("uncut", None), (f"cut every {cut_every / 1e6:g} MB", cut_every)):
        link = CutLink(("127.0.0.1", api.port), cut)
        base = f"http://127.0.0.1:{link.port}"
        for how, run in (("tus (tuspy)", lambda: tus_upload(base, photo, link)),
                         ("POST /v1/photos", lambda: post_upload(base, photo, link, attempts))):
            r = run()
            # Sent again: what went over the link beyond the file itself; when the upload never
            # finished, everything sent was for nothing.
            again = f"{max(0, r['sent'] - size) / 1e6:.2f}" if r["done"] else f"{r['sent'] / 1e6:.2f} (all)"
            done = "yes" if r["done"] else f"no (gave up after {attempts} attempts)"
            rows.append(f"| {backend} | {name} | {how} | {r['seconds']:.1f} | {r['sent'] / 1e6:.1f} | {again} | {r['cuts']} | {done} |")
            if r["offsets"]:
                print(f"  [{backend}, {name}, {how}] offsets after each cut: {r['offsets']}")
        link.close()
    return rows


# --------------------------------------------------------------------------- 2. RSS, direct uploads
def tree_rss(pid: int) -> tuple[float, float]:
    """(anonymous, file-backed) resident MiB of a process and its children: the heap apart from the
    pages of files the process maps (an upload's temp file is mapped to read its header; those
    pages are the page cache's, shared, and go when the file is closed)."""
    memory = tree_memory_mib(pid, ("RssAnon", "RssFile"))
    return memory["RssAnon"], memory["RssFile"]


def direct_upload(base: str, photo: Path) -> bool:
    target = requests.post(f"{base}/v1/uploads", json={"owner": "bench"}, timeout=30).json()
    with open(photo, "rb") as body:
        if target["method"] == "PUT":  # the API's own one-time URL (relative)
            sent = requests.put(urljoin(base, target["url"]), data=body, timeout=300)
        else:
            sent = requests.post(target["url"], data=target["fields"], files={"file": (photo.name, body)}, timeout=300)
    sent.raise_for_status()
    return requests.post(f"{base}{target['complete']}", timeout=300).status_code == 202


def rss_during(api: Api, photo: Path, clients: int) -> dict[str, Any]:
    baseline = tree_rss(api.api.pid)
    peak = list(baseline)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            now = tree_rss(api.api.pid)
            peak[0], peak[1] = max(peak[0], now[0]), max(peak[1], now[1])
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(clients) as pool:
            done = sum(pool.map(lambda _: direct_upload(api.base, photo), range(clients)))
    finally:
        stop.set()
    seconds = time.monotonic() - started
    sampler.join()
    return {"baseline": baseline, "peak": peak, "done": done, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=float, default=40)
    parser.add_argument("--cut-every-mb", type=float, default=5)
    parser.add_argument("--post-attempts", type=int, default=5)
    parser.add_argument("--small-mb", type=float, default=1)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--backends", default="local,s3")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mp-uploads-"))
    big = noise_png(work / "big.png", args.megabytes)
    small = noise_png(work / "small.png", args.small_mb)
    big_size = big.stat().st_size
    max_bytes = int(max(big_size, 40_000_000) * 1.05)  # the file fits MP_MAX_UPLOAD_BYTES
    cut_rows, rss_rows = [], []
    try:
        for backend in args.backends.split(","):
            api = Api(work, backend, max_bytes)
            try:
                cut_rows += cut_link_table(api, big, int(args.cut_every_mb * 1e6), args.post_attempts, backend)
                for photo in (small, big):
                    r = rss_during(api, photo, args.clients)
                    (anon, mapped), (anon_peak, mapped_peak) = r["baseline"], r["peak"]
                    rss_rows.append(f"| {backend} | {photo.stat().st_size / 1e6:.1f} | {args.clients} | {r['done']}/{args.clients} | "
                                    f"{r['seconds']:.1f} | {anon:.0f} -> {anon_peak:.0f} (+{anon_peak - anon:.0f}) | "
                                    f"{mapped:.0f} -> {mapped_peak:.0f} (+{mapped_peak - mapped:.0f}) |")
            finally:
                api.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cores; "
          f"a {big_size / 1e6:.1f} MB noise PNG; gunicorn with the service's defaults\n")
    print("| storage | link | client | seconds | MB sent | MB sent again | cuts | done |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(cut_rows))
    print(f"\n| storage | file MB | concurrent direct uploads | completed | seconds | API heap (RssAnon) MiB, before -> peak | mapped files (RssFile) MiB |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rss_rows))


if __name__ == "__main__":
    main()
