"""Photos per second through real Celery workers, and what the service adds over the bare pipeline.

    .venv/bin/python bench/throughput.py [--photos 200] [--megapixels 2] [--portrait] [--broker redis]

For each broker (the embedded filesystem broker with SQLite, as ``make run`` has it; Redis with
PostgreSQL, as production has it; local-folder storage for both) and 1 then 2 worker processes:
a fresh catalog, ``media-pipeline worker --concurrency N`` started and given time to boot, then
``--photos`` distinct JPEGs uploaded through ``service.ingest`` (original stored, row written,
task queued: what ``POST /v1/photos`` does after reading the body). Measured from the first 202
to the last photo ``ready``: photos per second, each photo's time from 202 to ``ready``
(p50/p99) and the peak RSS (VmHWM) of the busiest worker process. The baseline is
``media-pipeline render`` on the same files in one process: what is left over is queue, storage,
catalog and duplicate detection. Prints tables; asserts nothing. Needs
PostgreSQL and Redis on their default local ports for the second broker (skipped without them).
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.renditions import photo_jpeg  # noqa: E402
from bench.reprocess import REDIS, drop_database, flush_redis, fresh_database  # noqa: E402
from config.settings import Settings  # noqa: E402
from media_pipeline import service  # noqa: E402
from media_pipeline.models import PhotoStatus  # noqa: E402
from media_pipeline.service import SpooledUpload, build_services  # noqa: E402
from workers.celery_app import make_queue  # noqa: E402


def make_photos(count: int, megapixels: float, folder: Path, portrait: bool = False) -> list[Path]:
    long_side = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    width, height = (long_side * 3 // 4, long_side) if portrait else (long_side, long_side * 3 // 4)
    return [photo_jpeg(folder / f"photo-{seed:04d}.jpg", width, height, seed=seed) for seed in range(count)]


def render_baseline(paths: list[Path], work: Path) -> float:
    """Seconds per photo for ``media-pipeline render`` on the same files, one process, one thread."""
    settings = Settings.from_env({}, data_dir=work / "render")
    env = {**os.environ, **settings.as_env()}
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "media_pipeline.cli", "render", *map(str, paths), "--out", str(work / "render-out")],
                   env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return (time.monotonic() - started) / len(paths)


def identify_ms(paths: list[Path], sample: int = 20) -> float:
    """Milliseconds per photo for what a worker adds to ``render``: duplicate identification."""
    from media_pipeline import pipeline, vips

    vips.configure(1)
    preset = Settings.from_env({}).preset()
    started = time.perf_counter()
    for path in paths[:sample]:
        job = pipeline.prepare(path.read_bytes(), preset, 50_000_000, widths=pipeline.identity_widths(preset))
        pipeline.identify(job)
    return (time.perf_counter() - started) / min(sample, len(paths)) * 1000


def run_once(settings: Settings, paths: list[Path], workers: int) -> dict[str, float]:
    services = build_services(settings, queue=make_queue(settings))
    env = {**os.environ, **settings.as_env()}
    worker = subprocess.Popen([sys.executable, "-m", "media_pipeline.cli", "worker", f"--concurrency={workers}"], env=env,
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(6)  # worker start-up is not part of the measurement
    cpu_before = cpu_seconds_by_program()
    machine_before = machine_ticks()
    try:
        ids = []
        for path in paths:
            upload = SpooledUpload.receive(io.BytesIO(path.read_bytes()), settings.tmp_dir, settings.max_upload_bytes)
            try:
                ids.append(service.ingest(services, upload, None).id)
            finally:
                upload.close()
        deadline = time.monotonic() + 60 + 10 * len(paths)
        # One count through the status index a second: polling each photo would cost the
        # database (and this process) as much CPU as the workers' own catalog work.
        while sum(services.catalog.in_flight().values()) and time.monotonic() < deadline:
            time.sleep(1)
        photos = [services.catalog.get_photo(i) for i in ids]
        if not all(p.status in (PhotoStatus.READY, PhotoStatus.FAILED) for p in photos):
            raise TimeoutError("photos did not finish")
        child_peak = max(_peak_rss_mib(pid) for pid in _children(worker.pid))
        cpu_after = cpu_seconds_by_program()
        machine_after = machine_ticks()
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            print(f"<!-- the {workers}-process worker did not stop within 60 s of SIGTERM; killed -->", flush=True)
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    failed = sum(p.status is PhotoStatus.FAILED for p in photos)
    first_accept = min(p.created_at for p in photos)
    last_ready = max(p.updated_at for p in photos)
    waits = sorted(p.updated_at - p.created_at for p in photos)
    return {"seconds": last_ready - first_accept, "rate": len(photos) / (last_ready - first_accept),
            "p50": statistics.median(waits), "p99": waits[min(len(waits) - 1, int(len(waits) * 0.99))], "failed": failed,
            "child_peak": child_peak,
            "machine": machine_shares(machine_before, machine_after),
            "cpu": {name: (cpu_after.get(name, 0.0) - cpu_before.get(name, 0.0)) / len(photos) for name in cpu_after}}


def cpu_split(cpu: dict[str, float]) -> str:
    return " / ".join(f"{cpu.get(k, 0.0) * 1000:.0f}" for k in ("worker", "postgres", "redis", "bench", "other"))


def cpu_seconds_by_program() -> dict[str, float]:
    """CPU seconds (user + system) used so far by the live processes of each program: where the
    two cores go during a run (the worker's pool, the database, the broker, this process)."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        program = _program(comm, int(stat.parent.name))
        totals[program] = totals.get(program, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return totals


def machine_ticks() -> list[int]:
    """The machine's CPU ticks so far from /proc/stat: user, nice, system, idle, iowait, irq, softirq, steal."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def machine_shares(before: list[int], after: list[int]) -> tuple[float, float]:
    """(idle + iowait, steal) as shares of all the cores' time between two readings. Steal is time
    the hypervisor gave this VM's cores to someone else: on a shared VM it can cost a 2-process
    run more than a 1-process one."""
    delta = [a - b for a, b in zip(after, before)]
    total = sum(delta) or 1
    return (delta[3] + delta[4]) / total, delta[7] / total


def _program(comm: str, pid: int) -> str:
    if pid == os.getpid():
        return "bench"
    for prefix, program in (("postgres", "postgres"), ("redis", "redis"), ("python", "worker"), ("celery", "worker")):
        if comm.startswith(prefix):
            return program
    return "other"


def _children(pid: int) -> list[int]:
    """The worker's pool processes (the Celery main process's children)."""
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()] or [pid]


def _peak_rss_mib(pid: int) -> float:
    """VmHWM: the most RSS the process has had, i.e. its peak while rendering."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--megapixels", type=float, default=2.0)
    parser.add_argument("--broker", choices=("both", "embedded", "redis"), default="both",
                        help="measure only the embedded broker + SQLite, or only Redis + PostgreSQL")
    parser.add_argument("--portrait", action="store_true", help="3:4 photos (their largest rendition has the most pixels)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mp-throughput-"))
    paths = make_photos(args.photos, args.megapixels, work, args.portrait)
    render = render_baseline(paths, work)
    identify = identify_ms(paths) / 1000
    baseline = render + identify
    print(f"{args.photos} distinct {args.megapixels:g} MP JPEGs; `media-pipeline render` on the same files: "
          f"{render * 1000:.0f} ms/photo; plus duplicate identification (which `render` skips and a worker does): "
          f"{identify * 1000:.0f} ms; baseline {baseline * 1000:.0f} ms/photo\n")
    print("| broker + catalog | worker processes | seconds, first 202 to last ready | photos/s | vs 1 worker | "
          "202 to ready p50 / p99 s | s/photo per core vs baseline | peak RSS per worker process MiB | "
          "CPU ms/photo: workers / PostgreSQL / Redis / this script / other | cores idle / stolen | failed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    configs = [("filesystem + SQLite", False), ("Redis + PostgreSQL", True)]
    configs = [c for c in configs if args.broker == "both" or c[1] == (args.broker == "redis")]
    for name, production in configs:
        one = None
        for workers in (1, 2):
            settings = Settings.from_env({}, data_dir=work / f"{name.split()[0]}-{workers}", log_level="WARNING")
            postgres = None
            if production:
                try:
                    postgres = fresh_database()
                except Exception as exc:  # noqa: BLE001 - without PostgreSQL the embedded broker is still measured
                    print(f"<!-- {name} skipped: {exc} -->")
                    break
                flush_redis()
                settings = settings.replace(broker_url=REDIS, catalog_url=postgres)
            try:
                result = run_once(settings, paths, workers)
            finally:
                if postgres:
                    drop_database(postgres)
                    flush_redis()
            one = one or result["rate"]
            per_core = workers / result["rate"]
            print(f"| {name} | {workers} | {result['seconds']:.1f} | {result['rate']:.2f} | {result['rate'] / one:.2f}x | "
                  f"{result['p50']:.1f} / {result['p99']:.1f} | {per_core / baseline:.2f}x | {result['child_peak']:.0f} | "
                  f"{cpu_split(result['cpu'])} | {result['machine'][0]:.1%} / {result['machine'][1]:.1%} | "
                  f"{result['failed']} |", flush=True)

if __name__ == "__main__":
    main()
