"""The ``Storage`` port and its backends: a local folder (default), S3, and an in-memory fake.

Key layout (documented in docs/operations.md):
    originals/<photo id>                                   private, never served
    renditions/<photo id>/<spec>/<width>.<ext>             immutable, public through /i/…
    features/<photo id>                                    private, keypoints for duplicate matching
    incoming/<upload id>[.json]                            private, direct uploads not yet completed
"""

from __future__ import annotations

from media_pipeline.storage.base import IMMUTABLE, PRIVATE, ObjectInfo, Storage, features_key, original_key, rendition_key, rendition_prefix, validate_key

__all__ = ["IMMUTABLE", "PRIVATE", "ObjectInfo", "Storage", "features_key", "original_key", "rendition_key", "rendition_prefix", "validate_key", "make_storage"]


def make_storage(settings: "object") -> Storage:
    """Build the backend the settings pick (``MP_STORAGE_BACKEND``), in front of the old store
    while objects are being moved (``MP_STORAGE_FALLBACK_URL``)."""
    fallback_url = getattr(settings, "storage_fallback_url", "")
    if fallback_url:
        from media_pipeline.storage.fallback import FallbackStorage
        from media_pipeline.storage.urls import storage_for

        return FallbackStorage(make_storage(settings.replace(storage_fallback_url="")), storage_for(fallback_url, settings))  # type: ignore[attr-defined]
    backend = getattr(settings, "storage_backend")
    if backend == "local":
        from media_pipeline.storage.local import LocalStorage

        return LocalStorage.from_settings(settings)
    if backend == "s3":
        from media_pipeline.storage.s3 import S3Storage

        return S3Storage.from_settings(settings)
    raise ValueError(f"unknown storage backend {backend!r}")
