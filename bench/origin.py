"""CDN-origin throughput: wrk against the API under gunicorn and through its nginx front, next to nginx serving the same files.

    .venv/bin/python bench/origin.py [--seconds 10] [--connections 32] [--api-workers 4]

Needs `nginx` and `wrk` (Debian packages; `make bench` installs them). Everything listens on
127.0.0.1 only and every wrk run is bounded in time. Prints a table of requests/s and p99 for
cached ~100 KB rendition GETs and for 304 revalidations from four servers: the API, the least a
WSGI app under the same gunicorn can do (`bench/bare_origin.py`: Python's ceiling), the front
`media-pipeline nginx-config` generates (local shape) in front of the API, and plain nginx on the
same folder; the ratios to nginx; and how many requests of the front's runs reached the API (from
its /metrics). Asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config.settings import Settings  # noqa: E402
from media_pipeline import nginx, service, signing  # noqa: E402
from media_pipeline.models import OUTPUT_CONTENT_TYPES, Photo  # noqa: E402
from media_pipeline.queue import RecordingQueue  # noqa: E402
from media_pipeline.service import Services, SpooledUpload, build_services  # noqa: E402

SIGNING_KEY = "bench-signing-key-0123456789"
PHOTO = REPO.parent / "shared" / "testdata" / "camera-exif" / "IMG_9424.JPG"


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


def wrk(url: str, seconds: int, connections: int, header: str | None = None) -> tuple[float, float]:
    rate, latency = wrk_run(url, seconds, connections, header)
    return rate, latency["99%"]


def wrk_run(url: str, seconds: int, connections: int, header: str | None = None,
            script: Path | None = None) -> tuple[float, dict[str, float]]:
    """Requests/s and the latency percentiles wrk prints (50%, 75%, 90%, 99%), in ms."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency", url]
    if header:
        cmd[1:1] = ["-H", header]
    if script:
        cmd[1:1] = ["-s", str(script)]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--api-workers", type=int, default=4)
    parser.add_argument("--misses", type=int, default=12, help="first requests for on-demand renditions through the front")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is not installed: apt-get install nginx-light wrk")

    work = Path(tempfile.mkdtemp(prefix="mp-origin-"))
    work.chmod(0o755)  # nginx's workers run as another user
    settings = Settings.from_env({}, data_dir=work / "var", access_log="", api_workers=args.api_workers, log_level="WARNING",
                                 signing_keys=SIGNING_KEY)
    services = build_services(settings, queue=RecordingQueue())
    data = PHOTO.read_bytes() if PHOTO.exists() else None
    if data is None:
        from tests import images

        data = images.jpeg(images.scene(4000, 3000))
    upload = SpooledUpload.receive(io.BytesIO(data), settings.tmp_dir, settings.max_upload_bytes)
    photo = service.ingest(services, upload, None)
    upload.close()
    service.process_photo(services, photo.id)
    photo = services.catalog.get_photo(photo.id)
    target = min(photo.renditions, key=lambda r: abs(r.bytes - 100_000))
    ext = {"avif": "avif", "webp": "webp", "jpeg": "jpg"}[target.format]
    api_path = f"/i/{photo.id}/{target.spec}/{target.width}.{ext}"

    api_port, nginx_port, bare_port, front_port = free_port(), free_port(), free_port(), free_port()
    env = {**os.environ, **settings.replace(port=api_port).as_env()}
    api = subprocess.Popen([sys.executable, "-m", "media_pipeline.cli", "api"], env=env, cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    object_path = settings.effective_storage_dir / "objects" / target.key
    bare = subprocess.Popen([sys.executable, "-m", "gunicorn", "-w", str(args.api_workers), "-k", "gthread", "--threads",
                             str(settings.api_threads), "-b", f"127.0.0.1:{bare_port}",
                             f"bench.bare_origin:make_app({str(object_path)!r}, {OUTPUT_CONTENT_TYPES[target.format]!r})"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on; etag on; open_file_cache max=1000;
  client_body_temp_path {work}/nginx-tmp; proxy_temp_path {work}/nginx-tmp; fastcgi_temp_path {work}/nginx-tmp;
  uwsgi_temp_path {work}/nginx-tmp; scgi_temp_path {work}/nginx-tmp;
  types {{ image/avif avif; image/webp webp; image/jpeg jpg; }}
  server {{ listen 127.0.0.1:{nginx_port}; root {settings.effective_storage_dir / 'objects'}; }}
}}""")
    (work / "nginx-tmp").mkdir()
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    subprocess.run([nginx_bin, "-c", str(conf), "-p", str(work)], check=True)
    front_conf = nginx.prepare(nginx.front_for(settings.replace(port=api_port), listen=f"127.0.0.1:{front_port}",
                                               runtime_dir=work / "front", run_as_me=True))
    front = subprocess.Popen(nginx.command(nginx_bin, front_conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        urls = {"ours": f"http://127.0.0.1:{api_port}{api_path}", "bare": f"http://127.0.0.1:{bare_port}/",
                "front": f"http://127.0.0.1:{front_port}{api_path}", "nginx": f"http://127.0.0.1:{nginx_port}/{target.key}"}
        for url in urls.values():
            wait_http(url)
        etags = {name: urllib.request.urlopen(url).headers["ETag"] for name, url in urls.items()}
        rows = []
        reached_api = 0
        for name, conditional in ((f"cached GET, {target.bytes // 1024} KB {target.format}", False), ("304 revalidation", True)):
            row: list[object] = [name]
            for server, url in urls.items():
                before = api_image_requests(api_port) if server == "front" else 0
                row += wrk(url, args.seconds, args.connections, f"If-None-Match: {etags[server]}" if conditional else None)
                reached_api += api_image_requests(api_port) - before if server == "front" else 0
            rows.append(row)
        api_total = api_image_requests(api_port)
        misses = first_requests(f"http://127.0.0.1:{front_port}", services, photo, args.misses)
    finally:
        subprocess.run([nginx_bin, "-c", str(conf), "-p", str(work), "-s", "stop"], check=False)
        for proc in (api, bare, front):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
    print(f"wrk -t2 -c{args.connections} -d{args.seconds}s on {os.cpu_count()} cores; API: gunicorn, {args.api_workers} gthread workers x {settings.api_threads} threads, "
          f"local storage, SQLite catalog; bare: bench/bare_origin.py under the same gunicorn settings; "
          f"front: `media-pipeline nginx-config` (local shape, worker_processes auto) before the API; "
          f"nginx: 2 workers, sendfile, open_file_cache, same folder")
    print("| request | API req/s | API p99 ms | bare WSGI req/s | bare p99 ms | front req/s | front p99 ms | nginx req/s | nginx p99 ms "
          "| API / nginx | bare / nginx | front / nginx | front p99 / nginx p99 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, our_rate, our_p99, bare_rate, bare_p99, front_rate, front_p99, nginx_rate, nginx_p99 in rows:
        print(f"| {name} | {our_rate:,.0f} | {our_p99:.1f} | {bare_rate:,.0f} | {bare_p99:.1f} | {front_rate:,.0f} | {front_p99:.1f} | "
              f"{nginx_rate:,.0f} | {nginx_p99:.1f} | {our_rate / nginx_rate:.2f}x | {bare_rate / nginx_rate:.2f}x | "
              f"{front_rate / nginx_rate:.2f}x | {front_p99 / nginx_p99:.2f}x |")
    print(f"image requests that reached the API during the front's runs: {reached_api:.0f} (its own runs: {api_total:,.0f})")
    print(misses)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
