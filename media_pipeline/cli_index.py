"""The commands that maintain the near-duplicate indexes: ``index-snapshot`` (the memory indexes
written for a host's processes to start from) and ``refile-keypoints`` (photos filed under an
older keypoint format, or missing their postings)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

from config.settings import Settings
from media_pipeline.cli_jobs import next_round


def add_parsers(sub: Any) -> None:
    snap = sub.add_parser("index-snapshot", help="write the memory near-duplicate indexes to MP_INDEX_SNAPSHOT_DIR for this host's "
                          "processes to start from and share (run it more often than MP_INDEX_CHANGES_KEEP_SECONDS)")
    snap.add_argument("--dir", type=Path, help="where to write it (default MP_INDEX_SNAPSHOT_DIR)")
    snap.add_argument("--keep", type=int, default=2, help="snapshots kept, the new one included (older ones are deleted)")
    snap.add_argument("--every", type=float, help="write one every N seconds until stopped, the indexes kept between "
                      "(brought up to date by the change log), instead of once")
    sub.add_parser("refile-keypoints", help="file photos indexed under an older format's keypoint keys under the current ones (once, after upgrading), "
                   "and with MP_DUPLICATE_INDEX=sql write the postings of photos filed while it was memory")


def _index_snapshot(settings: Settings, args: argparse.Namespace) -> int:
    from media_pipeline.catalog.sql import SqlCatalog
    from media_pipeline.errors import MediaPipelineError
    from media_pipeline.hashindex.synced import write_snapshot

    directory = args.dir or settings.index_snapshot_dir
    if directory is None:
        print("index-snapshot: set MP_INDEX_SNAPSHOT_DIR or pass --dir", file=sys.stderr)
        return 2
    if args.keep < 1 or (args.every is not None and args.every <= 0):
        print("index-snapshot: --keep must be at least 1 and --every above 0", file=sys.stderr)
        return 2
    catalog = SqlCatalog(settings.effective_catalog_url)
    indexes = None
    try:
        while True:
            started = time.monotonic()
            try:
                path, indexes = write_snapshot(catalog, directory, args.keep, indexes)
            except (MediaPipelineError, OSError) as exc:  # the catalog or the disk: try again next round
                print(f"index-snapshot: {exc}", file=sys.stderr, flush=True)
                if not args.every:
                    return 1
            else:
                print(f"wrote {path} at change {indexes.position().high}: {indexes.hashes.count()} view hashes, "
                      f"{indexes.features.postings()} keypoint postings, in {time.monotonic() - started:.1f} s", flush=True)
            if not next_round(args.every):
                return 0
    finally:
        catalog.close()


def _refile_keypoints(settings: Settings, args: argparse.Namespace) -> int:
    from media_pipeline.duplicates import refile_keypoints, restore_postings
    from media_pipeline.queue import RecordingQueue
    from media_pipeline.service import build_services

    services = build_services(settings, queue=RecordingQueue())
    print(f"re-filed {refile_keypoints(services)} photos under the current keypoint keys")
    if restored := restore_postings(services):
        print(f"wrote the keypoint postings of {restored} photos filed while votes ran in memory")
    return 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "index-snapshot": _index_snapshot,
    "refile-keypoints": _refile_keypoints,
}
