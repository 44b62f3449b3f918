"""S3 backend (AWS, MinIO, R2, any S3-compatible endpoint) through boto3.

Vendor errors become ours here and nowhere else: ``NoSuchKey``/404 is ``ObjectNotFound``;
connection failures, throttling and 5xx are ``StorageUnavailable`` (retryable). A PUT of one
object is atomic in S3; originals are at most ``MP_MAX_UPLOAD_BYTES`` (40 MB by default), far
below the 5 GB single-PUT limit, so ``put`` never leaves a multipart upload half-done. Multipart
uploads are used only by resumable (tus) uploads, which keep their parts as they arrive
(``media_pipeline/resumable/s3.py``); ``multipart_uploads`` lists them so abandoned ones can be
aborted. ``put_if`` is a write conditional on the object's ETag (S3's ``If-Match``, or
``If-None-Match: *`` for "only if absent"): the loser of a race gets ``ObjectChanged``.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace
from typing import Any, BinaryIO, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnectionError

from media_pipeline.errors import ObjectChanged, ObjectNotFound, StorageError, StorageUnavailable
from media_pipeline.storage.base import ObjectInfo, validate_key

_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchBucket", "NoSuchUpload"}
_CHANGED = {"PreconditionFailed", "ConditionalRequestConflict", "412"}
_TRANSIENT = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "ThrottlingException", "503", "500"}


class S3Storage:
    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    @classmethod
    def from_settings(cls, settings: Any) -> "S3Storage":
        client = make_client(settings.s3_endpoint_url, settings.s3_region, settings.s3_access_key_id,
                             settings.s3_secret_access_key, settings.s3_addressing_style)
        return cls(client, settings.s3_bucket, settings.s3_prefix)

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def put(self, key: str, data: bytes | BinaryIO, content_type: str, cache_control: str | None = None,
            sha256: str | None = None) -> ObjectInfo:
        """One PUT and nothing after it: a HEAD to describe the object would be a second request
        that can fail after the object is stored, and the caller would take the write for lost."""
        extra = {"CacheControl": cache_control} if cache_control else {}
        if isinstance(data, (bytes, bytearray, memoryview)):
            size = len(data)
        else:
            start = data.tell()
            size = data.seek(0, io.SEEK_END) - start
            data.seek(start)
        with translated(key):
            answer = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type, **extra)
        return ObjectInfo(key=key, size=size, etag=str(answer.get("ETag", "")).strip('"'), last_modified=time.time(),
                          content_type=content_type, cache_control=cache_control)

    def stat(self, key: str) -> ObjectInfo:
        with translated(key):
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        return _info(key, head)

    def get(self, key: str) -> bytes:
        info, body = self.open(key)
        with body:
            return body.read()

    def open(self, key: str, byte_range: tuple[int, int] | None = None) -> tuple[ObjectInfo, BinaryIO]:
        extra = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        with translated(key):
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)
        info = _info(key, answer)
        if byte_range:  # ContentLength is the part's; the object's size is after the slash of ContentRange
            info = replace(info, size=int(str(answer["ContentRange"]).rsplit("/", 1)[1]))
        return info, answer["Body"]

    def copy_in(self, key: str, source_bucket: str, source_key: str, content_type: str, cache_control: str | None) -> None:
        """Copy an object of another bucket on this endpoint to ``key`` without the bytes leaving
        S3 (CopyObject; objects up to 5 GB, far above MP_MAX_UPLOAD_BYTES)."""
        extra = {"CacheControl": cache_control} if cache_control else {}
        with translated(source_key):
            self.client.copy_object(Bucket=self.bucket, Key=self._key(key), CopySource={"Bucket": source_bucket, "Key": source_key},
                                    MetadataDirective="REPLACE", ContentType=content_type, **extra)

    def presigned_url(self, key: str, expires: int) -> str:
        """A time-limited GET URL, for operators who prefer the CDN to fetch from S3 directly."""
        with translated(key):
            return self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires
            )

    def presigned_post(self, key: str, max_bytes: int, expires: int) -> dict[str, Any]:
        """A form a client POSTs the file to, for exactly ``key`` and at most ``max_bytes``: S3
        refuses anything else, so the API never carries the bytes."""
        with translated(key):
            return self.client.generate_presigned_post(
                self.bucket, self._key(key), Conditions=[["content-length-range", 1, max_bytes]], ExpiresIn=expires)

    def put_if(self, key: str, data: bytes, content_type: str, etag: str | None) -> str:
        """Store ``data`` only if the object's ETag is still ``etag`` (``None``: only if there is no
        object yet); its new ETag. ``ObjectChanged`` when another writer got there first."""
        condition = {"IfMatch": f'"{etag}"'} if etag is not None else {"IfNoneMatch": "*"}
        with translated(key):
            answer = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type,
                                            CacheControl="private, no-store", **condition)
        return str(answer.get("ETag", "")).strip('"')

    def start_multipart(self, key: str, content_type: str) -> str:
        """A new multipart upload to ``key``; its id."""
        with translated(key):
            return str(self.client.create_multipart_upload(Bucket=self.bucket, Key=self._key(key), ContentType=content_type,
                                                           CacheControl="private, no-store")["UploadId"])

    def upload_part(self, key: str, multipart_id: str, number: int, data: bytes) -> str:
        """Store one part (1..10000; every part but the last at least 5 MiB); its ETag."""
        with translated(key):
            answer = self.client.upload_part(Bucket=self.bucket, Key=self._key(key), UploadId=multipart_id, PartNumber=number, Body=data)
        return str(answer["ETag"]).strip('"')

    def complete_multipart(self, key: str, multipart_id: str, parts: list[tuple[int, str]]) -> None:
        """Join ``parts`` (number, ETag; ascending) into the object ``key``; parts not named are dropped.
        S3 refuses a part whose ETag is not the one given, so a part overwritten since is never joined."""
        listed = [{"PartNumber": number, "ETag": f'"{etag}"'} for number, etag in parts]
        with translated(key):
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=self._key(key), UploadId=multipart_id,
                                                  MultipartUpload={"Parts": listed})

    def abort_multipart(self, key: str, multipart_id: str) -> None:
        """Drop a multipart upload and its parts; one already gone is fine."""
        try:
            with translated(key):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._key(key), UploadId=multipart_id)
        except ObjectNotFound:
            pass

    def multipart_uploads(self, prefix: str) -> Iterator[tuple[str, str, float]]:
        """The multipart uploads in progress under ``prefix``: (key, id, started at)."""
        paginator = self.client.get_paginator("list_multipart_uploads")
        with translated(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Uploads", []):
                    yield item["Key"][len(self.prefix):], item["UploadId"], item["Initiated"].timestamp()

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        with translated(key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        with translated(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self.prefix) :]

    def check(self) -> None:
        with translated(""):
            self.client.head_bucket(Bucket=self.bucket)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (local set-ups and tests; production buckets exist)."""
        try:
            self.check()
        except ObjectNotFound:
            with translated(""):
                self.client.create_bucket(Bucket=self.bucket)


