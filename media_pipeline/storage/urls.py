"""A storage backend named by one URL, for the commands and settings that point at a second store
(``migrate-storage --to``, ``MP_STORAGE_FALLBACK_URL``):

    file:///srv/media/storage          the local backend on that folder (a plain absolute path too)
    s3://bucket[/prefix]?endpoint=http://minio:9000&region=us-east-1&addressing=path

An S3 URL carries no credentials (they would end up in shell histories and process lists): the
store's keys come from boto3's default chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a
profile, an instance role), or from ``MP_S3_ACCESS_KEY_ID``/``MP_S3_SECRET_ACCESS_KEY`` when the URL
names the endpoint and bucket those settings are for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from media_pipeline.storage.base import Storage

_S3_OPTIONS = {"endpoint": "s3_endpoint_url", "region": "s3_region", "addressing": "s3_addressing_style"}


def settings_for(url: str, settings: Any) -> Any:
    """``settings`` with its storage settings replaced by those ``url`` names; ValueError for a
    URL that names no backend."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else url)
        if not path.is_absolute():
            raise ValueError(f"a local store is an absolute folder (file:///path), not {url!r}")
        return settings.replace(storage_backend="local", storage_dir=path)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"a store is file:///folder or s3://bucket[/prefix][?endpoint=…&region=…&addressing=…], not {url!r}")
    query = {name: values[-1] for name, values in parse_qs(parsed.query).items()}
    unknown = set(query) - set(_S3_OPTIONS)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))} in {url!r}: use {', '.join(_S3_OPTIONS)}")
    prefix = parsed.path.strip("/")
    changes: dict[str, Any] = {"storage_backend": "s3", "s3_bucket": parsed.netloc, "s3_prefix": f"{prefix}/" if prefix else "",
                               "s3_endpoint_url": "", **{_S3_OPTIONS[name]: value for name, value in query.items()}}
    same_store = (settings.storage_backend == "s3" and settings.s3_bucket == changes["s3_bucket"]
                  and settings.s3_endpoint_url == changes["s3_endpoint_url"])
    if not same_store:  # another store's keys are not these settings' ones: boto3's chain finds them
        changes.update(s3_access_key_id="", s3_secret_access_key="")
    return settings.replace(**changes)


def storage_for(url: str, settings: Any) -> Storage:
    from media_pipeline.storage import make_storage

    return make_storage(settings_for(url, settings).replace(storage_fallback_url=""))


def environment_for(url: str, settings: Any) -> dict[str, str]:
    """The ``MP_`` settings that make ``url`` the service's store."""
    moved = settings_for(url, settings)
    names = ["MP_STORAGE_BACKEND"] + (["MP_STORAGE_DIR"] if moved.storage_backend == "local" else
                                      ["MP_S3_BUCKET", "MP_S3_PREFIX", "MP_S3_ENDPOINT_URL", "MP_S3_REGION", "MP_S3_ADDRESSING_STYLE"])
    env = moved.as_env()
    return {name: env.get(name, "") for name in names}


def url_of(settings: Any) -> str:
    """The URL naming the store ``settings`` use (credentials left out, as in every store URL)."""
    if settings.storage_backend == "local":
        return f"file://{Path(settings.effective_storage_dir).resolve()}"
    options = "&".join(f"{name}={getattr(settings, attr)}" for name, attr in _S3_OPTIONS.items() if getattr(settings, attr))
    return f"s3://{settings.s3_bucket}/{settings.s3_prefix}".rstrip("/") + (f"?{options}" if options else "")
