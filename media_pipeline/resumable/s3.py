"""The tus store in the S3 bucket: parts kept as an S3 multipart upload as they arrive.

Under ``incoming/tus/<id>/``:

    upload                the record (JSON): the tus state, the multipart upload's id, the parts
                          joined so far (number, ETag, size), and the pending tail's key and size
    tail-<offset>-<rand>  the pending tail: bytes acknowledged but fewer than a part (< 5 MiB)
    body                  the multipart upload's object, once the last byte has arrived

S3 takes parts of at least 5 MiB (but the last), while a phone's ``PATCH`` may end anywhere. So a
``PATCH`` reads the pending tail, appends its body, cuts whole parts off the front as they fill
(``upload_part``), and what is left over becomes the new tail: a small object written under a
fresh name. Only then is the record replaced, with a write conditional on its ETag (If-Match);
that write is the acknowledgement. A crash before it leaves the old record, whose parts and tail
are untouched: nothing acknowledged is lost, and a new tail or part nobody points at is harmless.

Two clients racing on one upload, on one host or two: both may read the same record, but only one
conditional write can win; the other gets ``OffsetMismatch`` (409) and its tail is deleted. Parts
never overwrite each other: part ``i`` of the upload takes a number drawn from its own block of
``_SLOTS`` numbers (ascending, as S3 wants them), and the record names the ETag of the one it
joined; S3 refuses to complete with a part whose ETag differs, so even two racers that drew the
same number (1 in ``_SLOTS``) fail the upload rather than corrupt it. On one host a lock file
serialises the requests of an upload first, so a race there never gets that far.

The last byte uploads the tail as the last part and completes the multipart upload (lazily, on the
first ``open``, so a completion that failed is retried by the client's retried last ``PATCH``).
Termination and expiration abort the multipart upload and delete the folder; multipart uploads
under ``incoming/tus/`` with no record (a create that died half-way) are aborted by ``expire``
once older than the expiry, and listed by ``leftovers`` until then.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import secrets
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol, runtime_checkable

from media_pipeline.errors import (ChecksumMismatch, NotFound, ObjectChanged, ObjectNotFound, OffsetMismatch, StorageError,
                                   UploadTooLarge)
from media_pipeline.resumable import ID_LENGTH, UploadState, upload_lock, valid_id
from media_pipeline.storage.base import INCOMING, PRIVATE, ObjectInfo

PREFIX = f"{INCOMING}tus/"
MIN_PART = 5 << 20  # S3's smallest part but the last
_MAX_PARTS = 10  # an upload is cut into at most this many parts ...
_SLOTS = 1000  # ... each drawing its number from its own block: 10 x 1000 = S3's 10,000
_CHUNK = 64 << 10  # the read size: a body cut off mid-read loses at most this much of what arrived
_RECORD = "application/json"


@runtime_checkable
class MultipartStorage(Protocol):
    """What the S3 store needs of the storage backend beyond the port (``storage/s3.py``)."""

    def put(self, key: str, data: bytes | BinaryIO, content_type: str, cache_control: str | None = None,
            sha256: str | None = None) -> ObjectInfo: ...

    def get(self, key: str) -> bytes: ...

    def open(self, key: str, byte_range: tuple[int, int] | None = None) -> tuple[ObjectInfo, BinaryIO]: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> Iterator[str]: ...

    def put_if(self, key: str, data: bytes, content_type: str, etag: str | None) -> str: ...

    def start_multipart(self, key: str, content_type: str) -> str: ...

    def upload_part(self, key: str, multipart_id: str, number: int, data: bytes) -> str: ...

    def complete_multipart(self, key: str, multipart_id: str, parts: list[tuple[int, str]]) -> None: ...

    def abort_multipart(self, key: str, multipart_id: str) -> None: ...

    def multipart_uploads(self, prefix: str) -> Iterator[tuple[str, str, float]]: ...


@dataclass(frozen=True)
class Record:
    state: UploadState
    multipart_id: str
    part_size: int
    parts: list[tuple[int, str, int]] = field(default_factory=list)  # number, ETag, bytes
    tail_key: str | None = None
    tail_size: int = 0
    assembled: bool = False  # the multipart upload is completed into ``body``

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Record":
        raw = json.loads(data)
        raw["state"] = UploadState(**raw["state"])
        raw["parts"] = [tuple(part) for part in raw["parts"]]
        return cls(**raw)


def part_size(length: int) -> int:
    """At least S3's 5 MiB, and large enough that the upload takes at most ``_MAX_PARTS`` parts."""
    return max(MIN_PART, math.ceil(length / _MAX_PARTS))


