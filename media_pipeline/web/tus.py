"""Resumable uploads: tus 1.0 core with the creation, creation-with-upload, termination,
expiration and checksum (sha256) extensions, under ``/v1/tus/``.

A phone on a flaky network sends a 30 MB photo in chunks and, cut off, asks where it got to
(``HEAD``) and goes on from there (``PATCH``). The last byte turns the upload into a photo
exactly as ``POST /v1/photos`` does (the same checks and errors, idempotent by upload id); tus
answers that ``PATCH`` with 204, so the photo is in headers, ``Photo-Id`` and ``Photo-Location``,
and on any later ``HEAD``, so a client whose last answer was lost still learns its photo. The owner
comes from ``Upload-Metadata`` (``owner``) or ``X-Owner``. What is received is kept by a
``TusStore`` (``media_pipeline/resumable/``): a local folder, or S3 multipart with S3 storage.
Authentication and rate limits are the API's (``/v1``).
"""

from __future__ import annotations

import base64
import re
import socket
import time
from contextlib import contextmanager
from typing import Iterator

from flask import Blueprint, Response, request, url_for

from media_pipeline import service
from media_pipeline.errors import BodyTimeout, MediaError, NotOctetStream, OffsetMismatch, TusVersionMismatch, UploadError, UploadTooLarge
from media_pipeline.resumable import TusStore, UploadState, make_tus_store, parse_metadata
from media_pipeline.service import Services, SpooledUpload
from media_pipeline.web.access import key_name
from media_pipeline.web.photos import services

bp = Blueprint("tus", __name__, url_prefix="/v1/tus")

VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
_OCTETS = "application/offset+octet-stream"
_MAX_OWNER = 128
_SETTLE_SECONDS = 2.0


class TusError(UploadError):
    """A request that breaks the protocol (a missing or malformed header)."""


def store(svc: Services) -> TusStore:
    return make_tus_store(svc.settings.tus_dir, svc.settings.tus_expire_seconds, svc.storage)


@bp.after_request
def _tus_headers(response: Response) -> Response:
    response.headers["Tus-Resumable"] = VERSION
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.before_request
def _check_version() -> None:
    if request.method == "OPTIONS":
        return
    version = request.headers.get("Tus-Resumable")
    if version is None:
        raise TusError(f"send Tus-Resumable: {VERSION}", code="bad_request")
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise TusError(f"Tus-Resumable: {version!r} is not a version", code="bad_request")
    if version != VERSION:
        raise TusVersionMismatch(f"this server speaks tus {VERSION}, not {version}")


@bp.route("/", methods=["OPTIONS"], strict_slashes=False)
def discover() -> tuple[str, int, dict[str, str]]:
    return "", 204, {"Tus-Version": VERSION, "Tus-Extension": EXTENSIONS, "Tus-Checksum-Algorithm": "sha256",
                     "Tus-Max-Size": str(services().settings.max_upload_bytes)}


@bp.post("/", strict_slashes=False)
def create() -> tuple[str, int, dict[str, str]]:
    svc = services()
    length = _int_header("Upload-Length")
    if length <= 0:
        raise TusError("Upload-Length must be a positive number of bytes", code="bad_upload_length")
    if length > svc.settings.max_upload_bytes:
        raise UploadTooLarge(f"the upload is larger than {svc.settings.max_upload_bytes} bytes")
    try:
        metadata = parse_metadata(request.headers.get("Upload-Metadata"))
    except ValueError as exc:
        raise TusError(str(exc), code="bad_metadata") from None
    owner = metadata.get("owner") or request.headers.get("X-Owner") or None
    if owner is not None and len(owner) > _MAX_OWNER:
        raise TusError(f"owner is longer than {_MAX_OWNER} characters", code="bad_owner")
    now = time.time()
    state = store(svc).create(length, owner, metadata, now)
    headers = {"Location": url_for("tus.upload", upload_id=state.id), "Upload-Expires": _http_date(state.expires_at)}
    if request.content_length and request.headers.get("Content-Type") == _OCTETS:
        state, photo_headers = _receive(svc, state, now)  # creation-with-upload
        headers |= {"Upload-Offset": str(state.offset)} | photo_headers
    return "", 201, headers


@bp.route("/<upload_id>", methods=["HEAD"])
def upload(upload_id: str) -> tuple[str, int, dict[str, str]]:
    # A client whose connection just broke asks at once: give the PATCH the server is still
    # finishing a moment to keep what arrived, or the client resends it and meets a 409.
    state = store(services()).get(upload_id, time.time(), settle=_SETTLE_SECONDS)
    headers = {"Upload-Offset": str(state.offset), "Upload-Length": str(state.length),
               "Upload-Expires": _http_date(state.expires_at)}
    return "", 200, headers | _photo_headers(state)


