"""Batch reprocessing: bring every selected photo up to the current preset without downtime.

The job lives in the catalog: its selection, a cursor (checkpoint) and one item per photo, which
is ``pending`` once enqueued and takes its first outcome exactly once. Enqueueing streams ids in
batches (memory does not grow with the number of photos), moves the cursor after each batch, and
can be rate-limited; a crashed or interrupted run resumes from the cursor. While waiting, items
that stay pending with no progress at all for ``stall_seconds`` (their message was lost with a
killed worker) are enqueued again; the task is idempotent, so a duplicate costs nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

from media_pipeline import animated_renditions, crop_renditions, pipeline, service
from media_pipeline.errors import MediaError, ObjectNotFound
from media_pipeline.jobs import JobReport, ReprocessJob, Selection
from media_pipeline.models import Photo, PhotoStatus
from media_pipeline.probe import probe
from media_pipeline.service import PRIVATE, Services, is_photo_id, new_photo_id
from media_pipeline.storage import original_key

OUTCOMES = {
    service.Outcome.DONE: "updated",
    service.Outcome.ALREADY_DONE: "up_to_date",
    service.Outcome.FAILED: "failed",
    service.Outcome.MISSING: "missing",
}


# --------------------------------------------------------------------------- one photo (the task's work)
def reprocess_one(services: Services, job: ReprocessJob, photo_id: str) -> str:
    started = time.monotonic()
    if job.selection.mode == "failed":
        services.catalog.requeue(photo_id)
    result = service.run_photo(services, photo_id)
    outcome = OUTCOMES[result.outcome]
    services.catalog.record_item(job.id, photo_id, outcome, result.code, result.bytes_written, result.bytes_deleted,
                                 time.monotonic() - started)
    return outcome


# --------------------------------------------------------------------------- enqueueing
def start_job(services: Services, selection: Selection) -> ReprocessJob:
    now = time.time()
    job = ReprocessJob(id=new_photo_id(now), selection=selection, target_version=services.preset.version,
                       status="enqueuing", cursor="", enqueued=0, created_at=now, updated_at=now)
    services.catalog.create_job(job)
    return job


def id_batches(services: Services, job: ReprocessJob, batch: int) -> Iterator[tuple[str, list[str]]]:
    """(cursor after the batch, photo ids), resuming after ``job.cursor``."""
    selection = job.selection
    if selection.mode == "import":
        raise ValueError(f"job {job.id} is an import: resume it with `media-pipeline import --job {job.id}`")
    if selection.ids_file:
        done = int(job.cursor or 0)
        chunk: list[str] = []
        with open(selection.ids_file) as fh:
            for line_no, line in enumerate(fh, 1):
                photo_id = line.strip()
                if line_no <= done or not photo_id:
                    continue
                if is_photo_id(photo_id):
                    chunk.append(photo_id)
                if len(chunk) >= batch:
                    yield str(line_no), chunk
                    chunk = []
            if chunk:
                yield str(line_no), chunk
        return
    if selection.prefix is not None:
        keys: list[str] = []
        for key in services.storage.list(selection.prefix):
            if key <= job.cursor:
                continue
            keys.append(key)
            if len(keys) >= batch:
                yield keys[-1], [i for i in (import_original(services, k) for k in keys) if i]
                keys = []
        if keys:
            yield keys[-1], [i for i in (import_original(services, k) for k in keys) if i]
        return
    cursor = job.cursor
    while True:
        ids = services.catalog.select_photo_ids(selection, job.target_version, after=cursor, limit=batch)
        if not ids:
            return
        cursor = ids[-1]
        yield cursor, ids


def import_original(services: Services, key: str) -> str | None:
    """Catalog an original found in storage with no row (e.g. imported from another system).

    A key named by a photo id keeps it; any other is copied to ``originals/<new id>`` (the source
    stays). Files that are not acceptable images are skipped. Returns the photo id.
    """
    name = key.rsplit("/", 1)[-1]
    if is_photo_id(name) and services.catalog.get_photo(name) is not None:
        return name
    try:
        data = services.storage.get(key)
        info = probe(data, services.settings.max_pixels)
    except (MediaError, ObjectNotFound):
        return None
    now = time.time()
    photo_id = name if is_photo_id(name) and key == original_key(name) else new_photo_id(now)
    target = original_key(photo_id)
    if target != key:
        services.storage.put(target, data, f"image/{info.format.value}", PRIVATE)
    import hashlib

    services.catalog.add_photo(Photo(
        id=photo_id, status=PhotoStatus.QUEUED, owner=None, sha256=hashlib.sha256(data).hexdigest(), original_key=target,
        original_format=info.format.value, original_width=info.upright_size[0], original_height=info.upright_size[1],
        original_bytes=len(data), created_at=now, updated_at=now, animation=animated_renditions.animation_of(services.settings, info),
        original_hdr=info.hdr is not None,
    ))
    return photo_id


def enqueue(services: Services, job: ReprocessJob, batch: int = 500, rate: float | None = None,
            should_stop: Callable[[], bool] = lambda: False,
            batches: Callable[[int], Iterator[tuple[str, list[str]]]] | None = None) -> int:
    """Enqueue the job's photos from its cursor on; returns how many were enqueued in this run.
    ``batches(size)`` gives (cursor, photo ids) from the cursor on (an import makes its photos
    there); by default, the job's selection."""
    services.catalog.set_job_status(job.id, "enqueuing")
    if rate:
        batch = max(1, min(batch, int(rate / 10)))  # a tenth of a second's worth at a time
    started = time.monotonic()
    count = 0
    for cursor, ids in (batches or (lambda size: id_batches(services, job, size)))(batch):
        if rate:
            ahead = count / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        if ids:
            services.queue.enqueue_reprocess(job.id, ids)
        count += services.catalog.checkpoint(job.id, cursor, ids)
        if should_stop():
            services.catalog.set_job_status(job.id, "interrupted")
            return count
    services.catalog.set_job_status(job.id, "waiting")
    return count


