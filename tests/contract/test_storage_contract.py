"""One contract, every storage backend: local folder, S3 (a real S3 API over HTTP on loopback),
the in-memory fake, and a store being moved into (the fallback wrapper)."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from media_pipeline.errors import ObjectNotFound, StorageUnavailable
from media_pipeline.storage import make_storage
from media_pipeline.storage.fallback import FallbackStorage
from media_pipeline.storage.memory import MemoryStorage


@pytest.fixture(params=["local", "s3", "memory", "fallback"])
def storage(request: Any, settings: Settings) -> Any:
    if request.param == "memory":
        return MemoryStorage()
    if request.param == "fallback":  # a store being moved into: the new one in front of the old
        return FallbackStorage(make_storage(settings), MemoryStorage())
    if request.param == "s3":
        return make_storage(request.getfixturevalue("s3_settings"))
    return make_storage(settings)


def test_put_then_get_stat_and_open(storage: Any) -> None:
    info = storage.put("renditions/a/v1/320.webp", b"RIFF-data", "image/webp", "public, max-age=31536000, immutable")
    assert info.size == 9
    assert storage.get("renditions/a/v1/320.webp") == b"RIFF-data"
    stat = storage.stat("renditions/a/v1/320.webp")
    assert (stat.size, stat.content_type, stat.cache_control) == (9, "image/webp", "public, max-age=31536000, immutable")
    assert stat.etag and stat.last_modified > 0
    opened, stream = storage.open("renditions/a/v1/320.webp")
    with stream:
        assert stream.read() == b"RIFF-data"
    assert opened.etag == stat.etag


def test_put_from_a_stream(storage: Any) -> None:
    payload = bytes(range(256)) * 5000
    storage.put("originals/big", io.BytesIO(payload), "image/jpeg")
    assert storage.get("originals/big") == payload
    assert storage.stat("originals/big").size == len(payload)


def test_put_replaces_and_the_etag_follows_the_content(storage: Any) -> None:
    first = storage.put("k/x", b"one", "text/plain")
    second = storage.put("k/x", b"two!", "text/plain")
    assert storage.get("k/x") == b"two!"
    assert first.etag != second.etag
    again = storage.put("k/x", b"two!", "text/plain")
    assert again.etag == second.etag  # idempotent


def test_missing_objects_are_object_not_found(storage: Any) -> None:
    for call in (storage.get, storage.stat, storage.open):
        with pytest.raises(ObjectNotFound):
            call("nope/missing")
    with pytest.raises(FileNotFoundError):  # and a FileNotFoundError, like warehouse's adapters
        storage.get("nope/missing")
    assert not storage.exists("nope/missing")


def test_delete_is_idempotent(storage: Any) -> None:
    storage.put("d/1", b"x", "text/plain")
    storage.delete("d/1")
    storage.delete("d/1")
    assert not storage.exists("d/1")


def test_list_by_prefix(storage: Any) -> None:
    for key in ("renditions/p1/v/320.avif", "renditions/p1/v/640.avif", "renditions/p10/v/320.avif", "originals/p1"):
        storage.put(key, b"x", "image/avif")
    assert sorted(storage.list("renditions/p1/")) == ["renditions/p1/v/320.avif", "renditions/p1/v/640.avif"]
    assert sorted(storage.list("renditions/")) == [
        "renditions/p1/v/320.avif", "renditions/p1/v/640.avif", "renditions/p10/v/320.avif"]
    assert list(storage.list("nothing/")) == []


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "a//b", "", "a/./b", "a\\b", "ünï"])
def test_unsafe_keys_are_refused(storage: Any, key: str) -> None:
    with pytest.raises(ValueError):
        storage.put(key, b"x", "text/plain")


def test_concurrent_puts_never_expose_a_partial_object(storage: Any) -> None:
    bodies = [bytes([i]) * 200_000 for i in range(8)]
    seen: list[bytes] = []

    def writer(body: bytes) -> None:
        storage.put("race/key", body, "application/octet-stream")

    def reader() -> None:
        for _ in range(20):
            try:
                seen.append(storage.get("race/key"))
            except ObjectNotFound:
                pass

    threads = [threading.Thread(target=writer, args=(b,)) for b in bodies] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert storage.get("race/key") in bodies
    assert all(body in bodies for body in seen)


def test_check_passes_when_reachable(storage: Any) -> None:
    storage.check()


def test_s3_unreachable_is_storage_unavailable(settings: Settings) -> None:
    from tests.conftest import free_port

    dead = settings.replace(storage_backend="s3", s3_bucket="b", s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
                            s3_access_key_id="x", s3_secret_access_key="y")
    storage = make_storage(dead)
    with pytest.raises(StorageUnavailable):
        storage.put("a/b", b"x", "text/plain")
    with pytest.raises(StorageUnavailable):
        storage.check()


def test_local_put_leaves_no_temp_files(settings: Settings) -> None:
    storage = make_storage(settings)
    for i in range(5):
        storage.put(f"t/{i}", b"x" * 1000, "text/plain")
    root = Path(settings.effective_storage_dir)
    assert not [p for p in root.rglob(".tmp-*")]


def test_open_a_byte_range(storage: Any) -> None:
    payload = bytes(range(256)) * 40
    storage.put("r/obj", payload, "application/octet-stream")
    info, stream = storage.open("r/obj", (100, 355))
    with stream:
        assert stream.read() == payload[100:356]
    assert info.size == len(payload)
    _, stream = storage.open("r/obj", (len(payload) - 10, len(payload) - 1))
    with stream:
        assert stream.read() == payload[-10:]


def test_put_from_a_spooled_upload_on_every_backend(storage: Any, settings: Settings) -> None:
    """The upload path's own file: the local backend links it into place instead of copying it;
    every backend stores the same bytes, and they outlive the spool."""
    from media_pipeline.service import SpooledUpload

    payload = bytes(range(256)) * 9000
    upload = SpooledUpload.receive(io.BytesIO(payload), settings.tmp_dir, len(payload))
    info = storage.put("originals/spooled", upload.rewind(), "image/jpeg", sha256=upload.sha256)
    assert bytes(upload.buffer()[:4]) == payload[:4]  # the spool is still readable after the put
    upload.close()
    assert storage.get("originals/spooled") == payload
    assert storage.stat("originals/spooled").etag == info.etag and info.size == len(payload)
    other = storage.put("originals/other", io.BytesIO(payload[::-1]), "image/jpeg")
    assert other.etag != info.etag


def test_the_local_backend_writes_a_spooled_upload_once(settings: Settings, tmp_path: Path) -> None:
    """Linked, not copied: the object is the spool's inode (one link), and a spool file that
    already has a name, or is not read from its start, is copied instead."""
    import os

    from media_pipeline.service import SpooledUpload
    from media_pipeline.storage.local import LocalStorage

    local = LocalStorage(settings.effective_storage_dir)
    payload = b"\xff\xd8\xff" + bytes(range(256)) * 4000
    upload = SpooledUpload.receive(io.BytesIO(payload), settings.tmp_dir, len(payload))
    spool_inode = os.fstat(upload.file.fileno()).st_ino
    linked = local.put("originals/a", upload.rewind(), "image/jpeg", sha256=upload.sha256)
    assert linked.etag == upload.sha256[:32]  # the upload's own digest: the bytes are not hashed twice
    stored = os.stat(local.objects / "originals/a")
    assert (stored.st_ino, stored.st_nlink) == (spool_inode, 1)
    local.put("originals/b", upload.rewind(), "image/jpeg")  # the spool has a name now: a copy
    assert os.stat(local.objects / "originals/b").st_ino != spool_inode
    fresh = SpooledUpload.receive(io.BytesIO(payload), settings.tmp_dir, len(payload))
    fresh.file.seek(10)
    local.put("originals/c", fresh.file, "image/jpeg")  # from the middle: the rest, copied
    assert local.get("originals/c") == payload[10:]
    upload.close()
    fresh.close()
    assert local.get("originals/a") == local.get("originals/b") == payload
    assert sorted(os.listdir(settings.tmp_dir)) == []  # nothing left in the spool folder