def record_key(upload_id: str) -> str:
    return f"{PREFIX}{upload_id}/upload"


def body_key(upload_id: str) -> str:
    return f"{PREFIX}{upload_id}/body"


class S3TusStore:
    def __init__(self, storage: MultipartStorage, expire_seconds: int, lock_dir: Path | None = None) -> None:
        self.storage = storage
        self.expire_seconds = expire_seconds
        self.lock_dir = lock_dir
        self.random = random.SystemRandom()

    def create(self, length: int, owner: str | None, metadata: dict[str, str], now: float) -> UploadState:
        upload_id = secrets.token_hex(ID_LENGTH // 2)
        state = UploadState(upload_id, length, 0, owner, metadata, now, now + self.expire_seconds)
        multipart_id = self.storage.start_multipart(body_key(upload_id), "application/octet-stream")
        self.storage.put_if(record_key(upload_id), Record(state, multipart_id, part_size(length)).to_json(), _RECORD, None)
        return state

    def get(self, upload_id: str, now: float, settle: float = 0.0) -> UploadState:
        state = self._load(upload_id, now)[0].state
        if settle and self.lock_dir is not None and not state.complete:
            with upload_lock(self.lock_dir / f"{upload_id}.lock", settle):
                return self._load(upload_id, now)[0].state
        return state

    def append(self, upload_id: str, offset: int, stream: BinaryIO, now: float, sha256: bytes | None = None) -> UploadState:
        with self._locked(upload_id):
            record, etag = self._load(upload_id, now)
            state = record.state
            if offset != state.offset:
                raise OffsetMismatch(f"the upload is at offset {state.offset}, not {offset}")
            pending = bytearray(self.storage.get(record.tail_key) if record.tail_key else b"")
            parts: list[tuple[int, str, int]] = []
            digest = hashlib.sha256()
            received = 0
            try:
                while chunk := stream.read(_CHUNK):
                    if offset + received + len(chunk) > state.length:
                        raise UploadTooLarge(f"more bytes than the {state.length} announced in Upload-Length")
                    digest.update(chunk)
                    received += len(chunk)
                    pending += chunk
                    while len(pending) >= record.part_size:  # a whole part: off to S3 now, acknowledged with the record
                        parts.append(self._upload_part(record, len(parts), bytes(pending[:record.part_size])))
                        del pending[:record.part_size]
            except UploadTooLarge:
                raise  # the chunk is dropped: its parts are joined by nothing, and go with the multipart upload
            except (StorageError, OffsetMismatch):
                raise
            except Exception:
                # Cut off mid-body: keep what arrived, unless it can only be checked whole.
                if sha256 is None and received:
                    self._commit(record, etag, parts, pending, state.offset + received)
                raise
            if sha256 is not None and digest.digest() != sha256:
                raise ChecksumMismatch("the chunk does not match its Upload-Checksum")
            if not received:
                return state
            return self._commit(record, etag, parts, pending, state.offset + received).state

    @contextmanager
    def open(self, upload_id: str) -> Iterator[BinaryIO]:
        with self._locked(upload_id):
            record, etag = self._load(upload_id, None)
            if not record.state.complete:
                raise NotFound("the upload is not complete")
            if not record.assembled:
                self._assemble(record, etag)
        _, body = self.storage.open(body_key(upload_id))
        with body:
            yield body

    def finish(self, upload_id: str, photo_id: str, now: float) -> UploadState:
        with self._locked(upload_id):
            record, etag = self._load(upload_id, now)
            done = replace(record, state=replace(record.state, photo_id=photo_id), tail_key=None, tail_size=0)
            self._save(done, etag)
            for key in list(self.storage.list(f"{PREFIX}{upload_id}/")):  # the original holds the bytes now
                if key != record_key(upload_id):
                    self.storage.delete(key)
            return done.state

    def terminate(self, upload_id: str) -> None:
        with self._locked(upload_id):
            try:
                record = Record.from_json(self.storage.get(record_key(valid_id(upload_id))))
                self.storage.abort_multipart(body_key(upload_id), record.multipart_id)
            except (ObjectNotFound, ValueError, TypeError, KeyError):
                pass
            for key in list(self.storage.list(f"{PREFIX}{upload_id}/")):
                self.storage.delete(key)
        if self.lock_dir is not None:
            (self.lock_dir / f"{upload_id}.lock").unlink(missing_ok=True)

    def expire(self, now: float) -> int:
        expired, orphans = self._expired(now)
        for upload_id in expired:
            self.terminate(upload_id)
        for key, multipart_id in orphans:
            self.storage.abort_multipart(key, multipart_id)
        return len(expired)

    def leftovers(self, now: float) -> list[str]:
        expired, orphans = self._expired(now)
        return [record_key(upload_id) for upload_id in expired] + [f"{key} (multipart upload {mid})" for key, mid in orphans]

    def _expired(self, now: float) -> tuple[list[str], list[tuple[str, str]]]:
        """Uploads past their expiry; multipart uploads no record knows, older than the expiry."""
        expired, known = [], set()
        for key in list(self.storage.list(PREFIX)):
            if not key.endswith("/upload"):
                continue
            try:
                record = Record.from_json(self.storage.get(key))
            except (ObjectNotFound, ValueError, TypeError, KeyError):
                continue
            known.add(record.multipart_id)
            if record.state.expires_at <= now:
                expired.append(record.state.id)
        orphans = [(key, mid) for key, mid, started in self.storage.multipart_uploads(PREFIX)
                   if mid not in known and started + self.expire_seconds <= now]
        return expired, orphans

    def _upload_part(self, record: Record, new: int, data: bytes) -> tuple[int, str, int]:
        index = len(record.parts) + new
        number = index * _SLOTS + 1 + self.random.randrange(_SLOTS)  # ascending by index; racers unlikely to meet
        return number, self.storage.upload_part(body_key(record.state.id), record.multipart_id, number, data), len(data)

    def _commit(self, record: Record, etag: str, parts: list[tuple[int, str, int]], pending: bytearray, offset: int) -> Record:
        """Make ``offset`` durable: the last part (at the end) or a new tail, then the record."""
        upload_id = record.state.id
        if offset == record.state.length and pending:
            parts.append(self._upload_part(record, len(parts), bytes(pending)))
            pending = bytearray()
        tail_key = f"{PREFIX}{upload_id}/tail-{offset - len(pending)}-{secrets.token_hex(4)}" if pending else None
        if tail_key:
            self.storage.put(tail_key, bytes(pending), "application/octet-stream", PRIVATE)
        updated = replace(record, state=replace(record.state, offset=offset), parts=record.parts + parts,
                          tail_key=tail_key, tail_size=len(pending))
        try:
            self._save(updated, etag)
        except (ObjectChanged, ObjectNotFound):
            if tail_key:
                self.storage.delete(tail_key)
            raise OffsetMismatch("another request moved the upload meanwhile") from None
        if record.tail_key and record.tail_key != tail_key:
            self.storage.delete(record.tail_key)
        return updated

    def _assemble(self, record: Record, etag: str) -> None:
        upload_id = record.state.id
        try:
            self.storage.complete_multipart(body_key(upload_id), record.multipart_id, [(n, e) for n, e, _ in record.parts])
        except ObjectNotFound:  # completed by a request that died before saying so
            self.storage.open(body_key(upload_id), (0, 0))[1].close()
        self._save(replace(record, assembled=True), etag)

    def _load(self, upload_id: str, now: float | None) -> tuple[Record, str]:
        try:
            info, body = self.storage.open(record_key(valid_id(upload_id)))
            with body:
                record = Record.from_json(body.read())
        except ObjectNotFound:
            raise NotFound("no such upload") from None
        if now is not None and record.state.expires_at <= now and record.state.photo_id is None:
            raise NotFound("the upload has expired")
        return record, info.etag

    def _save(self, record: Record, etag: str) -> str:
        return self.storage.put_if(record_key(record.state.id), record.to_json(), _RECORD, etag)

    @contextmanager
    def _locked(self, upload_id: str) -> Iterator[None]:
        """One host's requests for an upload, one at a time (other hosts: the conditional writes)."""
        if self.lock_dir is None:
            yield
            return
        with upload_lock(self.lock_dir / f"{valid_id(upload_id)}.lock"):
            yield
