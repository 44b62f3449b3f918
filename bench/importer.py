"""Imports at scale: items imported and enqueued per second, and end-to-end photos per second.

    .venv/bin/python bench/importer.py [--items 2000] [--photos 24]

Needs PostgreSQL and Redis on their default local ports (as CI has them). Prints tables; asserts
nothing. Part 1 runs `media-pipeline import MANIFEST --no-wait` (the real command, a child
process) on a fresh PostgreSQL catalog and Redis, for manifests of small JPEGs already in the same
storage: objects in another bucket of the storage's own S3 endpoint (moto on loopback), with and
without `sha256` in the manifest (server-side copy from the first bytes, or read once to hash),
and files on the same disk as local storage. The baseline, run in the same process, is
`media-pipeline reprocess --all --no-wait` over the catalog the import made: publishing the same
ids with no item work. Part 2 imports real-size photos through one worker process, then two.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.reprocess import REDIS, drop_database, flush_redis, fresh_database, print_throughput, with_workers  # noqa: E402
from config.settings import Settings  # noqa: E402
from media_pipeline.queue import RecordingQueue  # noqa: E402
from media_pipeline.service import build_services  # noqa: E402


def run_cli(settings: Settings, *args: str) -> str:
    env = {**os.environ, **settings.as_env()}
    done = subprocess.run([sys.executable, "-m", "media_pipeline.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=1800)
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stdout + done.stderr)
    return done.stdout + done.stderr


def enqueue_rate(output: str) -> tuple[int, float]:
    match = re.search(r"enqueued (\d+) photos in ([\d.]+) s", output)
    if match is None:
        raise RuntimeError(output)
    return int(match.group(1)), int(match.group(1)) / float(match.group(2))


def storage_alone(manifest: Path, threads: int = 8) -> float:
    """Items/s of the storage work of an import alone, with the same threads and no catalog or
    queue: a ranged read, the whole object when the manifest has no sha256, and the copy. Run in a
    child process (`--ceiling`), as the import is, so it does not share the S3 server's GIL."""
    from concurrent.futures import ThreadPoolExecutor

    from media_pipeline.importing.importer import HEADER_BYTES
    from media_pipeline.importing.sources import open_source
    from media_pipeline.storage import PRIVATE

    settings = Settings.from_env()
    storage = build_services(settings, queue=RecordingQueue()).storage
    source = open_source(str(manifest), settings, storage)
    items = [item for _, item in source.items("")]

    def copy(numbered: tuple[int, object]) -> None:
        n, item = numbered
        source.head(item, HEADER_BYTES)
        key = f"originals/ceiling-{n}"
        data = None if item.sha256 else source.open(item).read()  # type: ignore[attr-defined]
        if not source.copy_into(item, storage, key, "image/jpeg", PRIVATE):
            storage.put(key, data, "image/jpeg", PRIVATE)

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(copy, enumerate(items)))
    return len(items) / (time.monotonic() - started)


def small_jpegs(count: int) -> list[bytes]:
    from tests import images

    # Distinct bytes per item (the SHA-256 check would otherwise find them already imported).
    base = images.scene(320, 240, seed=1)
    return [images.jpeg(base, quality=80, exif=images.exif_bytes(make=f"bench-{i}")) for i in range(count)]


def s3_server() -> tuple[str, object]:
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line a request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return f"http://127.0.0.1:{port}", server


