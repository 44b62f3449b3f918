"""The project's error hierarchy. Expected outcomes are values; these are failures.

    MediaPipelineError                  code, http_status, transient
    ├── UploadError                     400 bad_upload
    │   ├── EmptyUpload                 400 empty_file
    │   ├── UploadTooLarge              413 too_large
    │   ├── TusVersionMismatch          412 unsupported_tus_version
    │   ├── NotOctetStream              415 bad_content_type      (a tus PATCH)
    │   ├── OffsetMismatch              409 offset_mismatch       (a tus PATCH at the wrong offset)
    │   ├── ChecksumMismatch            460 checksum_mismatch     (a tus chunk and its Upload-Checksum)
    │   ├── UploadNotSent               409 upload_missing        (a direct upload completed before it was sent)
    │   ├── UploadUsed                  409 upload_used           (a direct upload's one-time target, again)
    │   ├── UploadExpired               410 upload_expired
    │   └── BodyTimeout                 408 body_timeout          (a tus PATCH whose body stopped coming)
    ├── MediaError                      (the image itself is bad: never retried)
    │   ├── UnsupportedFormat           415 unsupported_format
    │   ├── ImageTooLarge               422 too_many_pixels
    │   ├── CorruptImage                422 corrupt_image
    │   └── ProcessingTimeout           422 timeout
    ├── IdempotencyConflict             409 idempotency_in_progress
    │   └── IdempotencyMismatch         422 idempotency_mismatch
    ├── Unauthorized                    401 unauthorized        (no or unknown API key)
    ├── Forbidden                       403 forbidden           (a revoked key, or a client's key on the console)
    ├── RateLimited                     429 rate_limited        (with Retry-After)
    ├── NotFound                        404 not_found
    ├── BadQuery                        400 bad_query           (a console list's parameter)
    ├── NotFailed                       409 not_failed          (a retry of a photo that is not failed)
    ├── StorageError                    500 storage_error
    │   ├── ObjectNotFound              404 object_not_found   (vendor "NoSuchKey" becomes this)
    │   ├── ObjectChanged               409 object_changed     (a conditional write lost to another writer)
    │   └── StorageUnavailable          503 storage_unavailable, transient
    ├── CatalogError                    500 catalog_error
    │   └── CatalogUnavailable          503 catalog_unavailable, transient
    ├── QueueUnavailable                503 queue_unavailable, transient
    └── ValidatorUnavailable            503 validator_unavailable, transient (MP_VALIDATION_URL)

Transient errors are the only ones a task retries.
"""

from __future__ import annotations


class MediaPipelineError(Exception):
    code: str = "internal"
    http_status: int = 500
    transient: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class UploadError(MediaPipelineError):
    http_status = 400
    code = "bad_upload"


class EmptyUpload(UploadError):
    code = "empty_file"


class UploadTooLarge(UploadError):
    http_status = 413
    code = "too_large"


class TusVersionMismatch(UploadError):
    http_status = 412
    code = "unsupported_tus_version"


class NotOctetStream(UploadError):
    http_status = 415
    code = "bad_content_type"


class OffsetMismatch(UploadError):
    http_status = 409
    code = "offset_mismatch"


class ChecksumMismatch(UploadError):
    http_status = 460  # tus' own status for it
    code = "checksum_mismatch"


class UploadNotSent(UploadError):
    http_status = 409
    code = "upload_missing"


class UploadUsed(UploadError):
    http_status = 409
    code = "upload_used"


class UploadExpired(UploadError):
    http_status = 410
    code = "upload_expired"


class BodyTimeout(UploadError):
    http_status = 408
    code = "body_timeout"


class MediaError(MediaPipelineError):
    http_status = 422
    code = "bad_image"


class UnsupportedFormat(MediaError):
    http_status = 415
    code = "unsupported_format"


class ImageTooLarge(MediaError):
    code = "too_many_pixels"


class CorruptImage(MediaError):
    code = "corrupt_image"


class ProcessingTimeout(MediaError):
    code = "timeout"


class IdempotencyConflict(MediaPipelineError):
    http_status = 409
    code = "idempotency_in_progress"


class IdempotencyMismatch(IdempotencyConflict):
    http_status = 422
    code = "idempotency_mismatch"


class Unauthorized(MediaPipelineError):
    http_status = 401
    code = "unauthorized"


class Forbidden(MediaPipelineError):
    http_status = 403
    code = "forbidden"


class RateLimited(MediaPipelineError):
    http_status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFound(MediaPipelineError):
    http_status = 404
    code = "not_found"


class BadFocalPoint(MediaPipelineError):
    http_status = 400
    code = "bad_focal_point"


class BadVisibility(MediaPipelineError):
    http_status = 400
    code = "bad_visibility"


class NotReady(MediaPipelineError):
    http_status = 409
    code = "not_ready"


class BadQuery(MediaPipelineError):
    """A list's query parameter out of its range (an unknown status, a malformed cursor or time)."""

    http_status = 400
    code = "bad_query"


class NotFailed(MediaPipelineError):
    http_status = 409
    code = "not_failed"


class StorageError(MediaPipelineError):
    code = "storage_error"


class ObjectNotFound(StorageError, FileNotFoundError):
    http_status = 404
    code = "object_not_found"


class ObjectChanged(StorageError):
    """A write conditional on the object's ETag (S3 ``If-Match``/``If-None-Match``) found it changed."""

    http_status = 409
    code = "object_changed"


class StorageUnavailable(StorageError):
    http_status = 503
    code = "storage_unavailable"
    transient = True


class CatalogError(MediaPipelineError):
    code = "catalog_error"


class CatalogUnavailable(CatalogError):
    http_status = 503
    code = "catalog_unavailable"
    transient = True


class QueueUnavailable(MediaPipelineError):
    http_status = 503
    code = "queue_unavailable"
    transient = True


class ValidatorUnavailable(MediaPipelineError):
    """The outside validator (``MP_VALIDATION_URL``) failed or could not be reached: the photo
    waits and is retried, never let through unchecked."""

    http_status = 503
    code = "validator_unavailable"
    transient = True
