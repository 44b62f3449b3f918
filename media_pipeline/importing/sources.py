"""The narrow port an import reads through, and its backends.

A source lists its items in a stable order from a cursor on (so a job resumes where it stopped)
and reads each: its size, its first bytes (a ranged read: the header limits are checked before
anything is downloaded), a stream of it, and a server-side copy into our storage when the bytes
never need to leave it (same S3 endpoint and credentials). Vendor errors are ours
(``ObjectNotFound``, ``StorageUnavailable``), as for the storage port.

- a local folder: every file under it, by relative path
- ``s3://bucket/prefix``: every object under the prefix, by key, on the endpoint of the
  ``MP_IMPORT_S3_*`` settings (empty: the storage's own endpoint and credentials)
- a manifest (``*.jsonl``): one item a line (manifest.py); each ``source`` an ``s3://`` URL or a
  path (relative to the manifest's folder)
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Protocol

from media_pipeline.errors import ObjectNotFound, StorageUnavailable
from media_pipeline.importing.manifest import parse_line, source_of
from media_pipeline.importing.models import SourceItem
from media_pipeline.storage import Storage

S3_SCHEME = "s3://"


class ImportSource(Protocol):
    def items(self, after: str) -> Iterator[tuple[str, SourceItem]]:
        """(cursor after this item, item) from ``after`` on (``""``: the start)."""
        ...

    def size(self, item: SourceItem) -> int: ...

    def head(self, item: SourceItem, length: int) -> tuple[int, bytes]:
        """(the object's size, its first ``length`` bytes at most): one ranged read."""
        ...

    def open(self, item: SourceItem) -> BinaryIO: ...

    def copy_into(self, item: SourceItem, storage: Storage, key: str, content_type: str, cache_control: str) -> bool:
        """Copy without the bytes passing through here when the backends allow; ``False`` if not."""
        ...


class Objects:
    """Reads items by location: an absolute path, or ``s3://bucket/key`` through ``s3_client``.
    ``same_endpoint``: our storage is an ``S3Storage`` on the same endpoint and credentials."""

    def __init__(self, s3_client: Any = None, same_endpoint: Any = None) -> None:
        self.s3_client = s3_client
        self.same_endpoint = same_endpoint

    def size(self, item: SourceItem) -> int:
        if item.size is not None:
            return item.size
        if item.location.startswith(S3_SCHEME):
            bucket, key = _split_s3(item.location)
            from media_pipeline.storage.s3 import translated

            with translated(item.item):
                return int(self._client().head_object(Bucket=bucket, Key=key)["ContentLength"])
        try:
            return Path(item.location).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFound(item.item) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {item.location}: {exc}") from exc

    def head(self, item: SourceItem, length: int) -> tuple[int, bytes]:
        if not item.location.startswith(S3_SCHEME):
            with self._open(item) as stream:
                return os.fstat(stream.fileno()).st_size, stream.read(length)
        from botocore.exceptions import ClientError

        from media_pipeline.storage.s3 import translated

        bucket, key = _split_s3(item.location)
        try:
            answer = self._client().get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{length - 1}")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return 0, b""  # no byte 0: the object is empty
            with translated(item.item):
                raise
        except Exception:
            with translated(item.item):
                raise
        # The size is after the slash of Content-Range (absent when the whole object fit the range).
        total = str(answer.get("ContentRange") or "").rpartition("/")[2]
        with answer["Body"] as body:
            return (int(total) if total.isdigit() else int(answer["ContentLength"])), body.read(length)

    def open(self, item: SourceItem) -> BinaryIO:
        if item.location.startswith(S3_SCHEME):
            bucket, key = _split_s3(item.location)
            from media_pipeline.storage.s3 import translated

            with translated(item.item):
                return self._client().get_object(Bucket=bucket, Key=key)["Body"]
        return self._open(item)

    def _open(self, item: SourceItem) -> BinaryIO:
        try:
            return open(item.location, "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(item.item) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {item.location}: {exc}") from exc

    def copy_into(self, item: SourceItem, storage: Storage, key: str, content_type: str, cache_control: str) -> bool:
        if self.same_endpoint is None or storage is not self.same_endpoint or not item.location.startswith(S3_SCHEME):
            return False
        bucket, source_key = _split_s3(item.location)
        self.same_endpoint.copy_in(key, bucket, source_key, content_type, cache_control)
        return True

    def _client(self) -> Any:
        if self.same_endpoint is not None:
            return self.same_endpoint.client
        if self.s3_client is None:
            raise StorageUnavailable("no S3 client for the import (MP_IMPORT_S3_* settings)")
        return self.s3_client


class FolderSource(Objects):
    def __init__(self, root: Path, **objects: Any) -> None:
        super().__init__(**objects)
        self.root = root.resolve()

    def items(self, after: str) -> Iterator[tuple[str, SourceItem]]:
        # A sorted walk, one folder at a time: the cursor (a relative path) orders like the walk.
        for path in _walk(self.root):
            name = path.relative_to(self.root).as_posix()
            if name > after:
                yield name, SourceItem(item=name, location=str(path), external_id=name)


class S3PrefixSource(Objects):
    def __init__(self, url: str, **objects: Any) -> None:
        super().__init__(**objects)
        self.bucket, self.prefix = _split_s3(url)

    def items(self, after: str) -> Iterator[tuple[str, SourceItem]]:
        from media_pipeline.storage.s3 import translated

        paginator = self._client().get_paginator("list_objects_v2")
        with translated(self.prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, StartAfter=max(after, self.prefix)):
                for entry in page.get("Contents", []):
                    key = entry["Key"]
                    if key.endswith("/"):
                        continue
                    name = key[len(self.prefix):].lstrip("/")
                    yield key, SourceItem(item=name, location=f"{S3_SCHEME}{self.bucket}/{key}", size=int(entry["Size"]),
                                          external_id=name)


class ManifestSource(Objects):
    def __init__(self, path: Path, **objects: Any) -> None:
        super().__init__(**objects)
        self.path = path.resolve()

    def items(self, after: str) -> Iterator[tuple[str, SourceItem]]:
        done = int(after or 0)
        with open(self.path, encoding="utf-8", errors="replace") as lines:
            for line_no, line in enumerate(lines, 1):
                if line_no <= done:
                    continue
                item = parse_line(line, line_no)
                if item is None:
                    continue
                if item.problem is None:
                    source = source_of(item)
                    location = source if source.startswith(S3_SCHEME) else str((self.path.parent / source).resolve())
                    item = replace(item, location=location)
                yield str(line_no), item


def open_source(spec: str, settings: Any, storage: Storage) -> ImportSource:
    """The source ``spec`` names: ``s3://bucket/prefix``, a ``.jsonl`` manifest, or a folder."""
    from media_pipeline.storage.s3 import S3Storage, make_client

    endpoint = settings.import_s3_endpoint_url or settings.s3_endpoint_url
    own_endpoint = endpoint == settings.s3_endpoint_url and not settings.import_s3_access_key_id
    objects: dict[str, Any] = {"same_endpoint": storage} if own_endpoint and isinstance(storage, S3Storage) else {
        "s3_client": make_client(
            endpoint, settings.import_s3_region,
            settings.import_s3_access_key_id or (settings.s3_access_key_id if own_endpoint else ""),
            settings.import_s3_secret_access_key or (settings.s3_secret_access_key if own_endpoint else ""),
            settings.import_s3_addressing_style)}
    if spec.startswith(S3_SCHEME):
        return S3PrefixSource(spec, **objects)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path, **objects)
    if path.is_file():
        return ManifestSource(path, **objects)
    raise ValueError(f"{spec}: no such folder or manifest, and not an s3:// URL")


def _walk(folder: Path) -> Iterator[Path]:
    try:
        # A folder sorts as "name/", so the walk's order is the order of the relative paths.
        entries = sorted(folder.iterdir(), key=lambda p: p.name + "/" if p.is_dir() else p.name)
    except OSError:
        return
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry)
        elif entry.is_file():
            yield entry


def _split_s3(url: str) -> tuple[str, str]:
    bucket, _, key = url[len(S3_SCHEME):].partition("/")
    if not bucket:
        raise ValueError(f"not an s3://bucket/key URL: {url!r}")
    return bucket, key
