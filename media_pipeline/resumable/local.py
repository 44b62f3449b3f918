"""The tus store in a local folder (the local storage backend's).

Each upload is two files: ``<id>.part`` (the bytes received so far) and ``<id>.json`` (its
length, offset, owner, metadata and expiry, replaced atomically). A chunk is written at the
upload's offset under an exclusive ``flock`` of the upload, fsynced, and only then is the new
offset recorded, so an offset the server has acknowledged survives a crash or a restart, and two
clients racing on one upload cannot interleave: the second finds the offset moved and is refused.
A chunk cut off mid-body keeps what arrived (tus resumes from there) unless it carried a
checksum, which can only be checked whole: then it is dropped.

In a deployment of several API hosts the folder must be shared (or requests for one upload
routed to one host); ``MP_TUS_EXPIRE_SECONDS`` after creation an unfinished upload is gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import BinaryIO, Iterator

from media_pipeline.errors import ChecksumMismatch, NotFound, OffsetMismatch, UploadTooLarge
from media_pipeline.resumable import ID_LENGTH, UploadState, upload_lock, valid_id

_CHUNK = 64 << 10  # the read size: a body cut off mid-read loses at most this much of what arrived


class LocalTusStore:
    def __init__(self, folder: Path, expire_seconds: int) -> None:
        self.folder = folder
        self.expire_seconds = expire_seconds

    def create(self, length: int, owner: str | None, metadata: dict[str, str], now: float) -> UploadState:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = UploadState(secrets.token_hex(ID_LENGTH // 2), length, 0, owner, metadata, now, now + self.expire_seconds)
        self._part(state.id).touch()
        self._save(state)
        return state

    def get(self, upload_id: str, now: float, settle: float = 0.0) -> UploadState:
        """The upload, or NotFound when it never existed, was terminated or has expired."""
        if settle and self._meta(valid_id(upload_id)).exists():
            with upload_lock(self._lock_file(valid_id(upload_id)), settle):
                return self.get(upload_id, now)
        try:
            state = UploadState(**json.loads(self._meta(valid_id(upload_id)).read_text()))
        except (OSError, ValueError, TypeError):
            raise NotFound("no such upload") from None
        if state.expires_at <= now and state.photo_id is None:
            raise NotFound("the upload has expired")
        return state

    def append(self, upload_id: str, offset: int, stream: BinaryIO, now: float, sha256: bytes | None = None) -> UploadState:
        """Write ``stream`` at ``offset``; the new state. OffsetMismatch when another request moved
        the offset (or the client's is wrong), UploadTooLarge past the announced length,
        ChecksumMismatch (nothing kept) when ``sha256`` was given and the chunk differs."""
        with self._locked(upload_id):
            state = self.get(upload_id, now)
            if offset != state.offset:
                raise OffsetMismatch(f"the upload is at offset {state.offset}, not {offset}")
            digest = hashlib.sha256()
            written = 0
            with open(self._part(upload_id), "r+b") as part:
                part.seek(offset)
                try:
                    while chunk := stream.read(_CHUNK):
                        if offset + written + len(chunk) > state.length:
                            raise UploadTooLarge(f"more bytes than the {state.length} announced in Upload-Length")
                        digest.update(chunk)
                        part.write(chunk)
                        written += len(chunk)
                except UploadTooLarge:
                    self._keep(part, state, offset)  # past the announced end: the chunk is dropped
                    raise
                except Exception:
                    # Cut off mid-body: keep what arrived, unless it can only be checked whole.
                    self._keep(part, state, offset if sha256 is not None else offset + written)
                    raise
                if sha256 is not None and digest.digest() != sha256:
                    self._keep(part, state, offset)
                    raise ChecksumMismatch("the chunk does not match its Upload-Checksum")
                self._keep(part, state, offset + written)
            return self.get(upload_id, now)

    @contextmanager
    def open(self, upload_id: str) -> Iterator[BinaryIO]:
        with open(self._part(valid_id(upload_id)), "rb") as part:
            yield part

    def finish(self, upload_id: str, photo_id: str, now: float) -> UploadState:
        with self._locked(upload_id):
            state = replace(self.get(upload_id, now), photo_id=photo_id)
            self._save(state)
            self._part(upload_id).unlink(missing_ok=True)  # the original is stored; the bytes are not needed twice
            return state

    def terminate(self, upload_id: str) -> None:
        with self._locked(upload_id):
            for path in (self._part(upload_id), self._meta(upload_id)):
                path.unlink(missing_ok=True)
        self._lock_file(upload_id).unlink(missing_ok=True)

    def expire(self, now: float) -> int:
        """Remove the uploads past their expiry, finished or not; how many."""
        expired = self._expired(now)
        for upload_id in expired:
            self.terminate(upload_id)
        return len(expired)

    def leftovers(self, now: float) -> list[str]:
        return [str(self._meta(upload_id)) for upload_id in self._expired(now)]

    def _expired(self, now: float) -> list[str]:
        found = []
        for meta in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else ():
            try:
                state = UploadState(**json.loads(meta.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if state.expires_at <= now:
                found.append(meta.stem)
        return found

    def _keep(self, part: BinaryIO, state: UploadState, offset: int) -> None:
        part.truncate(offset)
        part.flush()
        os.fsync(part.fileno())
        self._save(replace(state, offset=offset))

    def _save(self, state: UploadState) -> None:
        temp = self._meta(state.id).with_suffix(".tmp")
        with open(temp, "w") as out:
            json.dump(asdict(state), out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self._meta(state.id))

    @contextmanager
    def _locked(self, upload_id: str) -> Iterator[None]:
        with upload_lock(self._lock_file(upload_id)):
            yield

    def _part(self, upload_id: str) -> Path:
        return self.folder / f"{upload_id}.part"

    def _meta(self, upload_id: str) -> Path:
        return self.folder / f"{upload_id}.json"

    def _lock_file(self, upload_id: str) -> Path:
        return self.folder / f"{upload_id}.lock"

