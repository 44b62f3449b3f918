"""Resumable uploads (tus 1.0 under /v1/tus/): by hand, with tuspy (the tus project's client)
against a real server, cut off and resumed, raced, and across a server restart; every test on
both tus stores, the local folder and S3 multipart (on the S3 server the tests start)."""

from __future__ import annotations

import base64
import hashlib
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bench import edits
from media_pipeline import service
from media_pipeline.service import Outcome, Services, build_services
from media_pipeline.web import create_app
from tests import images
from tests.front import AppServer

TUS = {"Tus-Resumable": "1.0.0"}
PHOTO = edits.jpeg_bytes(images.natural(1600, 1200, seed=41), 95)


@pytest.fixture(params=["local", "s3"])
def services(request: Any, settings: Any, queue: Any) -> Services:
    """The API's services on local storage (the tus folder) or S3 (tus parts in S3 multipart)."""
    chosen = request.getfixturevalue("s3_settings") if request.param == "s3" else settings
    return build_services(chosen, queue=queue)


@pytest.fixture(scope="module")
def big_photo() -> bytes:
    """A photo above S3's 5 MiB part size, so its upload is joined from two parts."""
    data = edits.jpeg_bytes(images.natural(4000, 3000, seed=43), 98)
    assert len(data) > 5 << 20
    return data


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create(client: Any, length: int, **headers: str) -> str:
    answer = client.post("/v1/tus/", headers=TUS | {"Upload-Length": str(length)} | headers)
    assert answer.status_code == 201, answer.get_json()
    assert answer.headers["Tus-Resumable"] == "1.0.0" and answer.headers["Upload-Expires"]
    return answer.headers["Location"]


def patch(client: Any, location: str, offset: int, body: bytes, **headers: str) -> Any:
    return client.patch(location, data=body, headers=TUS | {"Upload-Offset": str(offset),
                        "Content-Type": "application/offset+octet-stream"} | headers)


def test_discovery_and_the_protocol_version(client: Any) -> None:
    options = client.options("/v1/tus/")
    assert options.status_code == 204
    assert set(options.headers["Tus-Extension"].split(",")) >= {"creation", "creation-with-upload", "termination", "expiration", "checksum"}
    assert options.headers["Tus-Checksum-Algorithm"] == "sha256" and int(options.headers["Tus-Max-Size"]) > 0
    missing = client.post("/v1/tus/", headers={"Upload-Length": "10"})
    assert missing.status_code == 400 and missing.headers["Tus-Resumable"] == "1.0.0"
    other = client.post("/v1/tus/", headers={"Upload-Length": "10", "Tus-Resumable": "0.2.2"})
    assert other.status_code == 412 and other.get_json()["error"]["code"] == "unsupported_tus_version"


def test_an_upload_in_chunks_becomes_the_photo_posted_whole(client: Any, services: Any) -> None:
    location = create(client, len(PHOTO), **{"Upload-Metadata": meta(owner="alice", filename="x.jpg")})
    cut = len(PHOTO) // 3
    first = patch(client, location, 0, PHOTO[:cut])
    assert first.status_code == 204 and first.headers["Upload-Offset"] == str(cut) and "Photo-Id" not in first.headers
    head = client.head(location, headers=TUS)
    assert (head.status_code, head.headers["Upload-Offset"], head.headers["Upload-Length"]) == (200, str(cut), str(len(PHOTO)))
    assert head.headers["Cache-Control"] == "no-store"
    wrong = patch(client, location, 0, PHOTO[cut:])
    assert wrong.status_code == 409 and wrong.get_json()["error"]["code"] == "offset_mismatch"
    last = patch(client, location, cut, PHOTO[cut:])
    assert last.status_code == 204 and last.headers["Upload-Offset"] == str(len(PHOTO))
    photo_id = last.headers["Photo-Id"]
    assert client.head(location, headers=TUS).headers["Photo-Id"] == photo_id  # a lost answer is recoverable
    body = client.get(last.headers["Photo-Location"]).get_json()
    assert body["id"] == photo_id and body["owner"] == "alice" and body["sha256"] == hashlib.sha256(PHOTO).hexdigest()
    assert services.storage.get(services.catalog.get_photo(photo_id).original_key) == PHOTO
    assert service.process_photo(services, photo_id) is Outcome.DONE
    again = patch(client, location, len(PHOTO), b"")  # a retried last PATCH: the same photo, not a second
    assert again.headers.get("Photo-Id") == photo_id