def enqueue_bench(items: int, work: Path) -> None:
    from media_pipeline.storage.s3 import S3Storage

    photos = small_jpegs(items)
    endpoint, server = s3_server()
    print(f"{items} items of ~{sum(map(len, photos)) // items // 1000} KB (320x240 JPEG), PostgreSQL catalog, Redis broker, "
          f"`import --no-wait`; baseline: `reprocess --all --no-wait` of the same photos")
    print("| storage and manifest | imported | items/s | reprocess photos/s (baseline) | storage work alone, items/s | "
          "import against storage alone |")
    print("|---|---|---|---|---|---|")
    shapes = ("S3, manifest with sha256", "S3, manifest without sha256", "local folder, manifest")
    try:
        for shape in shapes:
            url = fresh_database()
            flush_redis()
            folder = work / f"shape-{shapes.index(shape)}"
            folder.mkdir()
            try:
                settings = Settings.from_env({}, data_dir=folder / "var", catalog_url=url, broker_url=REDIS, log_level="WARNING")
                lines = []
                if shape.startswith("S3"):
                    settings = settings.replace(storage_backend="s3", s3_bucket=f"bench-{shapes.index(shape)}", s3_endpoint_url=endpoint,
                                                s3_access_key_id="testing", s3_secret_access_key="testing", s3_addressing_style="path")
                    storage = S3Storage.from_settings(settings)
                    storage.ensure_bucket()
                    legacy = f"legacy-{shapes.index(shape)}"
                    storage.client.create_bucket(Bucket=legacy)
                    for i, data in enumerate(photos):
                        storage.client.put_object(Bucket=legacy, Key=f"p/{i}.jpg", Body=data)
                        line = {"source": f"s3://{legacy}/p/{i}.jpg", "owner": f"u{i % 97}", "external_id": str(i)}
                        if "with sha256" in shape:
                            line["sha256"] = hashlib.sha256(data).hexdigest()
                        lines.append(line)
                else:
                    for i, data in enumerate(photos):
                        (folder / f"{i}.jpg").write_bytes(data)
                        lines.append({"source": f"{i}.jpg", "owner": f"u{i % 97}", "external_id": str(i)})
                manifest = folder / "library.jsonl"
                manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
                build_services(settings, queue=RecordingQueue())  # the schema
                count, rate = enqueue_rate(run_cli(settings, "import", str(manifest), "--no-wait", "--batch", "500"))
                flush_redis()
                _, baseline = enqueue_rate(run_cli(settings, "reprocess", "--all", "--no-wait", "--batch", "500"))
                env = {**os.environ, **settings.as_env()}
                ceiling = float(subprocess.run([sys.executable, __file__, "--ceiling", str(manifest)], env=env, cwd=REPO, check=True,
                                               capture_output=True, text=True, timeout=1800).stdout.split()[-1])
                print(f"| {shape} | {count:,} | {rate:,.0f} | {baseline:,.0f} | {ceiling:,.0f} | {rate / ceiling:.2f} |", flush=True)
            finally:
                drop_database(url)
                flush_redis()
    finally:
        server.stop()  # type: ignore[attr-defined]


def throughput_bench(photos: int, work: Path) -> None:
    from tests import images

    folder = work / "tp"
    folder.mkdir()
    lines = []
    for i in range(photos):
        (folder / f"{i}.jpg").write_bytes(images.jpeg(images.scene(2400, 1600, seed=i)))
        lines.append({"source": f"{i}.jpg", "owner": "bench", "external_id": str(i)})
    manifest = folder / "library.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    print(f"\n{photos} photos of 2400x1600 imported by manifest from a local folder, Redis broker, PostgreSQL catalog, local storage")
    print("| worker processes | seconds (job start to last photo) | photos/s | speed-up |")
    print("|---|---|---|---|")
    first = None
    for workers in (1, 2):
        url = fresh_database()
        flush_redis()
        try:
            settings = Settings.from_env({}, data_dir=folder / f"var-{workers}", catalog_url=url, broker_url=REDIS, log_level="WARNING")
            services = build_services(settings, queue=RecordingQueue())
            out = with_workers(settings, workers, lambda: run_cli(settings, "import", str(manifest)))
            job = services.catalog.get_job(services.catalog.latest_import_job_id())
            report = services.catalog.job_report(job.id)
            assert report.counts.get("updated") == photos, out
            first = print_throughput(workers, photos, report.last_finished_at - job.created_at, first)
        finally:
            drop_database(url)
            flush_redis()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=2000, help="items of the enqueue-rate manifests (0: skip)")
    parser.add_argument("--photos", type=int, default=24, help="photos of the end-to-end run (0: skip)")
    parser.add_argument("--ceiling", type=Path, help=argparse.SUPPRESS)  # the child of storage_alone
    args = parser.parse_args()
    if args.ceiling:
        print(f"{storage_alone(args.ceiling):.1f}")
        return
    with tempfile.TemporaryDirectory(prefix="mp-import-") as work:
        if args.items:
            enqueue_bench(args.items, Path(work))
        if args.photos:
            throughput_bench(args.photos, Path(work))


if __name__ == "__main__":
    main()
