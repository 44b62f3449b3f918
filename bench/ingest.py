"""Upload ingest: ``POST /v1/photos`` of 3 MB JPEGs from 16 concurrent clients, next to a bare app.

    .venv/bin/python bench/ingest.py [--seconds 15] [--connections 16] [--rounds 2] [--workers 2] [--threads 4]

Both servers run under gunicorn with the same settings (by default the service's own, 2 gthread
workers x 4 threads on this 2-core machine), taking turns: ours, bare, ours, bare, so a slow
spell of the shared machine shows up as a disagreement between rounds instead of in one ratio.
Ours stores each original durably (fsync of file and folder), records it in the SQLite catalog
and enqueues a task on the embedded broker; the bare app (``bench/bare_upload.py``) only streams
the body to a file. Load comes from ``wrk`` with a Lua script that POSTs the same 3 MB JPEG. RSS
of the server's processes is read before and after, to show whether uploads are buffered whole. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.origin import free_port, wait_http, wrk_run  # noqa: E402
from bench.proc_memory import tree_memory_mib  # noqa: E402
from bench.renditions import photo_jpeg  # noqa: E402
from config.settings import Settings  # noqa: E402

DEFAULTS = Settings.from_env({})


def tree_rss_mib(pid: int) -> float:
    """RSS of a process and its children (the gunicorn master and workers)."""
    return tree_memory_mib(pid, ("VmRSS",))["VmRSS"]


def measure(name: str, cmd: list[str], env: dict[str, str], base_url: str, path: str, script: Path,
            seconds: int, connections: int) -> dict:
    """Start a server, wait until it answers, load it with wrk, stop it."""
    server = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_http(f"{base_url}/healthz" if path.startswith("/v1") else f"{base_url}/")
        before = tree_rss_mib(server.pid)
        rate, latency = wrk_run(f"{base_url}{path}", seconds, connections, script=script)
        after = tree_rss_mib(server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    return {"name": name, "rate": rate, "p50": latency["50%"], "p99": latency["99%"], "rss": (before, after)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="turns of ours then bare")
    parser.add_argument("--workers", type=int, default=DEFAULTS.api_workers, help="gunicorn processes (MP_API_WORKERS)")
    parser.add_argument("--threads", type=int, default=DEFAULTS.api_threads, help="threads per process (MP_API_THREADS)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="mp-ingest-"))
    photo = photo_jpeg(work / "photo.jpg", 4000, 3000, quality=93)  # about 3 MB
    size = photo.stat().st_size
    script = work / "post.lua"
    script.write_text(f"""
local f = io.open("{photo}", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
""")
    port, bare_port = free_port(), free_port()
    settings = Settings.from_env({}, data_dir=work / "var", port=port, api_workers=args.workers, api_threads=args.threads,
                                 access_log="", log_level="WARNING", rate_limit=0)
    gunicorn = [sys.executable, "-m", "gunicorn", "-w", str(args.workers), "-k", "gthread", "--threads", str(args.threads),
                "-b", f"127.0.0.1:{bare_port}", f"bench.bare_upload:make_app({str(work / 'bare')!r})"]
    rows = []
    for round_number in range(1, args.rounds + 1):
        ours = measure("media_pipeline POST /v1/photos", [sys.executable, "-m", "media_pipeline.cli", "api"],
                       {**os.environ, **settings.as_env()}, f"http://127.0.0.1:{port}", "/v1/photos", script,
                       args.seconds, args.connections)
        bare = measure("bare WSGI app, body to a file", gunicorn, dict(os.environ), f"http://127.0.0.1:{bare_port}", "/",
                       script, args.seconds, args.connections)
        rows.append((round_number, ours, bare))
    stored = len(list((settings.effective_storage_dir / "objects" / "originals").rglob("*")))
    print(f"wrk -t2 -c{args.connections} -d{args.seconds}s, POST of one {size / 1e6:.1f} MB JPEG; gunicorn {args.workers} gthread "
          f"workers x {args.threads} threads on {os.cpu_count()} cores; ours: local storage (fsync), SQLite, filesystem broker\n")
    print("| round | server | uploads/s | p50 ms | p99 ms | server RSS MiB before -> after | ours / bare |")
    print("|---|---|---|---|---|---|---|")
    for round_number, ours, bare in rows:
        for r in (ours, bare):
            ratio = f"{ours['rate'] / bare['rate']:.2f}x" if r is ours else ""
            print(f"| {round_number} | {r['name']} | {r['rate']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | "
                  f"{r['rss'][0]:.0f} -> {r['rss'][1]:.0f} | {ratio} |")
    print(f"\noriginals stored by ours: {stored}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
