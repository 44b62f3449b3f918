"""The batch jobs' commands: ``reprocess`` (bring stored photos up to the current preset) and
``import`` (bring an existing library in), both a job in the catalog with a cursor, a ledger,
a progress bar and ``status``; and the small formatters the other commands share."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from config.settings import Settings


def add_parsers(sub: Any) -> None:
    rep = sub.add_parser("reprocess", help="bring stored photos up to the current preset; `reprocess status` shows a job")
    rep.add_argument("action", nargs="?", choices=["status"], help="show a running or finished job instead")
    rep.add_argument("--job", help="with status: the job (default: the newest); to run: resume this job")
    which = rep.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_const", dest="mode", const="all", help="every photo")
    which.add_argument("--stale", action="store_const", dest="mode", const="stale", help="photos not at the current preset (default)")
    which.add_argument("--failed", action="store_const", dest="mode", const="failed", help="failed photos, given another go")
    which.add_argument("--ids", type=Path, help="a file of photo ids, one a line")
    which.add_argument("--prefix", help="originals in storage under this prefix (e.g. originals/); uncatalogued ones are catalogued")
    rep.add_argument("--owner")
    rep.add_argument("--created-after", type=timestamp, help="ISO date/time or epoch seconds")
    rep.add_argument("--created-before", type=timestamp, help="ISO date/time or epoch seconds")
    rep.add_argument("--rate", type=float, help="photos enqueued per second at most")
    rep.add_argument("--batch", type=int, default=500, help="photos per enqueue batch and checkpoint")
    rep.add_argument("--dry-run", action="store_true", help="print what would change and an estimate; change nothing")
    rep.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes, for the estimate")
    rep.add_argument("--no-wait", action="store_true", help="enqueue and return; follow with `reprocess status`")
    rep.add_argument("--stall-seconds", type=float, default=60.0, help="re-enqueue pending photos after this long with no progress")
    imp = sub.add_parser("import", help="import an existing library (folder, s3:// prefix or JSON Lines manifest); `import status` shows a job")
    imp.add_argument("source", nargs="?", help="a folder, s3://bucket/prefix, a manifest (.jsonl), or `status`")
    imp.add_argument("--job", help="with status: the job (default: the newest import); to run: resume this job")
    imp.add_argument("--rate", type=float, help="items imported and enqueued per second at most")
    imp.add_argument("--batch", type=int, default=200, help="items per batch and checkpoint")
    imp.add_argument("--threads", type=int, default=8, help="items checked and copied at once")
    imp.add_argument("--dry-run", action="store_true", help="print counts, bytes and a time estimate; change nothing")
    imp.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes, for the estimate")
    imp.add_argument("--no-wait", action="store_true", help="import and enqueue, then return; follow with `import status`")
    imp.add_argument("--stall-seconds", type=float, default=60.0, help="re-enqueue pending photos after this long with no progress")


def timestamp(text: str) -> float:
    from datetime import datetime, timezone

    try:
        return float(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def next_round(every: float | None) -> bool:
    """For a command run ``--every`` seconds: wait for its next round. False when it runs once, or
    when Ctrl-C stopped the wait."""
    if not every:
        return False
    try:
        time.sleep(every)
    except KeyboardInterrupt:
        return False
    return True


def _reprocess(settings: Settings, args: argparse.Namespace) -> int:
    from media_pipeline import reprocess
    from media_pipeline.jobs import Selection
    from media_pipeline.service import build_services
    from workers.celery_app import make_queue

    services = build_services(settings, queue=make_queue(settings))
    if args.action == "status":
        job = services.catalog.get_job(args.job)
        if job is None:
            print("no reprocess job", file=sys.stderr)
            return 1
        _print_report(job, services.catalog.job_report(job.id))
        return 0
    if args.job:
        job = services.catalog.get_job(args.job)
        if job is None:
            print(f"no job {args.job}", file=sys.stderr)
            return 1
        if job.selection.mode == "import":
            print(f"job {job.id} is an import: resume it with `media-pipeline import --job {job.id}`", file=sys.stderr)
            return 1
        if job.target_version != services.preset.version:
            print(f"job {job.id} targets preset {job.target_version}, the preset is now {services.preset.version}: start a new job",
                  file=sys.stderr)
            return 1
    else:
        selection = Selection(
            mode=args.mode or "stale", owner=args.owner, created_after=args.created_after, created_before=args.created_before,
            ids_file=str(args.ids.resolve()) if args.ids else None, prefix=args.prefix,
        )
        if args.dry_run:
            _print_estimate(reprocess.estimate(services, selection, args.workers), services.preset.version, args.workers, args.rate)
            return 0
        job = reprocess.start_job(services, selection)
    print(f"job {job.id}: preset {job.target_version}; resume with `media-pipeline reprocess --job {job.id}`", flush=True)
    return _run_job(services, job, args, "reprocess", "photos",
                    lambda stop: reprocess.enqueue(services, job, batch=args.batch, rate=args.rate, should_stop=stop))


def _run_job(services: Any, job: Any, args: argparse.Namespace, command: str, what: str, run: Any) -> int:
    """Enqueue (Ctrl-C or SIGTERM finishes the batch in hand and checkpoints), then follow the
    workers with a progress bar until every photo has its outcome, and print the report."""
    from media_pipeline import reprocess

    stop = {"now": False}

    def interrupt(signum: int, _frame: Any) -> None:
        stop["now"] = True  # finish the batch in hand and checkpoint it

    previous = signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    started = time.monotonic()
    count = run(lambda: stop["now"])
    signal.signal(signal.SIGINT, previous)
    elapsed = time.monotonic() - started
    print(f"enqueued {count} {what} in {elapsed:.1f} s ({count / max(elapsed, 1e-9):,.0f}/s)", flush=True)
    if stop["now"]:
        print(f"interrupted: resume with `media-pipeline {command} --job {job.id}`", file=sys.stderr)
        return 130
    if args.no_wait:
        return 0
    progress = _Progress()
    try:
        report = reprocess.wait(services, job, progress.show, stall_seconds=args.stall_seconds)
    except KeyboardInterrupt:
        print(f"\nstopped watching; the workers go on. `media-pipeline {command} status --job {job.id}`", file=sys.stderr)
        return 130
    progress.done()
    _print_report(services.catalog.get_job(job.id), report)
    return 1 if report.counts.get("failed") else 0


def _import(settings: Settings, args: argparse.Namespace) -> int:
    from media_pipeline.importing import importer
    from media_pipeline.importing.sources import open_source
    from media_pipeline.service import build_services
    from workers.celery_app import make_queue

    if not args.source and not args.job:
        print("media-pipeline import: give a SOURCE, `status`, or --job ID to resume", file=sys.stderr)
        return 2
    services = build_services(settings, queue=make_queue(settings))
    if args.source == "status" or args.job:
        job = services.catalog.get_job(args.job or services.catalog.latest_import_job_id() or "")
        if job is None or job.selection.mode != "import":
            print(f"no import job {args.job or ''}".rstrip(), file=sys.stderr)
            return 1
        if args.source == "status":
            _print_import_report(job, services.catalog.import_report(job.id), services.catalog.job_report(job.id))
            return 0
    spec = job.selection.source if args.job else args.source
    spec = spec if spec.startswith("s3://") else str(Path(spec).resolve())
    try:
        source = open_source(spec, settings, services.storage)
    except ValueError as exc:
        print(f"media-pipeline import: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        est = importer.estimate(services, source, args.workers)
        print(f"dry run of {spec} (nothing copied, nothing enqueued)")
        print(f"  items:            {est.items}")
        print(f"  already imported: {est.already_imported}")
        print(f"  bad:              {est.bad}  (manifest lines, missing objects, over MP_MAX_UPLOAD_BYTES)")
        print(f"  to import:        {est.to_import}, {size(est.bytes)} of originals to copy")
        floor = est.to_import / args.rate if args.rate else 0
        print("  time:             " + ("unknown (no processing time recorded yet)" if est.seconds is None else
                                        f"~{duration(max(est.seconds, floor))} with {args.workers} worker processes "
                                        "(from recorded processing times)"))
        return 0
    if not args.job:
        job = importer.start_job(services, spec)
    print(f"job {job.id}: import of {spec}; resume with `media-pipeline import --job {job.id}`", flush=True)
    code = _run_job(services, job, args, "import", "photos", lambda stop: importer.run(
        services, job, source, batch=args.batch, rate=args.rate, threads=args.threads, should_stop=stop))
    report = services.catalog.import_report(job.id)
    if code != 130:
        _print_items(report)
    return 1 if code == 0 and report.counts.get("bad") else code


def _print_import_report(job: Any, items: Any, processing: Any) -> None:
    print(f"import {job.id} [{job.status}] of {job.selection.source}")
    _print_items(items)
    print(f"  processing: pending {processing.counts.get('pending', 0)}, done {processing.counts.get('updated', 0)}, "
          f"already processed {processing.counts.get('up_to_date', 0)}, failed {processing.counts.get('failed', 0)}")
    for photo_id, code in processing.failures:
        print(f"  failed: {photo_id} {code}")


def _print_items(report: Any) -> None:
    counts = report.counts
    print(f"  items {report.items}: imported {counts.get('imported', 0)}, already imported {counts.get('already_imported', 0)}, "
          f"bad {counts.get('bad', 0)}, skipped {counts.get('skipped', 0)}; originals copied {size(report.bytes)}")
    for item, code, message in report.bad:
        print(f"  bad: {item}: {code}: {message}")


class _Progress:
    """One line, redrawn: a bar, counts per outcome, rate and ETA."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0

    def show(self, report: Any) -> None:
        now = time.monotonic()
        self.samples = [s for s in self.samples if now - s[0] < 10] + [(now, report.finished)]
        span = self.samples[-1][0] - self.samples[0][0]
        rate = (self.samples[-1][1] - self.samples[0][1]) / span if span > 0 else 0.0
        total = max(report.total, 1)
        left = report.total - report.finished
        eta = duration(left / rate) if rate > 0 else "--:--:--"
        filled = int(30 * report.finished / total)
        counts = " ".join(f"{k} {v}" for k, v in sorted(report.counts.items()) if k != "pending")
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {report.finished}/{report.total} {counts} | {rate:.1f} photos/s | ETA {eta}"
        if self.tty:
            print("\r" + line.ljust(110), end="", file=sys.stderr, flush=True)
        elif now - self.last_print >= 2 or left == 0:
            print(line, file=sys.stderr, flush=True)
            self.last_print = now

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def _print_estimate(est: Any, version: str, workers: int, rate: float | None) -> None:
    print(f"dry run against preset {version} (nothing enqueued, nothing written)")
    print(f"  photos selected:           {est.selected}")
    print(f"  not at the current preset: {est.to_update}")
    print(f"  renditions to render:      {est.renditions_to_render}  (from a sample of {est.sample} photos)")
    print(f"  renditions to retire:      {est.renditions_to_retire}")
    if est.seconds is None:
        print("  time:                      unknown (no processing time recorded yet)")
    else:
        floor = est.to_update / rate if rate else 0
        print(f"  time:                      ~{duration(max(est.seconds, floor))} with {workers} worker processes "
              "(from recorded processing times)")
    print(f"  bytes to write:            {'unknown' if est.bytes_written is None else '~' + size(est.bytes_written)}")


def _print_report(job: Any, report: Any) -> None:
    took = (report.last_finished_at or job.updated_at) - job.created_at
    print(f"job {job.id} [{job.status}] preset {job.target_version}, selection {job.selection.to_dict()}")
    print(f"  enqueued {job.enqueued}, finished {report.finished}, pending {report.counts.get('pending', 0)}")
    for outcome in ("updated", "up_to_date", "failed", "missing"):
        print(f"  {outcome:11s} {report.counts.get(outcome, 0)}")
    print(f"  written {size(report.bytes_written)}, deleted {size(report.bytes_deleted)}, elapsed {duration(max(took, 0))}")
    for photo_id, code in report.failures:
        print(f"  failed: {photo_id} {code}")


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "reprocess": _reprocess,
    "import": _import,
}
