"""``media-pipeline`` commands: serve, api, worker, render, reprocess, check, settings, nginx-config; the
commands that move the catalog or storage are in ``cli_moves``, the batch jobs (reprocess, import) in ``cli_jobs``,
the near-duplicate indexes' upkeep (index-snapshot, refile-keypoints) in ``cli_index``."""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from config.settings import ConfigError, Settings, settings_table
from media_pipeline import cli_index as index_commands
from media_pipeline import cli_jobs as jobs
from media_pipeline import cli_moves as moves
from media_pipeline.cli_jobs import duration, next_round, size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="media-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="API and worker together on embedded defaults; Ctrl-C stops both")
    _server_options(serve)
    serve.add_argument("--front", choices=["nginx"], help="also run the nginx front on MP_FRONT_LISTEN (nginx must be installed)")
    front = sub.add_parser("nginx-config", help="print the nginx front's configuration for the current settings")
    front.add_argument("--listen", help="host:port nginx listens on (default MP_FRONT_LISTEN)")
    front.add_argument("--upstream", help="the API, e.g. http://127.0.0.1:8080 (default MP_HOST:MP_PORT)")
    front.add_argument("--data-dir", type=Path, help="the data folder the settings name (storage, the front's runtime files)")
    api = sub.add_parser("api", help="the HTTP API under gunicorn")
    _server_options(api)
    worker = sub.add_parser("worker", help="a Celery worker")
    worker.add_argument("--data-dir", type=Path)
    worker.add_argument("--concurrency", type=int, help="worker processes (default MP_WORKER_CONCURRENCY or one per core)")
    worker.add_argument("--queues", default="photos,reprocess", help="photos (uploads) first, then reprocess")
    render = sub.add_parser("render", help="run the pipeline on local files, with no service")
    render.add_argument("files", nargs="+", type=Path)
    render.add_argument("--out", type=Path, required=True)
    moves.add_parsers(sub)
    jobs.add_parsers(sub)
    sub.add_parser("webhooks", help="deliver the events outbox to MP_WEBHOOK_URLS until stopped (serve runs it)")
    index_commands.add_parsers(sub)
    sub.add_parser("cleanup", help="delete renditions retired longer than MP_RENDITION_KEEP_SECONDS ago")
    chk = sub.add_parser("check", help="report where the catalog and storage disagree; exit 1 if they do")
    chk.add_argument("--json", action="store_true", help="print the report as JSON")
    rec = sub.add_parser("reconcile", help="re-enqueue photos stuck in queued/processing; give up after MP_MAX_ATTEMPTS")
    rec.add_argument("--every", type=float, help="repeat every N seconds until stopped")
    rec.add_argument("--data-dir", type=Path)
    key = sub.add_parser("api-key", help="make a new API key for a client app: prints the key once and its MP_API_KEYS entry")
    key.add_argument("name", help="who gets it, e.g. ios-app; shown in logs and rate limits")
    key.add_argument("--operator", action="store_true", help="an operator key (MP_OPERATOR_KEYS), which opens the console")
    sign = sub.add_parser("sign", help="sign an on-demand rendition path, e.g. /i/<id>/480.webp")
    sign.add_argument("path")
    sub.add_parser("settings", help="print every setting with its default")

    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    for name in ("data_dir", "host", "port"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    if args.command == "settings":
        print(settings_table())
        return 0
    if args.command == "api-key":
        return _api_key(args.name, args.operator)
    try:
        settings = Settings.from_env(**overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command in ("serve", "api", "worker", "webhooks"):
        _count_in_files(settings)
    return {
        "serve": _serve,
        "api": _api,
        "worker": _worker,
        "render": _render,
        **moves.COMMANDS,
        **jobs.COMMANDS,
        "sign": _sign,
        "nginx-config": _nginx_config,
        "cleanup": _cleanup,
        **index_commands.COMMANDS,
        "reconcile": _reconcile,
        "webhooks": _webhooks,
        "check": _check,
    }[args.command](settings, args)


def _count_in_files(settings: Settings) -> None:
    """Metrics in multiprocess mode: prometheus_client decides when it is first imported, so this
    comes before anything imports it; child processes inherit it."""
    settings.metrics_folder.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(settings.metrics_folder.resolve())


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--data-dir", type=Path)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    from media_pipeline.catalog import make_catalog
    from media_pipeline.supervisor import Supervisor

    make_catalog(settings).migrate()  # once, before two processes race to do it
    env = {**os.environ, **settings.as_env()}
    me = [sys.executable, "-m", "media_pipeline.cli"]
    front: list[str] = []
    if args.front == "nginx":
        from media_pipeline import nginx

        try:
            front = nginx.command(nginx.find_nginx(), nginx.prepare(nginx.front_for(settings, run_as_me=True)))
        except nginx.NginxMissing as exc:
            print(f"media-pipeline: --front nginx: {exc}", file=sys.stderr)
            return 2
    children = {
        "API": [*me, "api"],
        "worker": [*me, "worker"],
        # The embedded broker keeps no unacknowledged messages: the reconciler makes up for it.
        "reconciler": [*me, "reconcile", "--every", "60"],
    }
    if settings.webhook_receivers:
        children["webhook deliverer"] = [*me, "webhooks"]
    if front:
        children["nginx front"] = front

    def started() -> None:
        print(f"media-pipeline: API on http://{settings.bind_host}:{settings.port}, data in {settings.data_dir.resolve()}",
              flush=True)
        if front:
            print(f"media-pipeline: nginx front on http://{settings.front_listen}", flush=True)

    return Supervisor(children, env).run(on_started=started)


def _nginx_config(settings: Settings, args: argparse.Namespace) -> int:
    from media_pipeline import front, nginx

    try:
        print(front.render(nginx.front_for(settings, listen=args.listen, upstream=args.upstream)), end="")
    except ValueError as exc:
        print(f"media-pipeline: {exc}", file=sys.stderr)
        return 2
    return 0


def _api_key(name: str, operator: bool = False) -> int:
    from media_pipeline.apikeys import hash_key, new_key

    if not name or any(c in name for c in ":,! "):
        print("the name must not be empty or contain ':', ',', '!' or spaces", file=sys.stderr)
        return 2
    key = new_key()
    who, setting = ("the operator", "MP_OPERATOR_KEYS") if operator else ("the client app", "MP_API_KEYS")
    print(f"key (give it to {who}; it is not stored anywhere): {key}")
    print(f"add to {setting}: {name}:{hash_key(key)}")
    return 0


def _api(settings: Settings, args: argparse.Namespace) -> int:
    if settings.bind_host != settings.host:
        print(f"media-pipeline: no API key is configured (MP_API_KEYS), so the API binds to {settings.bind_host} "
              f"only, not {settings.host}", file=sys.stderr, flush=True)
    from gunicorn.app.base import BaseApplication

    from media_pipeline import logs
    from media_pipeline.web import create_app

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{settings.bind_host}:{settings.port}")
            self.cfg.set("workers", settings.api_workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", settings.api_threads)
            self.cfg.set("keepalive", 30)
            self.cfg.set("timeout", 60)
            self.cfg.set("graceful_timeout", 10)
            if settings.access_log:
                self.cfg.set("accesslog", settings.access_log)
            self.cfg.set("logconfig_dict", logs.gunicorn_logconfig(settings.log_level, settings.log_format))
            if settings.log_format == "json":
                self.cfg.set("access_log_format", '%(h)s "%(r)s" %(s)s %(B)s %(M)sms')

        def load(self) -> Any:
            from workers.celery_app import make_queue  # in each gunicorn worker: the master sends no tasks

            return create_app(settings, queue=make_queue(settings))

    Server().run()
    return 0


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    os.environ.update(settings.as_env())  # the module-level app reads them
    from media_pipeline import logs
    from workers.celery_app import app

    logs.configure(settings.log_level, settings.log_format)  # before Celery's start-up checks warn

    concurrency = args.concurrency or settings.worker_concurrency or os.cpu_count() or 1
    quiet = ["--quiet"] if settings.log_format == "json" else []  # the start-up banner is not JSON
    app.worker_main(
        [
            *quiet,  # a global option: before the command
            "worker",
            f"--loglevel={settings.log_level}",
            f"--queues={args.queues}",
            f"--concurrency={concurrency}",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            f"--hostname=mp-{os.getpid()}@%h",
        ]
    )
    return 0


def _animated(data: bytes, info: Any, widths: tuple[int, ...], encoders: tuple[Any, ...]) -> Iterator[Any]:
    """The animated renditions, lazily: the frames are decoded only once the stills are done."""
    from media_pipeline import animation

    yield from animation.iter_animated(animation.decode_frames(data, info), widths, encoders)


def _render(settings: Settings, args: argparse.Namespace) -> int:
    from media_pipeline import animated_renditions, animation, pipeline, vips
    from media_pipeline.errors import MediaPipelineError
    from media_pipeline.metadata import extract_metadata

    vips.configure(settings.vips_concurrency)
    preset = settings.preset()
    failures = 0
    for path in args.files:
        data = path.read_bytes()
        out_dir = args.out / path.stem
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            started = time.perf_counter()
            job = pipeline.prepare(data, preset, settings.max_pixels)
            prepare_ms = (time.perf_counter() - started) * 1000
            meta = extract_metadata(job.info)
            print(f"{path}: {job.info.format.value} {job.info.width}x{job.info.height} orientation={meta.orientation} "
                  f"profile={meta.color_profile} gamut={job.gamut} hdr={job.info.hdr or 'no'} decode+resize {prepare_ms:.0f} ms")
            moving = animated_renditions.animation_of(settings, job.info)
            if moving.animated:
                print(f"  animation: {moving.frames} frames, {moving.duration_ms} ms, "
                      + ("kept" if moving.kept else f"stills only ({moving.dropped})"))
            total = prepare_ms
            t = time.perf_counter()
            renditions = pipeline.iter_renditions(job, preset.eager, release=True)
            if moving.kept:  # after the stills, as the worker does; its frames are decoded in the first step
                encoders = tuple(e for fmt in animation.ANIMATED_FORMATS if (e := preset.encoder(fmt)) is not None)
                renditions = itertools.chain(renditions, _animated(data, job.info, job.widths, encoders))
            for rendition in renditions:
                ms = (time.perf_counter() - t) * 1000
                total += ms
                name = f"{rendition.width}{'.animated' if rendition.animated else ''}.{rendition.extension}"
                (out_dir / name).write_bytes(rendition.data)
                kind = f"{'animated' if rendition.animated else 'still'} {rendition.gamut} {'hdr' if rendition.hdr else 'sdr'}"
                print(f"  {rendition.width:5d} {rendition.format:5s} {kind:17s} {len(rendition.data):9d} bytes {ms:8.1f} ms")
                t = time.perf_counter()
            print(f"  total {total:.0f} ms")
        except MediaPipelineError as exc:
            failures += 1
            print(f"{path}: failed: {exc.code}: {exc.message}", file=sys.stderr)
    return 1 if failures else 0


def _check(settings: Settings, args: argparse.Namespace) -> int:
    import json as jsonlib

    from media_pipeline.check import check, record
    from media_pipeline.queue import RecordingQueue
    from media_pipeline.service import build_services

    services = build_services(settings, queue=RecordingQueue())
    report = check(services)
    record(services, report)
    if args.json:
        print(jsonlib.dumps({"ok": report.ok, "photos": report.photos, "counts": report.counts, "examples": report.problems,
                             "webhooks": report.webhooks}, indent=2))
    else:
        print("photos by status: " + (", ".join(f"{k} {v}" for k, v in sorted(report.photos.items())) or "none"))
        if report.webhooks:
            age = report.webhooks["oldest_undelivered_seconds"]
            print(f"webhooks: {report.webhooks['pending']} deliveries pending, {report.webhooks['failed']} failed; "
                  f"oldest undelivered event {'none' if age is None else duration(age)}")
        print("catalog and storage agree" if report.ok else "problems:")
        for kind, count in sorted(report.counts.items()):
            print(f"  {kind}: {count}")
            for example in report.problems[kind]:
                print(f"    {example}")
    return 0 if report.ok else 1


def _reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from media_pipeline.duplicates import refile_keypoints, restore_postings
    from media_pipeline.errors import MediaPipelineError
    from media_pipeline.purging import deliver_due
    from media_pipeline.service import build_services, reconcile
    from workers.celery_app import make_queue

    services = build_services(settings, queue=make_queue(settings))
    while True:
        try:
            requeued, abandoned = reconcile(services)
            if not args.every or requeued or abandoned:
                print(f"re-enqueued {requeued}, abandoned {abandoned}", flush=True)
            sent, failed = deliver_due(services)  # CDN purges the deleting process could not send
            if sent or failed:
                print(f"purges sent {sent}, not acknowledged {failed}", flush=True)
            # Photos filed under an older keypoint format, a batch a round, after an upgrade.
            if refiled := refile_keypoints(services, batches=1):
                print(f"re-filed {refiled} photos under the current keypoint keys", flush=True)
            # After a switch from MP_DUPLICATE_INDEX=memory back to sql, the photos it filed get their postings.
            if restored := restore_postings(services, batches=1):
                print(f"wrote the keypoint postings of {restored} photos filed while votes ran in memory", flush=True)
            # The near-duplicate indexes' change log grows a row a filing: this loop runs in every
            # deployment (`serve` too, where no daily cleanup does), and a round deletes 100,000 at most.
            if pruned := services.catalog.prune_index_changes(time.time() - settings.index_changes_keep_seconds):
                print(f"pruned {pruned} index changes older than MP_INDEX_CHANGES_KEEP_SECONDS", flush=True)
        except MediaPipelineError as exc:  # a backend is down: try again next round
            print(f"reconcile: {exc.code}: {exc.message}", file=sys.stderr, flush=True)
            if not args.every:
                return 1
        if not next_round(args.every):
            return 0


def _webhooks(settings: Settings, args: argparse.Namespace) -> int:
    import threading

    from media_pipeline import logs, webhooks
    from media_pipeline.queue import RecordingQueue
    from media_pipeline.service import build_services

    if not settings.webhook_receivers:
        print("neither MP_WEBHOOK_URLS nor MP_WEBHOOK_KEY_URLS is set", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    webhooks.run(build_services(settings, queue=RecordingQueue()), stop)
    return 0


def _cleanup(settings: Settings, args: argparse.Namespace) -> int:
    from media_pipeline.queue import RecordingQueue
    from media_pipeline.service import build_services, cleanup_retired

    from media_pipeline import direct_uploads
    from media_pipeline.resumable import make_tus_store

    services = build_services(settings, queue=RecordingQueue())
    count, size = cleanup_retired(services)
    print(f"deleted {count} retired renditions, {size(size)}")
    expired = make_tus_store(settings.tus_dir, settings.tus_expire_seconds, services.storage).expire(time.time())
    print(f"removed {expired} expired resumable uploads")
    targets = direct_uploads.expire(services, time.time())
    print(f"removed {targets} expired direct-upload targets")
    events = services.catalog.prune_events(time.time() - settings.events_keep_seconds)
    print(f"removed {events} events older than MP_EVENTS_KEEP_SECONDS")
    from media_pipeline import front, nginx

    copies = nginx.prune_mirror(nginx.front_for(settings), time.time())
    print(f"removed {copies} copies in the nginx front's mirror not read for {front.MIRROR_UNREAD_DAYS} days")
    return 0


def _sign(settings: Settings, args: argparse.Namespace) -> int:
    from media_pipeline import signing

    keys = settings.signing_key_list
    if not keys:
        print("MP_SIGNING_KEYS is not set", file=sys.stderr)
        return 2
    print(f"{settings.public_base_url}{signing.signed_path(args.path, keys[0])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
