"""The only module that joins the imaging core to the ports (storage, catalog, queue)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import Enum

from config.settings import Settings
from media_pipeline import animated_renditions, crop_renditions, duplicates, metrics, moderation, pipeline, vips, visibility
from media_pipeline.blocklists import Blocklists
from media_pipeline.validation import HttpValidator, Validator
from media_pipeline.catalog import Catalog, make_catalog
from media_pipeline.errors import (
    IdempotencyConflict,
    IdempotencyMismatch,
    MediaError,
    MediaPipelineError,
    ObjectNotFound,
    QueueUnavailable,
    StorageError,
    StorageUnavailable,
)
from media_pipeline.hashindex import FeatureIndex, HashIndex, SqlFeatureIndex, SqlHashIndex
from media_pipeline.hashindex.synced import memory_indexes
from media_pipeline.models import Photo, PhotoStatus, Preset, Rendition
from media_pipeline.photo_ids import is_photo_id, new_photo_id  # noqa: F401 - callers use service.is_photo_id
from media_pipeline.probe import probe
from media_pipeline.queue import TaskQueue
from media_pipeline.spooled_upload import SpooledUpload
from media_pipeline.storage import IMMUTABLE, PRIVATE, Storage, features_key, make_storage, original_key, rendition_key, rendition_prefix

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    preset: Preset
    storage: Storage
    catalog: Catalog
    queue: TaskQueue
    hash_index: HashIndex | None = None
    feature_index: FeatureIndex | None = None
    blocklists: Blocklists = field(default_factory=Blocklists)
    validator: Validator | None = None

    def __post_init__(self) -> None:
        # The indexes live in the catalog's database unless a caller hands in other backends; with
        # MP_DUPLICATE_INDEX=memory lookups run on arrays loaded from it (hashindex/synced.py).
        if self.hash_index is None and self.feature_index is None and self.settings.duplicate_index == "memory":
            self.hash_index, self.feature_index = memory_indexes(self.catalog, self.settings.index_snapshot_dir)  # type: ignore[arg-type]
        if self.hash_index is None:
            self.hash_index = SqlHashIndex(self.catalog)  # type: ignore[arg-type]
        if self.feature_index is None:
            self.feature_index = SqlFeatureIndex(self.catalog)  # type: ignore[arg-type]


def build_services(settings: Settings, queue: TaskQueue) -> Services:
    """The services on the configured storage and catalog, with the ``queue`` the entry point
    hands in (``workers.celery_app.make_queue`` for Celery): the service layer never imports the
    worker, which is an adapter on top of it."""
    vips.configure(settings.vips_concurrency)
    catalog = make_catalog(settings)
    catalog.migrate()
    return Services(settings=settings, preset=settings.preset(), storage=make_storage(settings), catalog=catalog, queue=queue,
                    blocklists=moderation.load_blocklists(settings.blocklists),
                    validator=HttpValidator(settings.validation_url, settings.validation_secret, settings.validation_timeout)
                    if settings.validation_url else None)


# --------------------------------------------------------------------------- uploads
def ingest(services: Services, upload: SpooledUpload, owner: str | None, client: str | None = None) -> Photo:
    """Check the header, store the original durably, record the photo ``queued`` and queue it.

    Raises ``MediaError`` subclasses for uploads that are not acceptable images; nothing is stored
    for those. If the broker is down once the original and the row are safe, the upload is
    still accepted: the photo stays ``queued`` and the reconciler enqueues it when the broker is
    back (after ``MP_STUCK_AFTER_SECONDS``), so the client's upload is never thrown away for it.
    ``client`` is the API key's name, whose webhook receiver (MP_WEBHOOK_KEY_URLS) hears of the photo.
    """
    info = probe(upload.buffer(), services.settings.max_pixels)
    now = time.time()
    photo_id = new_photo_id(now)
    key = original_key(photo_id)
    try:
        services.storage.put(key, upload.rewind(), f"image/{info.format.value}", PRIVATE, sha256=upload.sha256)
    except StorageUnavailable:
        _discard(services, key)  # the PUT may have landed with only its answer lost
        raise
    metrics.BYTES_WRITTEN.labels("original").inc(upload.size)
    photo = Photo(
        id=photo_id,
        status=PhotoStatus.QUEUED,
        owner=owner,
        sha256=upload.sha256,
        original_key=key,
        original_format=info.format.value,
        original_width=info.upright_size[0],
        original_height=info.upright_size[1],
        original_bytes=upload.size,
        created_at=now,
        updated_at=now,
        animation=animated_renditions.animation_of(services.settings, info),
        original_hdr=info.hdr is not None,
    )
    try:
        if client is not None:  # before the photo: none of its events can be written without it
            services.catalog.record_client(photo_id, client)
        services.catalog.add_photo(photo)
    except MediaPipelineError:
        _discard(services, key)
        raise
    try:
        services.queue.enqueue_process(photo_id)
    except QueueUnavailable as exc:
        log.warning("photo accepted with the broker down; the reconciler will queue it: %s", exc, extra={"photo_id": photo_id})
    log.info("photo accepted", extra={"photo_id": photo_id, "format": info.format.value, "bytes": upload.size})
    return photo


def _discard(services: Services, key: str) -> None:
    """Undo an original of a refused upload. If storage is the thing that is down, the object may
    stay behind: `media-pipeline check` names it (``original_without_catalog_row``); the client
    got a 503, so no accepted upload is affected."""
    try:
        services.storage.delete(key)
    except StorageError as exc:
        log.warning("could not remove the original of a refused upload %s: %s", key, exc)


IDEMPOTENCY_TTL = 24 * 3600


def ingest_idempotent(services: Services, upload: SpooledUpload, owner: str | None, key: str | None,
                      client: str | None = None) -> tuple[Photo, bool]:
    """``ingest`` behind an ``Idempotency-Key``: the same key and body give the first photo again
    (``True``: a replay) instead of a second copy. Keys are scoped by owner and kept a day."""
    if not key:
        return ingest(services, upload, owner, client), False
    scope = f"{owner or ''}\n{key}"  # owners and keys are printable: a newline cannot be part of either
    state, photo_id = services.catalog.claim_idempotency_key(scope, upload.sha256, time.time() - IDEMPOTENCY_TTL)
    if state == "mismatch":
        raise IdempotencyMismatch("this Idempotency-Key was used with another body")
    if state == "in_progress":
        raise IdempotencyConflict("a request with this Idempotency-Key is still in progress; retry shortly")
    if state == "replay":
        photo = services.catalog.get_photo(photo_id or "")
        if photo is not None:
            return photo, True
        # The photo was deleted since: this request makes a new one under the same key.
    try:
        photo = ingest(services, upload, owner, client)
    except BaseException:
        if state == "new":
            services.catalog.settle_idempotency_key(scope, None)  # a retry may try again
        raise
    services.catalog.settle_idempotency_key(scope, photo.id)
    return photo, False


# --------------------------------------------------------------------------- processing
class Outcome(str, Enum):
    DONE = "done"
    ALREADY_DONE = "already_done"
    FAILED = "failed"
    MISSING = "missing"


@dataclass(frozen=True)
class ProcessResult:
    outcome: Outcome
    code: str | None = None
    bytes_written: int = 0
    bytes_deleted: int = 0


def process_photo(services: Services, photo_id: str) -> Outcome:
    return run_photo(services, photo_id).outcome


def run_photo(services: Services, photo_id: str) -> ProcessResult:
    """Bring one photo to the current preset. Idempotent: a photo already there is left alone.

    Only renditions whose spec (format settings + pipeline version) or width is new are rendered;
    the ones the photo already has are kept with their keys, so their URLs and CDN copies stay
    valid. A photo that is already ready stays ready and served throughout: the new set replaces
    the old in one catalog transaction, and what falls out is retired, then deleted by
    ``cleanup_retired`` after ``MP_RENDITION_KEEP_SECONDS``. Bad images end ``failed`` with their
    code; transient storage/catalog errors propagate so the task can retry.
    """
    started = time.monotonic()
    preset = services.preset
    photo = services.catalog.get_photo(photo_id)
    if photo is None:
        return ProcessResult(Outcome.MISSING)
    if (photo.status is PhotoStatus.READY and photo.preset_version == preset.version and crop_renditions.crops_current(preset, photo)
            and animated_renditions.animations_current(preset, photo)):
        # A worker that died between completing and cleaning up left retirees behind: finish its job.
        _, deleted = cleanup_retired(services, photo_id)
        return ProcessResult(Outcome.ALREADY_DONE, bytes_deleted=deleted)
    if photo.status is PhotoStatus.FAILED:
        return ProcessResult(Outcome.FAILED, photo.error_code)
    if photo.status is not PhotoStatus.READY:
        photo = services.catalog.start_processing(photo_id)
        if photo is None:
            return ProcessResult(Outcome.MISSING)
        if photo.attempts > services.settings.max_attempts:
            # The earlier attempts never ended: the file crashed or hung its worker each time
            # (the broker handed the message back). Stop here rather than loop on a poison message.
            abandon(services, photo_id, photo.attempts - 1)
            return ProcessResult(Outcome.FAILED, "abandoned")
    existing = {r.identity: r for r in services.catalog.all_renditions(photo_id)}
    widths = pipeline.rendition_widths(preset.widths, photo.original_width)
    wanted = [(width, enc) for width in widths for enc in preset.eager]
    missing = {(width, enc.format) for width, enc in wanted if (enc.spec, width, enc.format) not in existing}
    metadata, placeholder, hashes = photo.metadata, photo.placeholder, photo.hashes
    original_hdr: bool | None = None  # known again once the original is probed
    upright = (photo.original_width, photo.original_height)
    computed_focus = photo.computed_focus  # found once; a stored one keeps the crops' keys
    crops_wanted = crop_renditions.wanted_crops(preset, upright, photo.focus) if photo.focus else []
    animations_wanted = animated_renditions.wanted_animations(preset, photo)
    rendered: dict[tuple[str, int, str], Rendition] = {}
    if (missing or any(w.identity not in existing for w in [*crops_wanted, *animations_wanted]) or computed_focus is None
            or metadata is None or placeholder is None or hashes is None or photo.hash_quality is None):
        try:
            with metrics.step("fetch_original"):
                data = services.storage.get(photo.original_key)
        except ObjectNotFound:
            fail_photo(services, photo_id, "original_missing", "the stored original is missing")
            return ProcessResult(Outcome.FAILED, "original_missing")
        try:
            with metrics.step("decode_resize"):
                job = pipeline.prepare(data, preset, services.settings.max_pixels)
            original_hdr = job.info.hdr is not None
            with metrics.step("describe"):
                metadata, placeholder, hashes = pipeline.describe(job, preset)
            stopped = moderation.stop_reason(services.blocklists, services.validator, photo, hashes, job)
            if stopped is not None:
                # Before anything is indexed or rendered: nothing of it becomes public or findable.
                fail_photo(services, photo_id, *stopped)
                log.warning("photo stopped", extra={"photo_id": photo_id, "code": stopped[0]})
                return ProcessResult(Outcome.FAILED, stopped[0])
            with metrics.step("duplicates"):
                # Before the photo is ready, so a client that sees `ready` also sees its duplicates.
                duplicates.record_duplicates(services, photo, pipeline.identify(job))
            if computed_focus is None:
                with metrics.step("focus"):
                    computed_focus = pipeline.find_focus(job)
                crops_wanted = crop_renditions.wanted_crops(preset, upright, computed_focus.with_user_point(photo.user_focal_point))
            focus = computed_focus.with_user_point(photo.user_focal_point)
            # Crops before the whole-picture encodes, which let go of each level once it is done.
            only_crops = {w.selector for w in crops_wanted if w.identity not in existing}
            for rendition in crop_renditions.render_crops(services, photo_id, job, crops_wanted, focus, only=only_crops):
                rendered[rendition.identity] = rendition
            for encoded in metrics.timed_iter("encode", pipeline.iter_renditions(job, preset.eager, only=missing, release=True)):
                enc = preset.encoder(encoded.format)
                key = rendition_key(photo_id, enc.spec, encoded.width, encoded.extension)
                with metrics.step("store"):
                    services.storage.put(key, encoded.data, encoded.content_type, IMMUTABLE)
                metrics.BYTES_WRITTEN.labels("rendition").inc(len(encoded.data))
                rendition = Rendition(encoded.width, encoded.height, encoded.format, len(encoded.data), key, enc.spec,
                                      encoded.quality, encoded.score, gamut=encoded.gamut, hdr=encoded.hdr)
                rendered[rendition.identity] = rendition
            # Last: the frames are decoded once the still levels are let go.
            for rendition in animated_renditions.render_animations(services, photo_id, data, job.info, animations_wanted, set(existing)):
                rendered[rendition.identity] = rendition
        except MediaError as exc:
            fail_photo(services, photo_id, exc.code, exc.message)
            log.info("photo failed", extra={"photo_id": photo_id, "code": exc.code})
            return ProcessResult(Outcome.FAILED, exc.code)
    identities = [(enc.spec, w, enc.format) for w, enc in wanted] + [w.identity for w in [*crops_wanted, *animations_wanted]]
    current = [rendered.get(ident) or existing[ident] for ident in identities]
    # Only a full render says how long a photo takes; a partial diff would skew the estimates.
    seconds = time.monotonic() - started if len(rendered) == len(identities) else None
    visibility.before_ready(services, photo)  # a hidden owner's new photo is never served by the front
    with metrics.step("record"):
        completed = services.catalog.complete(photo_id, preset.version, metadata, placeholder, current, hashes, seconds=seconds,
                                              focus=computed_focus, original_hdr=original_hdr)
    if not completed:
        # Deleted while we worked: leave nothing behind.
        _delete_objects(services, photo_id, photo.original_key)
        return ProcessResult(Outcome.MISSING)
    _, deleted = cleanup_retired(services, photo_id)
    log.info("photo ready", extra={"photo_id": photo_id, "rendered": len(rendered), "kept": len(current) - len(rendered)})
    return ProcessResult(Outcome.DONE, bytes_written=sum(r.bytes for r in rendered.values()), bytes_deleted=deleted)


def reconcile(services: Services, now: float | None = None) -> tuple[int, int]:
    """Nothing accepted may vanish: re-enqueue photos stuck in ``queued``/``processing`` for longer
    than ``MP_STUCK_AFTER_SECONDS`` (their message died with a worker or a broker that keeps
    nothing), and give up on those that already had ``MP_MAX_ATTEMPTS`` attempts, which end
    ``failed`` with ``abandoned``. Returns (re-enqueued, abandoned)."""
    cutoff = (time.time() if now is None else now) - services.settings.stuck_after_seconds
    requeued = abandoned = 0
    while batch := services.catalog.stuck_photos(cutoff):
        for photo_id, attempts in batch:
            if attempts >= services.settings.max_attempts:
                abandon(services, photo_id, attempts)
                abandoned += 1
            else:
                services.catalog.touch(photo_id)  # not picked again before the new message had its chance
                services.queue.enqueue_process(photo_id)
                requeued += 1
        if len(batch) < 1000:
            break
    if requeued or abandoned:
        log.warning("reconciled stuck photos: %d re-enqueued, %d abandoned", requeued, abandoned)
    return requeued, abandoned


def abandon(services: Services, photo_id: str, attempts: int) -> None:
    fail_photo(services, photo_id, "abandoned", f"processing did not finish in {attempts} attempts "
               "(its worker crashed, was killed or passed MP_TASK_TIME_LIMIT each time)")
    log.warning("photo abandoned after %d attempts", attempts, extra={"photo_id": photo_id, "code": "abandoned"})


def cleanup_retired(services: Services, photo_id: str | None = None, now: float | None = None) -> tuple[int, int]:
    """Delete renditions retired longer than ``MP_RENDITION_KEEP_SECONDS`` ago: the object first,
    then its row. Returns (renditions, bytes) deleted."""
    cutoff = (time.time() if now is None else now) - services.settings.rendition_keep_seconds
    count = size = 0
    while True:
        batch = services.catalog.retired_renditions(cutoff, photo_id)
        for owner, rendition in batch:
            services.storage.delete(rendition.key)
            services.catalog.forget_rendition(owner, rendition)
            count, size = count + 1, size + rendition.bytes
        if len(batch) < 1000:
            return count, size


def render_on_demand(services: Services, photo_id: str, width: int, fmt: str) -> Rendition | None:
    """Render one rendition not made at ingest, store it under its immutable key and record it.

    Two concurrent first requests may both render; both write the same key with the same bytes and
    the catalog upsert keeps one row, so the second is harmless. ``None`` if the photo is gone.
    """
    preset = services.preset
    encoder = preset.encoder(fmt)
    photo = services.catalog.get_photo(photo_id)
    if encoder is None or photo is None or photo.status is not PhotoStatus.READY:
        return None
    data = services.storage.get(photo.original_key)
    job = pipeline.prepare(data, preset, services.settings.max_pixels, widths=(width,))
    encoded = next(pipeline.iter_renditions(job, (encoder,)))
    key = rendition_key(photo_id, encoder.spec, encoded.width, encoded.extension)
    services.storage.put(key, encoded.data, encoded.content_type, IMMUTABLE)
    metrics.BYTES_WRITTEN.labels("rendition").inc(len(encoded.data))
    rendition = Rendition(encoded.width, encoded.height, encoded.format, len(encoded.data), key, encoder.spec,
                          encoded.quality, encoded.score, gamut=encoded.gamut, hdr=encoded.hdr)
    if not services.catalog.add_rendition(photo_id, rendition):
        services.storage.delete(key)
        return None
    log.info("on-demand rendition", extra={"photo_id": photo_id, "width": encoded.width, "format": fmt})
    return rendition


def fail_photo(services: Services, photo_id: str, code: str, message: str) -> None:
    if services.catalog.fail(photo_id, code, message):
        metrics.PHOTO_FAILURES.labels(code).inc()


def retry_photo(services: Services, photo_id: str) -> bool:
    """Give a failed photo another go, as ``reprocess --failed`` does for many: back to ``queued``
    with its error and attempts cleared, and a new task. ``False`` unless it was failed. Should the
    broker be down, the photo stays queued and the reconciler enqueues it later."""
    if not services.catalog.requeue(photo_id):
        return False
    try:
        services.queue.enqueue_process(photo_id)
    except QueueUnavailable as exc:
        log.warning("retry recorded with the broker down; the reconciler will queue it: %s", exc, extra={"photo_id": photo_id})
    log.info("failed photo queued again", extra={"photo_id": photo_id})
    return True


def delete_photo(services: Services, photo_id: str) -> bool:
    """Remove the original, every rendition, its index entries and the catalog rows, and purge
    it from the caches in front (purging.py). ``False`` if there was no such photo."""
    photo = services.catalog.get_photo(photo_id)
    if photo is None:
        return False
    from media_pipeline import purging  # it builds on this module

    cached = purging.before_delete(services, photo)
    services.hash_index.remove(photo_id)
    services.feature_index.remove(photo_id)
    _delete_objects(services, photo_id, photo.original_key)
    deleted = services.catalog.delete_photo(photo_id)
    purging.after_delete(services, cached)
    return deleted


def _delete_objects(services: Services, photo_id: str, key: str) -> None:
    for rendition in list(services.storage.list(rendition_prefix(photo_id))):
        services.storage.delete(rendition)
    services.storage.delete(key)
    services.storage.delete(features_key(photo_id))
    services.storage.delete(visibility.marker_key(photo_id))