@bp.patch("/<upload_id>")
def append(upload_id: str) -> tuple[str, int, dict[str, str]]:
    if request.headers.get("Content-Type") != _OCTETS:
        raise NotOctetStream(f"send Content-Type: {_OCTETS}")
    svc = services()
    now = time.time()
    state = store(svc).get(upload_id, now)
    offset = _int_header("Upload-Offset")
    if state.photo_id is not None:
        # Already a photo (a retried last PATCH whose answer was lost): say so, change nothing.
        if offset != state.offset:
            raise OffsetMismatch(f"the upload is complete at offset {state.offset}")
        return "", 204, {"Upload-Offset": str(state.offset), "Upload-Expires": _http_date(state.expires_at)} | _photo_headers(state)
    state, photo_headers = _receive(svc, state, now, offset)
    return "", 204, {"Upload-Offset": str(state.offset), "Upload-Expires": _http_date(state.expires_at)} | photo_headers


@bp.delete("/<upload_id>")
def terminate(upload_id: str) -> tuple[str, int]:
    svc = services()
    uploads = store(svc)
    uploads.get(upload_id, time.time())
    uploads.terminate(upload_id)
    return "", 204


def _receive(svc: Services, state: UploadState, now: float, offset: int | None = None) -> tuple[UploadState, dict[str, str]]:
    """Append the request body; on the last byte, make the photo."""
    uploads = store(svc)
    limit = svc.settings.tus_body_timeout_seconds
    try:
        with _body_read_timeout(limit):
            state = uploads.append(state.id, state.offset if offset is None else offset, request.stream, now, _checksum())
    except Exception as exc:
        if not _timed_out(exc):
            raise
        raise BodyTimeout(f"no byte of the body for {limit} s: what arrived is kept; HEAD for the offset and resume") from None
    if not state.complete or state.photo_id is not None:
        return state, _photo_headers(state)
    with uploads.open(state.id) as body:
        upload = SpooledUpload.receive(body, svc.settings.tmp_dir, svc.settings.max_upload_bytes)
    try:
        # The upload id is the idempotency key: a retried last PATCH cannot make a second photo.
        photo, _ = service.ingest_idempotent(svc, upload, state.owner, f"tus-{state.id}", client=key_name())
    except MediaError:
        uploads.terminate(state.id)  # not an acceptable image: nothing to resume
        raise
    finally:
        upload.close()
    state = uploads.finish(state.id, photo.id, now)  # and the bytes go: the original holds them
    return state, _photo_headers(state)


@contextmanager
def _body_read_timeout(seconds: int) -> Iterator[None]:
    """Reads of the request's body fail with TimeoutError after ``seconds`` without a byte. The
    PATCH holds its upload's lock while it reads, and a client gone without a FIN or reset (a
    phone that changed networks) would otherwise hold it until the connection dies: without a proxy
    in front, neither gunicorn nor werkzeug sets a read timeout on the request's socket."""
    connection = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    if not seconds or not isinstance(connection, socket.socket):
        yield
        return
    before = connection.gettimeout()
    connection.settimeout(seconds)
    try:
        yield
    finally:
        try:
            connection.settimeout(before)
        except OSError:  # closed meanwhile
            pass


def _timed_out(exc: BaseException | None) -> bool:
    """Whether a body read timed out: werkzeug's request stream turns the TimeoutError into a
    ClientDisconnected (400) raised from it."""
    while exc is not None:
        if isinstance(exc, TimeoutError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _photo_headers(state: UploadState) -> dict[str, str]:
    if state.photo_id is None:
        return {}
    return {"Photo-Id": state.photo_id, "Photo-Location": url_for("photos.get_photo", photo_id=state.photo_id)}


def _checksum() -> bytes | None:
    header = request.headers.get("Upload-Checksum")
    if header is None:
        return None
    algorithm, _, value = header.partition(" ")
    if algorithm != "sha256":
        raise TusError("Upload-Checksum: only sha256 is supported", code="bad_checksum_algorithm")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise TusError("Upload-Checksum: the digest is not base64", code="bad_checksum") from None


def _int_header(name: str) -> int:
    try:
        value = int(request.headers.get(name, ""))
    except ValueError:
        raise TusError(f"{name} must be a number", code=f"bad_{name.lower().replace('-', '_')}") from None
    if value < 0:
        raise TusError(f"{name} must not be negative", code=f"bad_{name.lower().replace('-', '_')}")
    return value


def _http_date(seconds: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(seconds))

