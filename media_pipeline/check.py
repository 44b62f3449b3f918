"""Consistency between the catalog and storage: what an operator runs after an incident.

Catalog ids and storage keys both sort by photo id, so the check is a merge of sorted streams:
memory does not grow with the number of photos.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import groupby
from typing import Iterator

from media_pipeline.hashindex.features import SqlFeatureIndex
from media_pipeline.jobs import Selection
from media_pipeline.models import PhotoStatus
from media_pipeline.service import Services
from media_pipeline import direct_uploads, keypoints, webhooks
from media_pipeline.resumable import make_tus_store
from media_pipeline.storage.base import ORIGINALS, RENDITIONS

EXAMPLES = 20


@dataclass
class CheckReport:
    photos: dict[str, int] = field(default_factory=dict)  # status -> count
    problems: dict[str, list[str]] = field(default_factory=dict)  # kind -> examples
    counts: dict[str, int] = field(default_factory=dict)  # kind -> how many
    webhooks: dict[str, float | None] = field(default_factory=dict)  # pending, failed, oldest_undelivered_seconds

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        examples = self.problems.setdefault(kind, [])
        if len(examples) < EXAMPLES:
            examples.append(example)

    @property
    def ok(self) -> bool:
        return not self.counts


def _catalog_ids(services: Services) -> Iterator[str]:
    after = ""
    while ids := services.catalog.select_photo_ids(Selection(mode="all"), "", after=after, limit=1000):
        yield from ids
        after = ids[-1]


def check(services: Services, now: float | None = None) -> CheckReport:
    report = CheckReport()
    stuck_before = (time.time() if now is None else now) - services.settings.stuck_after_seconds
    originals = (k[len(ORIGINALS):] for k in services.storage.list(ORIGINALS))
    rendition_groups = groupby(services.storage.list(RENDITIONS), key=lambda k: k[len(RENDITIONS):].split("/", 1)[0])
    next_original = next(originals, None)
    group_id, group = next(rendition_groups, (None, iter(())))
    for photo_id in _catalog_ids(services):
        while next_original is not None and next_original < photo_id:
            report.add("original_without_catalog_row", f"{ORIGINALS}{next_original}")
            next_original = next(originals, None)
        while group_id is not None and group_id < photo_id:
            report.add("renditions_of_unknown_photo", f"{RENDITIONS}{group_id}/")
            group_id, group = next(rendition_groups, (None, iter(())))
        photo = services.catalog.get_photo(photo_id)
        if photo is None:  # deleted meanwhile
            continue
        report.photos[photo.status.value] = report.photos.get(photo.status.value, 0) + 1
        if next_original == photo_id:
            next_original = next(originals, None)
        else:
            report.add("catalog_row_without_original", photo_id)
        stored: set[str] = set()
        if group_id == photo_id:
            stored = set(group)
            group_id, group = next(rendition_groups, (None, iter(())))
        known = {r.key for r in services.catalog.all_renditions(photo_id)}
        for key in sorted(stored - known):
            report.add("rendition_without_catalog_row", key)
        current = {r.key for r in photo.renditions}
        for key in sorted(current - stored):
            report.add("rendition_missing_from_storage", key)
        if photo.status is PhotoStatus.READY and not photo.renditions:
            report.add("ready_without_renditions", photo_id)
        if photo.status in (PhotoStatus.QUEUED, PhotoStatus.PROCESSING) and photo.updated_at < stuck_before:
            report.add("stuck_queued_or_processing", photo_id)
    while next_original is not None:
        report.add("original_without_catalog_row", f"{ORIGINALS}{next_original}")
        next_original = next(originals, None)
    while group_id is not None:
        report.add("renditions_of_unknown_photo", f"{RENDITIONS}{group_id}/")
        group_id, group = next(rendition_groups, (None, iter(())))
    for key in direct_uploads.leftovers(services, time.time() if now is None else now):
        report.add("expired_upload_target", key)
    tus = make_tus_store(services.settings.tus_dir, services.settings.tus_expire_seconds, services.storage)
    for key in tus.leftovers(time.time() if now is None else now):
        report.add("expired_resumable_upload", key)
    _check_webhooks(services, report, time.time() if now is None else now)
    # An upgrade from an older filing format's vote keys leaves photos that no keypoint vote reaches until
    # `media-pipeline refile-keypoints` files them again (docs/near-duplicates.md).
    for photo_id, _ in services.feature_index.filed_below(keypoints.LEGACY_KEYS_BELOW, EXAMPLES):
        report.add("keypoints_under_old_keys", f"{photo_id} (run media-pipeline refile-keypoints)")
    _check_keypoint_postings(services, report)
    return report


def _check_keypoint_postings(services: Services, report: CheckReport) -> None:
    """With votes in SQL, every photo's postings must be exactly the keys of its packed row (the
    store of record): photos filed while votes ran in memory have none until
    ``refile-keypoints`` (or the reconciler) writes them; any other difference is a fault that
    reprocessing the photo files away."""
    index = services.feature_index
    if not (isinstance(index, SqlFeatureIndex) and index.postings):
        return  # votes in memory read the packed rows alone
    for photo_id, packed, postings in index.disagreements():
        report.add("keypoint_postings_disagree",
                   f"{photo_id} ({packed} keys in its packed row, {postings} postings)"
                   + (" (run media-pipeline refile-keypoints)" if packed and not postings else ""))


def _check_webhooks(services: Services, report: CheckReport, now: float) -> None:
    """The events outbox: deliveries given up are problems; what is still owed, and since when, is said."""
    if not services.settings.webhook_receivers:
        return
    owed = services.catalog.count_deliveries()
    report.webhooks = {**owed, "oldest_undelivered_seconds": webhooks.undelivered_age(services, now)}
    for url, event_id, event_type, attempts, error in services.catalog.failed_deliveries(EXAMPLES):
        report.add("webhook_delivery_failed", f"{event_id} ({event_type}) to {url}: {attempts} attempts, last: {error}")
    if owed["failed"]:
        report.counts["webhook_delivery_failed"] = owed["failed"]  # all of them, not only the examples


def record(services: Services, report: CheckReport, finished_at: float | None = None) -> None:
    """Keep the run's summary in the catalog: the console's Health view shows the last one."""
    summary = {"photos": report.photos, "counts": report.counts}
    services.catalog.record_check(time.time() if finished_at is None else finished_at, report.ok, summary)