def make_client(endpoint_url: str, region: str, access_key_id: str, secret_access_key: str, addressing_style: str) -> Any:
    """A boto3 S3 client (empty strings: boto3's defaults). Imports read other buckets with one too."""
    # "legacy" retries, not "standard": standard's retry quota (500 tokens per client, 10 per
    # failed connection attempt) is drained by a short outage and refills only by one token per
    # first-try success, so a worker that lived through an outage stops retrying for good while
    # S3 keeps answering some SlowDowns; each photo then fails whole attempts instead of one call.
    config = Config(
        retries={"mode": "legacy", "max_attempts": 4},
        connect_timeout=5,
        read_timeout=30,
        s3={"addressing_style": addressing_style},
        signature_version="s3v4",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        config=config,
    )


def _info(key: str, answer: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=int(answer["ContentLength"]),
        etag=str(answer.get("ETag", "")).strip('"'),
        last_modified=answer["LastModified"].timestamp(),
        content_type=answer.get("ContentType") or "application/octet-stream",
        cache_control=answer.get("CacheControl"),
    )


class translated:
    """Context manager turning boto errors into the project's storage errors."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _MISSING or status == 404:
                raise ObjectNotFound(self.key) from exc
            if code in _CHANGED or status == 412:
                raise ObjectChanged(f"S3 {code or status}: {self.key!r} changed meanwhile") from exc
            if code in _TRANSIENT or status >= 500 or status == 429:
                raise StorageUnavailable(f"S3 {code or status} for {self.key!r}") from exc
            raise StorageError(f"S3 {code or status} for {self.key!r}: {error.get('Message', '')}") from exc
        if isinstance(exc, (BotoConnectionError, BotoCoreError)):
            raise StorageUnavailable(f"S3 unreachable for {self.key!r}: {exc}") from exc
        return False
