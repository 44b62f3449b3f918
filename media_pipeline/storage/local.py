"""Local-folder backend: objects under ``<root>/objects``, their headers under ``<root>/meta``.

A put writes a temporary file in the target folder, fsyncs it and renames it into place, so a
reader sees the old object or the new one, never half of one; the folder is fsynced too so the
rename survives a power cut. An upload spooled to an unnamed file on the same filesystem is not
copied: that file is linked into place (see ``SpooledUpload``). The ETag is a content hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from media_pipeline.errors import ObjectNotFound, StorageUnavailable
from media_pipeline.storage.base import ObjectInfo, validate_key

_CHUNK = 1 << 20
# mkstemp makes 0600 files; objects get the mode an ordinary write would (0666 less the umask), so
# a web server or a backup job running as another user can read them.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.objects = self.root / "objects"
        self.meta = self.root / "meta"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.meta.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(cls, settings: "object") -> "LocalStorage":
        return cls(getattr(settings, "effective_storage_dir"))

    def _paths(self, key: str) -> tuple[Path, Path]:
        validate_key(key)
        return self.objects / key, self.meta / (key + ".json")

    def put(self, key: str, data: bytes | BinaryIO, content_type: str, cache_control: str | None = None,
            sha256: str | None = None) -> ObjectInfo:
        path, meta_path = self._paths(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            linkable = None if isinstance(data, (bytes, bytearray, memoryview)) else _unnamed_file(data, self.objects)
            if linkable is not None:
                tmp, etag = _link_into(path.parent, data, linkable, sha256)
            else:
                tmp, etag = _write_into(path.parent, data)
            try:
                meta = {"content_type": content_type, "cache_control": cache_control, "etag": etag}
                _atomic_write(meta_path, json.dumps(meta).encode())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            fsync_dir(path.parent)
        except OSError as exc:
            raise StorageUnavailable(f"local storage write failed for {key}: {exc}") from exc
        return self.stat(key)

    def stat(self, key: str) -> ObjectInfo:
        path, meta_path = self._paths(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        try:
            meta = json.loads(meta_path.read_bytes())
        except (FileNotFoundError, ValueError):
            meta = {}
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=meta.get("etag") or f"{st.st_size:x}-{int(st.st_mtime_ns):x}",
            last_modified=st.st_mtime,
            content_type=meta.get("content_type") or "application/octet-stream",
            cache_control=meta.get("cache_control"),
        )

    def get(self, key: str) -> bytes:
        info, stream = self.open(key)
        with stream:
            return stream.read()

    def open(self, key: str, byte_range: tuple[int, int] | None = None) -> tuple[ObjectInfo, BinaryIO]:
        path, _ = self._paths(key)
        try:
            stream = open(path, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        if byte_range is None:
            return self.stat(key), stream
        start, end = byte_range
        stream.seek(start)
        return self.stat(key), _Limited(stream, end - start + 1)

    def exists(self, key: str) -> bool:
        path, _ = self._paths(key)
        return path.is_file()

    def delete(self, key: str) -> None:
        path, meta_path = self._paths(key)
        path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[str]:
        base = self.objects
        start = base / prefix if prefix.endswith("/") else (base / prefix).parent
        if not start.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(".tmp-"):
                    continue
                key = os.path.relpath(os.path.join(dirpath, name), base).replace(os.sep, "/")
                if key.startswith(prefix):
                    yield key

    def check(self) -> None:
        if not os.access(self.objects, os.W_OK):
            raise StorageUnavailable(f"{self.objects} is not writable")


class _Limited(io.RawIOBase):
    """At most ``remaining`` bytes of ``inner``, for range requests."""

    def __init__(self, inner: BinaryIO, remaining: int) -> None:
        self.inner = inner
        self.remaining = remaining

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        size = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self.inner.read(size)
        self.remaining -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def _content_etag(digest: "hashlib._Hash") -> str:
    # SHA-256 cut to MD5's length: a strong validator of the content, and with the CPU's SHA
    # instructions more than twice as fast as MD5 (1.9 against 0.8 GB/s here), which a 3 MB
    # upload feels.
    return digest.hexdigest()[:32]


def _write_into(folder: Path, data: bytes | bytearray | memoryview | BinaryIO) -> tuple[str, str]:
    """Write ``data`` to a new temporary file in ``folder`` and fsync it: (its path, its ETag)."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            if isinstance(data, (bytes, bytearray, memoryview)):
                out.write(data)
                digest.update(data)
            else:
                while chunk := data.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp, _content_etag(digest)


def _unnamed_file(data: BinaryIO, objects: Path) -> int | None:
    """The descriptor of ``data`` if it is an unnamed file (``O_TMPFILE``, never linked) on the
    objects' filesystem, read from its start: such a file can become the object itself."""
    try:
        fd = data.fileno()
        info = os.fstat(fd)
        at_start = data.tell() == 0
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
    if not at_start or info.st_nlink != 0 or not stat.S_ISREG(info.st_mode) or info.st_dev != os.stat(objects).st_dev:
        return None
    return fd


def _link_into(folder: Path, data: BinaryIO, fd: int, sha256: str | None) -> tuple[str, str]:
    """Give the unnamed file a temporary name in ``folder`` instead of copying its bytes: an
    upload is written to disk once, not twice. (Linux: ``linkat`` of ``/proc/self/fd/N``.)"""
    data.flush()
    etag = sha256[:32] if sha256 else _content_etag(hashlib.file_digest(data, "sha256"))  # type: ignore[arg-type]
    os.fchmod(fd, _FILE_MODE)
    os.fsync(fd)
    name = f".tmp-{uuid.uuid4().hex}"
    # A directory fd makes CPython call linkat(2), which can follow the /proc link; without one it
    # calls link(2), which cannot.
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(f"/proc/self/fd/{fd}", name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd, follow_symlinks=True)
    finally:
        os.close(folder_fd)
    return str(folder / name), etag


def _atomic_write(path: Path, data: bytes) -> None:
    tmp, _ = _write_into(path.parent, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a file created or renamed in it) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