def wait(services: Services, job: ReprocessJob, on_progress: Callable[[JobReport], None], poll: float = 0.5,
         stall_seconds: float = 60.0, timeout: float | None = None) -> JobReport:
    last_finished, last_change = -1, time.monotonic()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        report = services.catalog.job_report(job.id)
        on_progress(report)
        if report.counts.get("pending", 0) == 0:
            services.catalog.set_job_status(job.id, "done")
            return report
        now = time.monotonic()
        if report.finished != last_finished:
            last_finished, last_change = report.finished, now
        elif now - last_change > stall_seconds:
            lost = services.catalog.pending_items(job.id, time.time() - stall_seconds)
            while lost:
                services.queue.enqueue_reprocess(job.id, lost)
                services.catalog.touch_items(job.id, lost)
                lost = services.catalog.pending_items(job.id, time.time() - stall_seconds)
            last_change = now
        if deadline is not None and now > deadline:
            return report
        time.sleep(poll)


# --------------------------------------------------------------------------- dry run
@dataclass(frozen=True)
class Estimate:
    selected: int
    to_update: int
    renditions_to_render: int
    renditions_to_retire: int
    seconds: float | None
    bytes_written: float | None
    sample: int


def estimate(services: Services, selection: Selection, workers: int, sample_size: int = 200) -> Estimate:
    """What a run would do: counts from the catalog, the rendition diff over a sample of photos,
    and time and bytes from the processing times and sizes recorded so far."""
    preset = services.preset
    if selection.ids_file or selection.prefix is not None:
        ids = [i for _, batch in id_batches_dry(services, selection) for i in batch]
        selected = len(ids)
        photos = [p for p in (services.catalog.get_photo(i) for i in ids) if p]
        stale = sum(1 for p in photos if p.preset_version != preset.version or p.status is not PhotoStatus.READY)
        sample = ids[:sample_size]
    else:
        selected, stale = services.catalog.count_photos(selection, preset.version)
        sample = services.catalog.select_photo_ids(selection, preset.version, limit=sample_size)
    render = retire = sampled = needing = 0
    missing: list[tuple[str, int]] = []
    full = 0
    for photo_id in sample:
        photo = services.catalog.get_photo(photo_id)
        if photo is None:
            continue
        sampled += 1
        have = {r.identity for r in photo.renditions}
        exists = {r.identity for r in services.catalog.all_renditions(photo_id)}
        wanted = {(enc.spec, w, enc.format) for w in pipeline.rendition_widths(preset.widths, photo.original_width) for enc in preset.eager}
        if photo.focus is not None:  # crops around the stored focus; a photo without one renders anyway
            wanted |= {c.identity for c in crop_renditions.wanted_crops(preset, (photo.original_width, photo.original_height), photo.focus)}
        wanted |= {a.identity for a in animated_renditions.wanted_animations(preset, photo)}
        full += len(wanted)
        missing += [(fmt, w) for _, w, fmt in wanted - exists]
        retire += len(have - wanted)
        needing += bool(wanted - exists) or photo.status is not PhotoStatus.READY
    render = len(missing)
    scale = selected / sampled if sampled else 0
    mean_seconds, mean_bytes = services.catalog.processing_stats()
    # A partial diff still decodes and resizes (a quarter of the time, roughly), then encodes its share.
    share = max(0.25, render / full) if full else 1.0
    known = [mean_bytes[m] for m in missing if m in mean_bytes]
    return Estimate(
        selected=selected,
        to_update=stale,
        renditions_to_render=round(render * scale),
        renditions_to_retire=round(retire * scale),
        seconds=None if mean_seconds is None else mean_seconds * share * needing * scale / max(workers, 1),
        bytes_written=(sum(known) / len(known)) * render * scale if known else None,
        sample=sampled,
    )


def id_batches_dry(services: Services, selection: Selection) -> Iterator[tuple[str, list[str]]]:
    """Ids for a dry run of a file or prefix selection: nothing is imported."""
    if selection.ids_file:
        with open(selection.ids_file) as fh:
            yield "", [line.strip() for line in fh if is_photo_id(line.strip())]
        return
    names = [k.rsplit("/", 1)[-1] for k in services.storage.list(selection.prefix or "")]
    yield "", [n for n in names if is_photo_id(n)]
