"""The import job: every item of a source becomes a photo, as an upload does, but on the
``reprocess`` queue so live uploads keep their priority.

Each item goes through the checks of ``service.ingest``: the size limit, the magic bytes and the
header limits, from one ranged read of its first bytes (so an oversized or non-image object is
refused before it is downloaded), then the whole object is
read once (SHA-256, and the full header where the first bytes were not enough) and copied into
``originals/<id>`` (server-side when the source is the storage's own S3 endpoint and the manifest
gives the SHA-256: no byte leaves S3). The photo row carries the main app's ``external_id``.

The job is a reprocess job (reprocess.py) whose selection names the source: the same cursor,
rate limit, enqueue loop, ledger of processing outcomes, stall recovery and progress; its own
import ledger (catalog ``import_items``) keeps each item's import outcome, first one wins.
Idempotent: an item whose (owner, external_id) or (owner, SHA-256) is already a photo is
counted ``already_imported`` and not copied again (reposts by other owners are imported, and
found by near-duplicate detection when processed, as uploads are).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Iterator

from media_pipeline import reprocess
from media_pipeline.errors import CatalogError, EmptyUpload, MediaError, ObjectNotFound, UploadError, UploadTooLarge
from media_pipeline.importing.models import ALREADY_IMPORTED, BAD, IMPORTED, SKIPPED, ItemResult, SourceItem
from media_pipeline.importing.sources import ImportSource
from media_pipeline.jobs import ReprocessJob, Selection
from media_pipeline.models import ImageInfo, Photo, PhotoStatus
from media_pipeline.probe import probe
from media_pipeline.service import PRIVATE, Services, SpooledUpload, new_photo_id
from media_pipeline.storage import original_key

HEADER_BYTES = 256 * 1024  # the ranged read the header limits are checked on: every format's header fits


def start_job(services: Services, source: str) -> ReprocessJob:
    return reprocess.start_job(services, Selection(mode="import", source=source))


def run(services: Services, job: ReprocessJob, source: ImportSource, batch: int = 200, rate: float | None = None,
        threads: int = 8, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Import and enqueue from the job's cursor on; returns the photos enqueued in this run."""
    with ThreadPoolExecutor(threads) as pool:
        return reprocess.enqueue(services, job, batch=batch, rate=rate, should_stop=should_stop,
                                 batches=lambda size: batches(services, job, source, size, pool.map))


def batches(services: Services, job: ReprocessJob, source: ImportSource, size: int,
            map_items: Callable[..., Iterator[ItemResult]] = map) -> Iterator[tuple[str, list[str]]]:
    """(cursor after the batch, photo ids to enqueue), each batch imported and in the ledger first."""
    chunk: list[tuple[str, SourceItem]] = []
    for cursor, item in source.items(job.cursor):
        chunk.append((cursor, item))
        if len(chunk) >= size:
            yield _import_chunk(services, job, source, chunk, map_items)
            chunk = []
    if chunk:
        yield _import_chunk(services, job, source, chunk, map_items)


def _import_chunk(services: Services, job: ReprocessJob, source: ImportSource, chunk: list[tuple[str, SourceItem]],
                  map_items: Callable[..., Iterator[ItemResult]]) -> tuple[str, list[str]]:
    items = [item for _, item in chunk]
    # A batch cut short after its ledger rows and before its checkpoint: its photos are enqueued again.
    known = services.catalog.ledger_items(job.id, [i.item for i in items])
    fresh = [i for i in items if i.item not in known]
    # One query for the batch's external ids, the copies in parallel, one transaction for the rows.
    taken = services.catalog.photos_by_external_ids([(i.owner, i.external_id) for i in fresh if i.external_id])
    hidden = services.catalog.hidden_owners(sorted({i.owner for i in fresh if i.owner}))
    results = _catalog(services, list(map_items(lambda item: import_item(services, source, item, taken, hidden), fresh)))
    services.catalog.record_import_batch(job.id, results, {i.item: i.taken_at for i in fresh if i.taken_at})
    again = [photo_id for outcome, photo_id in known.values() if outcome == IMPORTED and photo_id]
    return chunk[-1][0], [r.photo_id for r in results if r.enqueue and r.photo_id] + again


# --------------------------------------------------------------------------- one item
def import_item(services: Services, source: ImportSource, item: SourceItem,
                taken: dict[tuple[str, str], tuple[str, str]] | None = None, hidden_owners: set[str] | None = None) -> ItemResult:
    """Check and copy one item; its photo row is for the batch to write (``_catalog``). ``taken``:
    the batch's (owner, external_id) already photos; ``hidden_owners``: its owners who opted out.
    Bad items are values; unreachable backends raise."""
    known = dict(item=item.item, owner=item.owner, external_id=item.external_id, visible=item.visible)
    if item.problem is not None:
        return ItemResult(outcome=BAD, code=item.problem[0], message=item.problem[1], **known)
    if item.owner in (hidden_owners or set()) and item.visible is not True:
        return ItemResult(outcome=SKIPPED, code="owner_hidden",
                          message=f"owner {item.owner!r} opted out; a manifest line with \"visible\": true imports it anyway", **known)
    if item.external_id and (found := (taken or {}).get((item.owner or "", item.external_id))):
        return _already(found, known)
    try:
        return _copy_and_catalog(services, source, item, known)
    except ObjectNotFound:
        return ItemResult(outcome=BAD, code="object_not_found", message="the source object does not exist", **known)
    except (MediaError, UploadError) as exc:
        return ItemResult(outcome=BAD, code=exc.code, message=exc.message, **known)