def test_creation_with_upload_checksums_and_limits(client: Any, services: Any) -> None:
    digest = base64.b64encode(hashlib.sha256(PHOTO[:1000]).digest()).decode()
    answer = client.post("/v1/tus/", data=PHOTO[:1000], headers=TUS | {
        "Upload-Length": str(len(PHOTO)), "Content-Type": "application/offset+octet-stream", "Upload-Checksum": f"sha256 {digest}"})
    assert answer.status_code == 201 and answer.headers["Upload-Offset"] == "1000"
    location = answer.headers["Location"]
    bad = patch(client, location, 1000, PHOTO[1000:2000], **{"Upload-Checksum": f"sha256 {digest}"})
    assert bad.status_code == 460 and bad.get_json()["error"]["code"] == "checksum_mismatch"
    assert client.head(location, headers=TUS).headers["Upload-Offset"] == "1000"  # nothing of it kept
    past = patch(client, location, 1000, PHOTO[1000:] + b"extra")
    assert past.status_code == 413
    limit = services.settings.max_upload_bytes
    over = client.post("/v1/tus/", headers=TUS | {"Upload-Length": str(limit + 1)})
    assert over.status_code == 413 and over.get_json()["error"]["code"] == "too_large"
    assert client.patch(location, data=b"x", headers=TUS | {"Upload-Offset": "1000", "Content-Type": "image/jpeg"}).status_code == 415


def test_not_an_image_is_refused_at_the_end_and_termination(client: Any) -> None:
    junk = b"GIF89a" + b"\x00" * 10 + b"this is not really an image" * 10
    location = create(client, len(junk))
    answer = patch(client, location, 0, junk)
    assert answer.status_code in (415, 422) and answer.get_json()["error"]["code"] in ("unsupported_format", "corrupt_image")
    assert client.head(location, headers=TUS).status_code == 404
    other = create(client, 100)
    assert client.delete(other, headers=TUS).status_code == 204
    assert client.head(other, headers=TUS).status_code == 404
    assert patch(client, other, 0, b"x" * 10).status_code == 404


def test_a_server_restart_loses_nothing_acknowledged(services: Any, queue: Any) -> None:
    settings = services.settings
    first = create_app(settings, services=build_services(settings, queue=queue)).test_client()
    location = create(first, len(PHOTO))
    assert patch(first, location, 0, PHOTO[:5000]).headers["Upload-Offset"] == "5000"
    restarted = create_app(settings, services=build_services(settings, queue=queue)).test_client()
    assert restarted.head(location, headers=TUS).headers["Upload-Offset"] == "5000"
    assert "Photo-Id" in patch(restarted, location, 5000, PHOTO[5000:]).headers


