"""Reprocessing at scale: enqueue rate and memory, and end-to-end throughput with 1 and 2 workers.

    .venv/bin/python bench/reprocess.py [--sizes 20000,100000] [--photos 40]

Needs PostgreSQL and Redis on their default local ports (as CI has them). Prints tables; asserts
nothing. Part 1 fills a fresh PostgreSQL catalog with synthetic photo rows and runs
`media-pipeline reprocess --stale --no-wait` (the real command, a child process) against Redis:
photos enqueued per second and the child's peak RSS, per catalog size. Part 2 renders real
photos, changes every format's quality, and times `media-pipeline reprocess --stale` through one
worker process and then two (on 2 cores), each on a preset the photos are not yet at.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config.settings import Settings  # noqa: E402
from media_pipeline import service  # noqa: E402
from media_pipeline.queue import RecordingQueue  # noqa: E402
from media_pipeline.service import SpooledUpload, build_services, new_photo_id  # noqa: E402

ADMIN = os.environ.get("MP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = "redis://127.0.0.1:6379/12"


def fresh_database() -> str:
    import psycopg

    name = f"mp_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{ADMIN.rsplit('/', 1)[0]}/{name}"


def drop_database(url: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS).flushdb()


def seed_rows(url: str, count: int) -> None:
    import psycopg

    now = time.time()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY photos (id, owner, status, sha256, original_key, original_format, original_width, original_height, "
                      "original_bytes, created_at, updated_at, preset_version, attempts) FROM STDIN") as copy:
            for i in range(count):
                pid = new_photo_id(now - count + i)
                copy.write_row((pid, None, "ready", "0" * 64, f"originals/{pid}", "jpeg", 4032, 3024, 2_500_000, now, now, "old", 1))
        conn.commit()


def run_cli(settings: Settings, *args: str) -> tuple[str, float]:
    env = {**os.environ, **settings.as_env()}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "media_pipeline.cli", "reprocess", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode not in (0,):
        raise RuntimeError(done.stdout + done.stderr)
    return done.stdout + done.stderr, time.monotonic() - started


def enqueue_bench(sizes: list[int], work: Path) -> None:
    print("| catalog rows | enqueued | seconds | photos/s | peak RSS of the command |")
    print("|---|---|---|---|---|")
    for size in sizes:
        url = fresh_database()
        flush_redis()
        try:
            settings = Settings.from_env({}, data_dir=work / f"enq-{size}", catalog_url=url, broker_url=REDIS, log_level="WARNING")
            build_services(settings, queue=RecordingQueue())  # creates the schema
            seed_rows(url, size)
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            out, _ = run_cli(settings, "--stale", "--no-wait", "--batch", "1000")
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            match = re.search(r"enqueued (\d+) photos in ([\d.]+) s \(([\d,]+)/s\)", out)
            count, seconds, rate = int(match.group(1)), float(match.group(2)), match.group(3)
            note = "" if peak > before else " (no higher than the previous size's)"
            print(f"| {size:,} | {count:,} | {seconds:.1f} | {rate} | {peak / 1024:.0f} MiB{note} |", flush=True)
        finally:
            drop_database(url)
            flush_redis()


def throughput_bench(photos: int, work: Path) -> None:
    from tests import images

    url = fresh_database()
    flush_redis()
    base = Settings.from_env({}, data_dir=work / "tp", catalog_url=url, broker_url=REDIS, log_level="WARNING", rendition_keep_seconds=0)
    seeding = build_services(base, queue=RecordingQueue())
    for i in range(photos):
        upload = SpooledUpload.receive(io.BytesIO(images.jpeg(images.scene(2400, 1600, seed=i))), base.tmp_dir, base.max_upload_bytes)
        photo_id = service.ingest(seeding, upload, None).id
        upload.close()
        service.process_photo(seeding, photo_id)
    text = Path(base.presets_file).read_text()
    print(f"\n{photos} photos of 2400x1600, every format's quality changed (a full re-render), Redis broker, PostgreSQL catalog")
    print("| worker processes | seconds (job start to last photo) | photos/s | speed-up |")
    print("|---|---|---|---|")
    first = None
    try:
        for workers in (1, 2):
            presets = work / f"presets-{workers}.toml"
            # Every format's quality moved, differently for each run: a full re-render each time.
            presets.write_text(re.sub(r"quality = (\d+)", lambda m: f"quality = {int(m.group(1)) - workers}", text))
            settings = base.replace(presets_file=presets)
            out = with_workers(settings, workers, lambda: run_cli(settings, "--stale")[0])
            assert f"updated     {photos}" in out, out
            job = seeding.catalog.get_job()
            first = print_throughput(workers, photos, seeding.catalog.job_report(job.id).last_finished_at - job.created_at, first)
    finally:
        drop_database(url)
        flush_redis()


def with_workers(settings: Settings, workers: int, run: Callable[[], str]) -> str:
    """``run()`` with a worker of ``workers`` processes consuming the queues, started beforehand."""
    env = {**os.environ, **settings.as_env()}
    worker = subprocess.Popen([sys.executable, "-m", "media_pipeline.cli", "worker", f"--concurrency={workers}"], env=env,
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(4)  # worker start-up is not part of the measurement
    try:
        return run()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)


def print_throughput(workers: int, photos: int, seconds: float, first: float | None) -> float:
    """A row of the throughput table (first enqueue to last photo); returns the first run's rate."""
    rate = photos / seconds
    first = first or rate
    print(f"| {workers} | {seconds:.1f} | {rate:.2f} | {rate / first:.2f}x |", flush=True)
    return first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--photos", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mp-reprocess-") as work:
        enqueue_bench([int(s) for s in args.sizes.split(",")], Path(work))
        throughput_bench(args.photos, Path(work))


if __name__ == "__main__":
    main()
