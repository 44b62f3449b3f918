"""Direct uploads: the client sends the file to storage itself, not through the API process.

    POST /v1/uploads                    a target: with S3, a presigned POST policy for the key
                                        ``incoming/<id>`` limited to MP_MAX_UPLOAD_BYTES; with a
                                        local folder, a one-time signed PUT URL on the API
    (the client sends the file there)
    POST /v1/uploads/<id>/complete      magic bytes from a ranged read (a wrong file is refused
                                        before it is downloaded), then the photo is made exactly as
                                        POST /v1/photos makes it, idempotent by upload id

The target's record is a small private object next to it (``incoming/<id>.json``: owner, expiry,
the one-time token's digest, then the photo), so no catalog table is needed and any API host can
complete any upload. Targets not completed within ``MP_DIRECT_UPLOAD_SECONDS`` are removed by
``media-pipeline cleanup``; ``check`` reports what is left behind past that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, runtime_checkable

from media_pipeline.errors import (MediaPipelineError, NotFound, ObjectNotFound, UnsupportedFormat, UploadExpired, UploadNotSent,
                                   UploadTooLarge, UploadUsed)
from media_pipeline.models import Photo
from media_pipeline.sniff import sniff
from media_pipeline.storage.base import INCOMING, PRIVATE

if TYPE_CHECKING:
    from media_pipeline.service import Services

_SNIFF_BYTES = 64


@runtime_checkable
class PresignedPosts(Protocol):
    """A storage backend clients can POST to directly (S3)."""

    def presigned_post(self, key: str, max_bytes: int, expires: int) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Target:
    id: str
    method: str  # POST (a form with ``fields`` and the file last) or PUT (the raw body)
    url: str
    fields: dict[str, str]
    expires_at: float
    max_bytes: int


@dataclass(frozen=True)
class Record:
    owner: str | None
    expires_at: float
    token_sha256: str
    photo_id: str | None = None


def body_key(upload_id: str) -> str:
    return f"{INCOMING}{upload_id}"


def record_key(upload_id: str) -> str:
    return f"{INCOMING}{upload_id}.json"


def create_target(services: Services, owner: str | None, local_url: str, now: float) -> Target:
    """``local_url``: the API's PUT URL for ``{id}`` and ``{token}``, used where storage takes no
    direct POSTs."""
    settings = services.settings
    upload_id, token = secrets.token_hex(16), secrets.token_urlsafe(24)
    expires_at = now + settings.direct_upload_seconds
    _save(services, upload_id, Record(owner, expires_at, hashlib.sha256(token.encode()).hexdigest()))
    if isinstance(services.storage, PresignedPosts):
        post = services.storage.presigned_post(body_key(upload_id), settings.max_upload_bytes, settings.direct_upload_seconds)
        return Target(upload_id, "POST", post["url"], post["fields"], expires_at, settings.max_upload_bytes)
    return Target(upload_id, "PUT", local_url.format(id=upload_id, token=token), {}, expires_at, settings.max_upload_bytes)


def receive_body(services: Services, upload_id: str, token: str, stream: BinaryIO, now: float) -> None:
    """The local target: store the body once, for the holder of the token, before expiry."""
    record = load(services, upload_id, now)
    if not hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), record.token_sha256):
        raise NotFound("no such upload target")
    if record.photo_id is not None or services.storage.exists(body_key(upload_id)):
        raise UploadUsed("this upload target has been used")
    from media_pipeline.service import SpooledUpload

    upload = SpooledUpload.receive(stream, services.settings.tmp_dir, services.settings.max_upload_bytes)
    try:
        services.storage.put(body_key(upload_id), upload.rewind(), "application/octet-stream", PRIVATE, sha256=upload.sha256)
    finally:
        upload.close()


def complete(services: Services, upload_id: str, now: float, client: str | None = None) -> tuple[Photo, bool]:
    """The photo (and whether it was made before: a retried complete), as ``ingest_idempotent``
    (``client``: the API key's name, as there)."""
    from media_pipeline import service

    record = load(services, upload_id, now, allow_expired_done=True)
    if record.photo_id is not None:
        photo = services.catalog.get_photo(record.photo_id)
        if photo is not None:
            return photo, True
    try:
        info, head = services.storage.open(body_key(upload_id), (0, _SNIFF_BYTES - 1))
    except ObjectNotFound:
        raise UploadNotSent("nothing was uploaded to this target yet") from None
    with head:
        first = head.read()
    if info.size > services.settings.max_upload_bytes:
        _discard(services, upload_id)
        raise UploadTooLarge(f"the upload is larger than {services.settings.max_upload_bytes} bytes")
    try:
        sniff(first)
    except UnsupportedFormat:
        _discard(services, upload_id)  # refused before the rest of it is read
        raise
    _, body = services.storage.open(body_key(upload_id))
    with body:
        upload = service.SpooledUpload.receive(body, services.settings.tmp_dir, services.settings.max_upload_bytes)
    try:
        photo, replayed = service.ingest_idempotent(services, upload, record.owner, f"direct-{upload_id}", client)
    except MediaPipelineError as exc:
        if not exc.transient:
            _discard(services, upload_id)
        raise
    finally:
        upload.close()
    _save(services, upload_id, Record(record.owner, record.expires_at, record.token_sha256, photo.id))
    services.storage.delete(body_key(upload_id))  # the original is stored; the copy is not needed
    return photo, replayed


def load(services: Services, upload_id: str, now: float, allow_expired_done: bool = False) -> Record:
    if len(upload_id) != 32 or not all(c in "0123456789abcdef" for c in upload_id):
        raise NotFound("no such upload target")
    try:
        record = Record(**json.loads(services.storage.get(record_key(upload_id))))
    except ObjectNotFound:
        raise NotFound("no such upload target") from None
    if record.expires_at <= now and not (allow_expired_done and record.photo_id is not None):
        raise UploadExpired("the upload target has expired")
    return record


def expire(services: Services, now: float) -> int:
    """Remove targets past their expiry (their records and any body); how many."""
    removed = 0
    for upload_id in _expired(services, now):
        _discard(services, upload_id)
        services.storage.delete(record_key(upload_id))
        removed += 1
    return removed


def leftovers(services: Services, now: float) -> list[str]:
    """The objects of targets past their expiry that ``cleanup`` has not removed yet."""
    return [key for upload_id in _expired(services, now) for key in (record_key(upload_id), body_key(upload_id))
            if services.storage.exists(key)]


def _expired(services: Services, now: float) -> list[str]:
    found = []
    for key in list(services.storage.list(INCOMING)):
        if not key.endswith(".json"):
            continue
        try:
            record = Record(**json.loads(services.storage.get(key)))
        except (ObjectNotFound, ValueError, TypeError):
            continue
        if record.expires_at <= now:
            found.append(key[len(INCOMING):-len(".json")])
    return found


def _discard(services: Services, upload_id: str) -> None:
    services.storage.delete(body_key(upload_id))


def _save(services: Services, upload_id: str, record: Record) -> None:
    services.storage.put(record_key(upload_id), json.dumps(asdict(record)).encode(), "application/json", PRIVATE)
