"""The commands that create, upgrade and move where the service keeps things: ``migrate`` (the
catalog schema), ``migrate-catalog`` (SQLite into PostgreSQL) and ``migrate-storage`` (every object
into another store)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

from config.settings import Settings


def add_parsers(sub: Any) -> None:
    sub.add_parser("migrate", help="create or upgrade the catalog schema")
    copy = sub.add_parser("migrate-catalog", help="copy this SQLite catalog into PostgreSQL, verified table by table")
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host/db (created at the current schema)")
    copy.add_argument("--resume", action="store_true", help="finish an interrupted copy: tables that verify are left alone")
    move = sub.add_parser("migrate-storage", help="copy every object into another store, each verified; run again to resume")
    move.add_argument("--to", required=True, metavar="URL", help="file:///folder or s3://bucket[/prefix]?endpoint=…&region=…&addressing=…")
    move.add_argument("--from", dest="source", metavar="URL",
                      help="the store to copy from (default: MP_STORAGE_FALLBACK_URL when set, else this service's store)")
    move.add_argument("--workers", type=int, default=8, help="objects copied at a time")


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from media_pipeline.catalog import make_catalog

    make_catalog(settings).migrate()
    print("catalog schema is up to date")
    return 0


def _migrate_catalog(settings: Settings, args: argparse.Namespace) -> int:
    from media_pipeline.catalog.copy import copy_catalog
    from media_pipeline.catalog.sql import SqlCatalog
    from media_pipeline.errors import CatalogError

    source, target = SqlCatalog(settings.effective_catalog_url), SqlCatalog(args.to)
    if target.dialect != "postgresql":
        print("--to must be a postgresql:// URL", file=sys.stderr)
        return 2
    try:
        tables = copy_catalog(source, target, resume=args.resume)
    except CatalogError as exc:
        print(exc, file=sys.stderr)
        return 1
    for table in tables:
        print(f"{table.table}: {table.rows} rows {'copied' if table.copied else 'already there'}, verified (sha256 sum {table.checksum[:16]})")
    print(f"done: switch MP_CATALOG_URL to {args.to}")
    return 0


def _migrate_storage(settings: Settings, args: argparse.Namespace) -> int:
    from media_pipeline.storage import make_storage
    from media_pipeline.storage.migrate import copy_storage
    from media_pipeline.storage.urls import environment_for, settings_for, url_of

    here = settings.replace(storage_fallback_url="")
    try:
        source_url = args.source or settings.storage_fallback_url or url_of(here)
        source, target = settings_for(source_url, here), settings_for(args.to, here)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if url_of(source) == url_of(target):
        print(f"--to names the store being copied from ({url_of(source)})", file=sys.stderr)
        return 2
    report = copy_storage(make_storage(source), make_storage(target), workers=args.workers, progress=_progress_printer())
    print(f"\n{report.copied} objects copied ({report.copied_bytes / 1e6:.1f} MB), {report.verified} already there and verified, "
          f"{report.vanished} deleted meanwhile, {len(report.failed)} failed")
    for key, reason in report.failed[:20]:
        print(f"  failed: {key}: {reason}", file=sys.stderr)
    if report.failed:
        print("run the same command again: objects that verify are left alone", file=sys.stderr)
        return 1
    env = " ".join(f"{name}={value}" for name, value in environment_for(args.to, here).items())
    print(f"done: switch every process to {env} with MP_STORAGE_FALLBACK_URL={source_url}; run this command once more "
          "(with --from) after they all run on the new store, then remove MP_STORAGE_FALLBACK_URL and run `media-pipeline check`")
    return 0


def _progress_printer() -> Callable[[str, Any], None]:
    started, last = time.monotonic(), [0.0]

    def show(key: str, report: Any) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            rate = report.seen / max(now - started, 1e-6)
            print(f"\r{report.seen} objects: {report.copied} copied, {report.verified} verified, {report.copied_bytes / 1e6:.1f} MB, "
                  f"{rate:.0f}/s; now {key[:60]}", end="", flush=True)

    return show


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "migrate": _migrate,
    "migrate-catalog": _migrate_catalog,
    "migrate-storage": _migrate_storage,
}
