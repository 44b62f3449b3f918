"""CDN-origin throughput: wrk against the API and its nginx fronts, next to nginx serving the same files.

    .venv/bin/python bench/origin.py [--seconds 10] [--rounds 3] [--connections 32] [--photos 6] [--shapes local,s3] [--pin auto|on|off]

Needs `nginx` and `wrk` (Debian packages; `make bench` installs them). Everything listens on
127.0.0.1 only and every wrk run is bounded in time. A few photos are ingested and processed
(../shared/testdata's camera photos when present), and each wrk thread rotates over all their
immutable rendition URLs (a Lua script) as a CDN's misses spread over many files. Servers, one
after the other, GETs then 304 revalidations: plain nginx on the storage folder (the baseline), and
the same without open_file_cache (which the local front cannot have: a deleted photo is gone at once);
the API under gunicorn; the least a WSGI app under the same gunicorn can do (`bench/bare_origin.py`,
one file: Python's ceiling); the front `media-pipeline nginx-config` generates for local storage
(files served by nginx); the same photos on an S3 server on loopback with the API on it and the
generated cache front (a mirror of the immutable URLs, proxy_cache for the rest) before it. Prints req/s, p50/p99, the ratios to nginx (medians of the rounds), how many
requests got past each front to the API (from its /metrics), and first requests through the local
front. With --pin (auto: 4 cores or more) wrk runs on the last core, the servers on the others.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config.settings import Settings  # noqa: E402
from media_pipeline import nginx, service, signing  # noqa: E402
from media_pipeline.models import OUTPUT_CONTENT_TYPES, OUTPUT_EXTENSIONS, Photo  # noqa: E402
from media_pipeline.queue import RecordingQueue  # noqa: E402
from media_pipeline.service import Services, SpooledUpload, build_services  # noqa: E402
from media_pipeline.storage.s3 import S3Storage  # noqa: E402

SIGNING_KEY = "bench-signing-key-0123456789"
CAMERA = REPO.parent / "shared" / "testdata" / "camera-exif"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


def rotation_script(paths: list[str], work: Path, etags: list[str] | None = None) -> Path:
    """A wrk Lua script that GETs ``paths`` in turn, each thread from its own random place (so the
    requests spread over many files as a CDN's do); with ``etags``, each as a revalidation of its
    own ETag."""
    def lua(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    pairs = ",\n".join(f"  {{{lua(path)}, {lua(etag) if etags else 'nil'}}}" for path, etag in zip(paths, etags or paths))
    script = work / f"rotate-{len(list(work.glob('rotate-*.lua')))}.lua"
    script.write_text(f"""local requests = {{
{pairs}
}}
local i = 0
local offset = 0
function init(args) offset = math.random(#requests) end
function request()
  i = i + 1
  local pair = requests[(i + offset) % #requests + 1]
  local headers = {{}}
  if pair[2] then headers["If-None-Match"] = pair[2] end
  return wrk.format("GET", pair[1], headers)
end
""")
    return script


def wrk_run(url: str, seconds: int, connections: int, header: str | None = None,
            script: Path | None = None, pin: str | None = None) -> tuple[float, dict[str, float]]:
    """Requests/s and the latency percentiles wrk prints (50%, 75%, 90%, 99%), in ms. ``pin``: the
    cores wrk runs on (taskset), away from the servers'."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", url]
    if header:
        cmd[1:1] = ["-H", header]
    if script:
        cmd[1:1] = ["-s", str(script)]
    if pin:
        cmd[0:0] = ["taskset", "-c", pin]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    if "Non-2xx or 3xx responses" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {}
    for pct, value, unit in re.findall(r"^\s+(\d+%)\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        latency[pct] = float(value) / 1000 if unit == "us" else float(value) * 1000 if unit == "s" else float(value)
    if "99%" not in latency:
        raise RuntimeError(f"wrk printed no latency distribution:\n{out}")
    return rate, latency


def api_image_requests(port: int) -> float:
    """The API's count of answered image requests, every route under /i/, from its /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(v) for v in re.findall(r'^mp_http_requests_total\{[^}]*route="/i/[^"]*"[^}]*\} ([\d.e+]+)$', text, re.M))


def first_requests(base: str, services: Services, photo: Photo, count: int) -> str:
    """Misses through the front: ``count`` signed on-demand URLs no one asked for before, 4 at a
    time; each must be rendered once (the catalog gains exactly ``count`` renditions)."""
    from concurrent.futures import ThreadPoolExecutor

    existing = {(r.width, r.format) for r in photo.renditions}
    widths = [w for w in services.settings.ondemand_width_list if w <= photo.original_width]
    wanted = [(w, f) for f in ("webp", "avif", "jpeg") for w in widths if (w, f) not in existing][:count]
    paths = [signing.signed_path(f"/i/{photo.id}/{w}.{'jpg' if f == 'jpeg' else f}", SIGNING_KEY.encode())
             for w, f in wanted]
    before = len(services.catalog.all_renditions(photo.id))

    def fetch(path: str) -> float:
        started = time.perf_counter()
        with urllib.request.urlopen(base + path, timeout=120) as response:
            response.read()
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        took = sorted(pool.map(fetch, paths))
    wall = time.perf_counter() - started
    made = len(services.catalog.all_renditions(photo.id)) - before
    return (f"misses through the front: {len(paths)} first requests for signed on-demand renditions, 4 at a time: "
            f"{len(paths) / wall:.1f}/s, p50 {took[len(took) // 2]:.0f} ms, max {took[-1]:.0f} ms; renditions made: {made}")


@dataclass
class Server:
    """One server under wrk: where it listens, the paths it is asked for in turn, and each path's
    ETag as that server sends it (for the revalidation run)."""

    name: str
    base: str
    paths: list[str]
    etags: list[str] = field(default_factory=list)
    counts_api: int | None = None  # the API port whose /metrics shows requests that got past this server

    def fetch_etags(self) -> None:
        wait_http(self.base + self.paths[0])
        self.etags = [urllib.request.urlopen(self.base + path, timeout=30).headers["ETag"] for path in self.paths]


def library(services: Services, count: int) -> list[Photo]:
    """``count`` photos ingested and processed: the camera photos of ../shared/testdata when they
    are there, synthetic scenes otherwise."""
    files = sorted(CAMERA.glob("*.[jJ][pP]*[gG]"))[:count] if CAMERA.is_dir() else []
    datas = [f.read_bytes() for f in files]
    if len(datas) < count:
        from tests import images

        datas += [images.jpeg(images.scene(2400, 1600, seed=seed)) for seed in range(count - len(datas))]
    photos = []
    for data in datas:
        upload = SpooledUpload.receive(io.BytesIO(data), services.settings.tmp_dir, services.settings.max_upload_bytes)
        photo = service.ingest(services, upload, None)
        upload.close()
        service.process_photo(services, photo.id)
        photos.append(services.catalog.get_photo(photo.id))
    return [p for p in photos if p.status.value == "ready"]


def immutable_urls(photos: list[Photo]) -> list[tuple[str, str]]:
    """(the immutable URL's path, the storage key it answers with) of every rendition."""
    return [(f"/i/{p.id}/{r.spec}/{r.width}.{OUTPUT_EXTENSIONS[r.format]}", r.key) for p in photos for r in p.renditions]


def start(cmd: list[str], pin: str | None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen((["taskset", "-c", pin] if pin else []) + cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def settle(api_ports: list[int], timeout: float = 60) -> None:
    """Wait until the APIs have answered what they were asked: wrk stops with requests in flight,
    and a slow server finishing them would be counted in (and take the cores from) the next run."""
    deadline, last = time.monotonic() + timeout, -1.0
    while time.monotonic() < deadline:
        now = sum(api_image_requests(port) for port in api_ports)
        if now == last:
            return
        last = now
        time.sleep(1)


def measure(servers: list[Server], args: argparse.Namespace, work: Path, pin: str | None) -> list[list[Any]]:
    """Each server under wrk for GETs and then revalidations of its rotating paths, one after the
    other, ``args.rounds`` times over. On a shared machine the load moves from minute to minute, so
    each ratio to nginx is taken within its round and the median of the rounds is reported."""
    runs: dict[tuple[str, str], list[tuple[float, float, float, float | None]]] = {}
    api_ports = sorted({s.counts_api for s in servers if s.counts_api})
    for _ in range(args.rounds):
        for server in servers:
            for request, etags in (("GET", None), ("304", server.etags)):
                settle(api_ports)
                before = api_image_requests(server.counts_api) if server.counts_api else 0.0
                rate, latency = wrk_run(server.base, args.seconds, args.connections,
                                        script=rotation_script(server.paths, work, etags), pin=pin)
                reached = api_image_requests(server.counts_api) - before if server.counts_api else None
                runs.setdefault((server.name, request), []).append((rate, latency["50%"], latency["99%"], reached))
    rows = []
    for server in servers:
        for request in ("GET", "304"):
            mine, plain = runs[(server.name, request)], runs[("nginx", request)]
            reached = [r[3] for r in mine]
            rows.append([server.name, request, len(set(server.paths)), median([r[0] for r in mine]), median([r[1] for r in mine]),
                         median([r[2] for r in mine]), median([m[0] / p[0] for m, p in zip(mine, plain)]),
                         median([m[2] / p[2] for m, p in zip(mine, plain)]), None if reached[0] is None else sum(reached)])
    return rows


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def print_rows(rows: list[list[Any]]) -> None:
    print("| server | request | URLs | req/s | p50 ms | p99 ms | req/s / nginx | p99 / nginx p99 | reached the API |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, request, urls, rate, p50, p99, ratio, p99_ratio, reached in rows:
        print(f"| {name} | {request} | {urls} | {rate:,.0f} | {p50:.1f} | {p99:.1f} | {ratio:.2f}x | {p99_ratio:.2f}x | "
              f"{'' if reached is None else f'{reached:,.0f}'} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="every server this many times over; medians of the rounds")
    parser.add_argument("--api-workers", type=int, default=4)
    parser.add_argument("--photos", type=int, default=6, help="photos whose renditions the URLs rotate over")
    parser.add_argument("--misses", type=int, default=12, help="first requests for on-demand renditions through the front")
    parser.add_argument("--shapes", default="local,s3", help="the fronts to run: local (storage folder), s3 (mirror and proxy_cache)")
    parser.add_argument("--pin", choices=("auto", "on", "off"), default="auto",
                        help="wrk on the last core, the servers on the others (auto: with 4 cores or more)")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is not installed: apt-get install nginx-light wrk")
    cores = os.cpu_count() or 1
    pinned = cores >= 2 and (args.pin == "on" or (args.pin == "auto" and cores >= 4))
    wrk_pin, server_pin = (str(cores - 1), f"0-{cores - 2}") if pinned else (None, None)
    shapes = args.shapes.split(",")

    work = Path(tempfile.mkdtemp(prefix="mp-origin-"))
    work.chmod(0o755)  # nginx's workers run as another user
    settings = Settings.from_env({}, data_dir=work / "var", access_log="", api_workers=args.api_workers, log_level="WARNING",
                                 signing_keys=SIGNING_KEY)
    services = build_services(settings, queue=RecordingQueue())
    photos = library(services, args.photos)
    urls = immutable_urls(photos)
    target = min(photos[0].renditions, key=lambda r: abs(r.bytes - 100_000))
    objects = settings.effective_storage_dir / "objects"
    procs: list[subprocess.Popen[bytes]] = []
    stops: list[Callable[[], None]] = []
    servers: list[Server] = []
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    try:
        api_port, nginx_port, nofc_port, bare_port, front_port = free_port(), free_port(), free_port(), free_port(), free_port()
        env = {**os.environ, **settings.replace(port=api_port).as_env()}
        procs.append(start([sys.executable, "-m", "media_pipeline.cli", "api"], server_pin, env))
        procs.append(start([sys.executable, "-m", "gunicorn", "-w", str(args.api_workers), "-k", "gthread", "--threads",
                            str(settings.api_threads), "-b", f"127.0.0.1:{bare_port}",
                            f"bench.bare_origin:make_app({str(objects / target.key)!r}, {OUTPUT_CONTENT_TYPES[target.format]!r})"],
                           server_pin))
        for port, cached in ((nginx_port, True), (nofc_port, False)):
            conf = plain_nginx(work, port, objects, open_file_cache=cached)
            subprocess.run((["taskset", "-c", server_pin] if server_pin else []) + [nginx_bin, "-c", str(conf), "-p", str(work)], check=True)
            stops.append(lambda conf=conf: subprocess.run([nginx_bin, "-c", str(conf), "-p", str(work), "-s", "stop"], check=False))
        servers += [Server("nginx", f"http://127.0.0.1:{nginx_port}", [f"/{key}" for _, key in urls]),
                    Server("nginx, no open_file_cache", f"http://127.0.0.1:{nofc_port}", [f"/{key}" for _, key in urls]),
                    Server("API", f"http://127.0.0.1:{api_port}", [path for path, _ in urls]),
                    Server("bare WSGI (one file)", f"http://127.0.0.1:{bare_port}", ["/"])]
        if "local" in shapes:
            front_conf = nginx.prepare(nginx.front_for(settings.replace(port=api_port), listen=f"127.0.0.1:{front_port}",
                                                       runtime_dir=work / "front", run_as_me=True))
            procs.append(start(nginx.command(nginx_bin, front_conf), server_pin))
            servers.append(Server("front, local shape", f"http://127.0.0.1:{front_port}", [path for path, _ in urls],
                                  counts_api=api_port))
        if "s3" in shapes:
            servers += s3_servers(work, args, settings, procs, stops, server_pin, nginx_bin)
        for server in servers:
            server.fetch_etags()  # also the first request of each URL: the cache shape stores it
        rows = measure(servers, args, work, wrk_pin)
        misses = first_requests(f"http://127.0.0.1:{front_port}", services, photos[0], args.misses) if "local" in shapes else ""
    finally:
        for stop in stops:
            stop()
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
    print(f"wrk -t2 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds (medians; ratios within each round), on {cores} cores, "
          f"{'wrk on core ' + wrk_pin + ', servers on ' + server_pin if pinned else 'not pinned'}; "
          f"{len(photos)} photos, {len(urls)} immutable rendition URLs, each thread rotating over them from its own place; "
          f"API: gunicorn, {args.api_workers} gthread workers x {settings.api_threads} threads, SQLite catalog; "
          f"bare: bench/bare_origin.py under the same gunicorn, one file; nginx: 2 workers, sendfile, open_file_cache (and without), "
          f"the storage folder; fronts: `media-pipeline nginx-config` (worker_processes auto)")
    print_rows(rows)
    if misses:
        print(misses)
    shutil.rmtree(work, ignore_errors=True)


def plain_nginx(work: Path, port: int, objects: Path, open_file_cache: bool = True) -> Path:
    """nginx serving the storage folder as it is. Without ``open_file_cache`` it looks every file up
    on every request, as the local front must (a deleted photo is gone at once): the part of the
    fronts' gap that is that cache."""
    name = "nginx" if open_file_cache else "nginx-nofc"
    conf = work / f"{name}.conf"
    conf.write_text(f"""
worker_processes 2;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on; etag on;{" open_file_cache max=1000;" if open_file_cache else ""}
  client_body_temp_path {work}/nginx-tmp; proxy_temp_path {work}/nginx-tmp; fastcgi_temp_path {work}/nginx-tmp;
  uwsgi_temp_path {work}/nginx-tmp; scgi_temp_path {work}/nginx-tmp;
  types {{ image/avif avif; image/webp webp; image/jpeg jpg; }}
  server {{ listen 127.0.0.1:{port}; root {objects}; }}
}}""")
    (work / "nginx-tmp").mkdir(exist_ok=True)
    return conf


def s3_servers(work: Path, args: argparse.Namespace, local: Settings, procs: list[subprocess.Popen[bytes]],
               stops: list[Callable[[], None]], pin: str | None, nginx_bin: str) -> list[Server]:
    """The S3 shape: the same photos on an S3 server on loopback (moto, in this process), the API
    on it, and the generated cache front (mirror and proxy_cache) before that API."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    s3_port, api_port, front_port = free_port(), free_port(), free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    moto.start()
    stops.append(moto.stop)
    settings = local.replace(data_dir=work / "var-s3", storage_backend="s3", s3_bucket="bench-origin",
                             s3_endpoint_url=f"http://127.0.0.1:{s3_port}", s3_access_key_id="testing",
                             s3_secret_access_key="testing", s3_addressing_style="path")
    S3Storage.from_settings(settings).ensure_bucket()
    services = build_services(settings, queue=RecordingQueue())
    paths = [path for path, _ in immutable_urls(library(services, args.photos))]
    procs.append(start([sys.executable, "-m", "media_pipeline.cli", "api"], pin,
                       {**os.environ, **settings.replace(port=api_port).as_env()}))
    front_conf = nginx.prepare(nginx.front_for(settings.replace(port=api_port), listen=f"127.0.0.1:{front_port}",
                                               runtime_dir=work / "front-s3", run_as_me=True))
    procs.append(start(nginx.command(nginx_bin, front_conf), pin))
    return [Server("API on S3", f"http://127.0.0.1:{api_port}", paths),
            Server("front, S3 shape (mirror)", f"http://127.0.0.1:{front_port}", paths, counts_api=api_port)]


if __name__ == "__main__":
    main()