def test_two_clients_racing_cannot_corrupt_an_upload(client: Any, services: Any) -> None:
    location = create(client, len(PHOTO))
    half = len(PHOTO) // 2
    bodies = {"photo": PHOTO[:half], "junk": b"\xff" * half}
    results: dict[str, int] = {}

    def send(name: str) -> None:
        results[name] = patch(client.application.test_client(), location, 0, bodies[name]).status_code

    threads = [threading.Thread(target=send, args=(name,)) for name in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [204, 409]  # one wins, the other finds the offset moved
    assert client.head(location, headers=TUS).headers["Upload-Offset"] == str(half)
    last = patch(client, location, half, PHOTO[half:])
    if results["photo"] == 204:  # one body whole, never the two interleaved: the photo is the file
        assert services.storage.get(services.catalog.get_photo(last.headers["Photo-Id"]).original_key) == PHOTO
    else:  # the junk won, whole: not an image
        assert last.status_code == 415


@pytest.mark.slow
def test_tuspy_resumes_an_interrupted_upload_byte_for_byte(tmp_path: Path, live_api: Any, big_photo: bytes) -> None:
    """tuspy against a real server: a few chunks, then a PATCH cut off mid-body at a random
    offset (the connection dies), then a new client resumes from the server's offset, and the
    stored original is the file. The offsets seen are printed (``pytest -s``: the transcript)."""
    import requests
    from tusclient import client as tus_client

    services, base = live_api
    seed = random.randrange(1 << 30)
    draw = random.Random(seed)
    source = tmp_path / "photo.jpg"
    source.write_bytes(big_photo)
    tus = tus_client.TusClient(f"{base}/v1/tus/")
    chunk = draw.randint(256, 2048) * 1024
    uploader = tus.uploader(str(source), chunk_size=chunk, metadata={"owner": "bob"})
    print(f"\n[{services.settings.storage_backend}, seed {seed}] {len(big_photo)} bytes, tuspy chunks of {chunk}")
    for _ in range(draw.randint(1, len(big_photo) // chunk - 1)):
        uploader.upload_chunk()
        print(f"  tuspy PATCH acknowledged, offset {uploader.offset} ({uploader.url})")
    offset = uploader.offset
    cut = draw.randint(100_000, len(big_photo) - offset - 1)
    _patch_cut_off(uploader.url, offset, big_photo[offset:], cut)
    seen = _offset_after(uploader.url, offset)
    print(f"  PATCH of {len(big_photo) - offset} bytes from {offset}, connection cut after {cut}: HEAD says {seen}")
    assert offset < seen <= offset + cut
    resumed = tus.uploader(str(source), chunk_size=draw.randint(256, 2048) * 1024, url=uploader.url)
    assert resumed.get_offset() == seen
    resumed.upload()
    head = requests.head(uploader.url, headers=TUS, timeout=10)
    print(f"  resumed by a new tuspy client: offset {head.headers['Upload-Offset']}, photo {head.headers['Photo-Id']}")
    photo = services.catalog.get_photo(head.headers["Photo-Id"])
    assert photo.owner == "bob" and services.storage.get(photo.original_key) == big_photo


def _patch_cut_off(url: str, offset: int, rest: bytes, cut: int) -> None:
    """A PATCH announcing all of ``rest`` whose connection dies after ``cut`` bytes of it."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    head = (f"PATCH {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {len(rest)}\r\n\r\n")
    with socket.create_connection((parsed.hostname, parsed.port)) as conn:
        conn.sendall(head.encode() + rest[:cut])
        time.sleep(0.5)  # let the server read what was sent before the connection goes


def _offset_after(url: str, before: int, timeout: float = 20) -> int:
    """The offset once the cut-off request's bytes are kept (the server finishes it on its own)."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        offset = int(requests.head(url, headers=TUS, timeout=10).headers["Upload-Offset"])
        if offset > before:
            return offset
        time.sleep(0.1)
    raise TimeoutError(f"the offset stayed at {before}")


@pytest.fixture
def live_api(services: Any) -> Any:
    """The app on a real HTTP server on loopback (werkzeug's, threaded)."""
    server = AppServer(create_app(services.settings, services=services))
    yield services, f"http://127.0.0.1:{server.port}"
    server.stop()


def test_expired_uploads_are_gone(client: Any, services: Any) -> None:
    from media_pipeline import check
    from media_pipeline.resumable import make_tus_store

    location = create(client, 100)
    assert patch(client, location, 0, PHOTO[:50]).status_code == 204
    uploads = make_tus_store(services.settings.tus_dir, services.settings.tus_expire_seconds, services.storage)
    later = time.time() + services.settings.tus_expire_seconds + 1
    assert "expired_resumable_upload" not in check.check(services).problems
    assert len(check.check(services, now=later).problems["expired_resumable_upload"]) == 1
    assert uploads.expire(now=time.time()) == 0
    assert uploads.expire(now=later) == 1
    assert [p for p in Path(services.settings.tus_dir).glob("*") if p.suffix != ".lock"] == []
    assert list(services.storage.list("incoming/")) == []
    assert client.head(location, headers=TUS).status_code == 404


def test_s3_out_of_reach_is_the_projects_503(client: Any, services: Any, queue: Any) -> None:
    """boto3's connection errors never leak: a tus request while S3 cannot be reached answers the
    API's own 503 ``storage_unavailable``, and the upload is intact once S3 is back."""
    if services.settings.storage_backend != "s3":
        pytest.skip("S3 only")
    from tests.conftest import free_port

    location = create(client, len(PHOTO))
    assert patch(client, location, 0, PHOTO[:1000]).status_code == 204
    down = services.settings.replace(s3_endpoint_url=f"http://127.0.0.1:{free_port()}")
    cut_off = create_app(down, services=build_services(down, queue=queue)).test_client()
    assert cut_off.head(location, headers=TUS).status_code == 503  # (a HEAD answer has no body)
    answer = patch(cut_off, location, 1000, PHOTO[1000:])
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "storage_unavailable"
    assert "Photo-Id" in patch(client, location, 1000, PHOTO[1000:]).headers


@pytest.fixture
def impatient_api(services: Any) -> Any:
    """The app on a real HTTP server whose tus PATCHes wait one second for body bytes."""
    settings = services.settings.replace(tus_body_timeout_seconds=1)
    impatient = build_services(settings, queue=services.queue)
    server = AppServer(create_app(settings, services=impatient))
    yield impatient, f"http://127.0.0.1:{server.port}"
    server.stop()


def test_a_client_that_vanished_mid_body_lets_go_of_its_upload(impatient_api: Any, big_photo: bytes) -> None:
    """A PATCH whose client stops sending without closing its connection (a phone that changed
    networks) ends after MP_TUS_BODY_TIMEOUT_SECONDS with what arrived kept, so the client that
    resumes from the new offset finishes the upload instead of waiting on the lock forever."""
    import socket
    from urllib.parse import urlparse

    import requests

    services, base = impatient_api
    created = requests.post(f"{base}/v1/tus/", headers={**TUS, "Upload-Length": str(len(big_photo))}, timeout=10)
    url = f"{base}{urlparse(created.headers['Location']).path}"
    parsed = urlparse(url)
    sent = 300_000
    head = (f"PATCH {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {len(big_photo)}\r\n\r\n")
    with socket.create_connection((parsed.hostname, parsed.port)) as stalled:
        stalled.sendall(head.encode() + big_photo[:sent])  # and then nothing, with the connection open
        started = time.monotonic()
        stalled.settimeout(10)
        answer = stalled.recv(65536).decode(errors="replace")
        waited = time.monotonic() - started
        while "body_timeout" not in answer and (more := stalled.recv(65536)):
            answer += more.decode(errors="replace")
        assert answer.startswith("HTTP/1.1 408") and "body_timeout" in answer, answer[:300]
        assert 0.5 < waited < 5
        offset = int(requests.head(url, headers=TUS, timeout=10).headers["Upload-Offset"])
        assert sent - 65536 < offset <= sent  # kept to the last whole read of the body (64 KiB)
        done = requests.patch(url, data=big_photo[offset:], timeout=30,
                              headers={**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"})
    assert done.status_code == 204, done.text
    photo = services.catalog.get_photo(done.headers["Photo-Id"])
    assert services.storage.get(photo.original_key) == big_photo