def _copy_and_catalog(services: Services, source: ImportSource, item: SourceItem, known: dict) -> ItemResult:
    settings = services.settings
    size, head = source.head(item, HEADER_BYTES)
    if size == 0:
        raise EmptyUpload("the source object is empty")
    if size > settings.max_upload_bytes:
        raise UploadTooLarge(f"{size} bytes; the limit is {settings.max_upload_bytes} (MP_MAX_UPLOAD_BYTES)")
    info = _probe_header(head, size, settings.max_pixels)
    photo_id = new_photo_id()
    key = original_key(photo_id)
    sha256 = item.sha256
    if sha256 is not None and info is not None:
        if found := services.catalog.photo_by_sha256(item.owner, sha256):
            return _already(found, known)
        copied = source.copy_into(item, services.storage, key, f"image/{info.format.value}", PRIVATE)
    else:
        copied = False
    if not copied:
        upload = _download(services, source, item)
        try:
            info = probe(upload.buffer(), settings.max_pixels)
            if sha256 is not None and sha256 != upload.sha256:
                return ItemResult(outcome=BAD, code="sha256_mismatch", message=f"the object's SHA-256 is {upload.sha256}", **known)
            sha256, size = upload.sha256, upload.size
            if found := services.catalog.photo_by_sha256(item.owner, sha256):
                return _already(found, known)
            if not source.copy_into(item, services.storage, key, f"image/{info.format.value}", PRIVATE):
                services.storage.put(key, upload.rewind(), f"image/{info.format.value}", PRIVATE, sha256=sha256)
        finally:
            upload.close()
    assert info is not None and sha256 is not None
    now = time.time()
    photo = Photo(
        id=photo_id, status=PhotoStatus.QUEUED, owner=item.owner, sha256=sha256, original_key=key,
        original_format=info.format.value, original_width=info.upright_size[0], original_height=info.upright_size[1],
        original_bytes=size, created_at=now, updated_at=now, external_id=item.external_id,
        hidden=item.visible is False,  # the main app's post is not shown: neither is its photo here
    )
    return ItemResult(outcome=IMPORTED, photo_id=photo_id, bytes=size, enqueue=True, photo=photo, **known)


def _probe_header(head: bytes, size: int, max_pixels: int) -> ImageInfo | None:
    """The header's info from the first bytes; ``None`` when they are not enough (a header past
    them) and the whole object must tell. Not an image, or over the pixel limit: raises."""
    from media_pipeline.errors import CorruptImage

    try:
        return probe(head, max_pixels)
    except CorruptImage:
        if len(head) < size:
            return None
        raise


def _download(services: Services, source: ImportSource, item: SourceItem) -> SpooledUpload:
    stream = source.open(item)
    try:
        return SpooledUpload.receive(stream, services.settings.tmp_dir, services.settings.max_upload_bytes)
    finally:
        stream.close()


def _catalog(services: Services, results: list[ItemResult]) -> list[ItemResult]:
    """Write the batch's new photo rows in one transaction. A row refused because its (owner,
    external_id) was taken meanwhile (two imports at once) leaves that photo: our copy goes."""
    added = services.catalog.add_photos([r.photo for r in results if r.photo is not None])
    written = []
    for result in results:
        photo = result.photo
        if photo is None or photo.id in added:
            written.append(replace(result, photo=None))
            continue
        services.storage.delete(photo.original_key)
        found = services.catalog.photo_by_external_id(photo.owner, photo.external_id or "")
        if found is None:
            raise CatalogError(f"the photo of {result.item} was not recorded")
        written.append(_already(found, dict(item=result.item, owner=result.owner, external_id=result.external_id,
                                            visible=result.visible)))
    return written


def _already(found: tuple[str, str], known: dict) -> ItemResult:
    photo_id, status = found
    # A photo an earlier run imported but never got processed goes on the queue again (idempotent).
    return ItemResult(outcome=ALREADY_IMPORTED, photo_id=photo_id, enqueue=status == PhotoStatus.QUEUED.value, **known)


# --------------------------------------------------------------------------- dry run
@dataclass(frozen=True)
class ImportEstimate:
    items: int
    already_imported: int
    bad: int  # manifest lines that are no item, and objects missing or over the byte limit
    to_import: int
    bytes: int
    seconds: float | None  # processing the imported photos, from the times recorded so far


def estimate(services: Services, source: ImportSource, workers: int) -> ImportEstimate:
    """What a run would do, from the listing (sizes) and the catalog (ids already imported):
    nothing is read beyond a HEAD where the listing has no size, nothing written."""
    items = already = bad = size_sum = 0
    for _, item in source.items(""):
        items += 1
        if item.problem is not None:
            bad += 1
            continue
        if item.external_id and services.catalog.photo_by_external_id(item.owner, item.external_id):
            already += 1
            continue
        try:
            size = source.size(item)
        except ObjectNotFound:
            bad += 1
            continue
        if not 0 < size <= services.settings.max_upload_bytes:
            bad += 1
            continue
        size_sum += size
    to_import = items - already - bad
    mean_seconds, _ = services.catalog.processing_stats()
    return ImportEstimate(items=items, already_imported=already, bad=bad, to_import=to_import, bytes=size_sum,
                          seconds=None if mean_seconds is None else mean_seconds * to_import / max(workers, 1))
