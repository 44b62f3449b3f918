"""The v1 upload API as a client app sees it: status codes, JSON bodies, stored objects."""

from __future__ import annotations

import hashlib
import io
import re
import time
from datetime import datetime
from typing import Any

import pytest

from media_pipeline import service
from media_pipeline.errors import QueueUnavailable, StorageUnavailable
from tests import images


def stored_keys(services: Any) -> list[str]:
    return sorted(services.storage.list(""))


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"]["code"] == code and body["error"]["message"]
    assert response.headers["Content-Type"].startswith("application/json")


def test_multipart_upload_is_stored_recorded_and_queued(client: Any, services: Any, queue: Any) -> None:
    data = images.jpeg(images.scene(800, 600))
    response = client.post("/v1/photos", data={"file": (io.BytesIO(data), "whatever.png"), "owner": "alice"})
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["links"]["self"] == f"/v1/photos/{body['id']}" == response.headers["Location"]
    assert queue.enqueued == [body["id"]]
    assert services.storage.get(f"originals/{body['id']}") == data  # stored as uploaded
    photo = services.catalog.get_photo(body["id"])
    assert (photo.status.value, photo.owner, photo.original_width, photo.original_height) == ("queued", "alice", 800, 600)
    got = client.get(body["links"]["self"]).get_json()
    assert got["status"] == "queued" and got["original"] == {"format": "jpeg", "width": 800, "height": 600, "bytes": len(data),
                                                         "animated": False, "frames": 1, "duration_ms": 0, "hdr": False}
    # RFC 3339 UTC to the millisecond, the moment the catalog recorded.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", got["created_at"]), got["created_at"]
    assert abs(datetime.fromisoformat(got["created_at"]).timestamp() - photo.created_at) < 0.001


def test_raw_body_upload_with_owner_header(client: Any, services: Any) -> None:
    data = images.png(images.scene(300, 200))
    response = client.post("/v1/photos", data=data, headers={"Content-Type": "application/octet-stream", "X-Owner": "bob"})
    assert response.status_code == 202
    assert services.catalog.get_photo(response.get_json()["id"]).owner == "bob"


def test_chunked_body_with_no_content_length(client: Any) -> None:
    data = images.jpeg(images.scene(200, 100))
    response = client.post("/v1/photos", input_stream=io.BytesIO(data), headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 202


@pytest.mark.parametrize(
    "kwargs,code",
    [
        ({"data": b""}, "empty_file"),
        ({"data": {"owner": "x"}, "content_type": "multipart/form-data"}, "missing_file"),
        ({"data": {"file": (io.BytesIO(b""), "a.jpg")}, "content_type": "multipart/form-data"}, "empty_file"),
    ],
)
def test_empty_or_missing_file_is_400(client: Any, services: Any, kwargs: dict[str, Any], code: str) -> None:
    assert_error(client.post("/v1/photos", **kwargs), 400, code)
    assert stored_keys(services) == []


@pytest.fixture
def small_limit_client(services: Any) -> Any:
    from media_pipeline.web import create_app

    services.settings = services.settings.replace(max_upload_bytes=50_000)
    return create_app(services.settings, services).test_client()


def test_over_the_byte_limit_is_413_with_content_length(small_limit_client: Any, services: Any) -> None:
    data = images.png(images.scene(400, 400))  # noisy PNG: far over 50 kB
    assert len(data) > 50_000
    assert_error(small_limit_client.post("/v1/photos", data=data), 413, "too_large")
    assert_error(small_limit_client.post("/v1/photos", data={"file": (io.BytesIO(data), "a.png")}), 413, "too_large")
    assert stored_keys(services) == []


def test_over_the_byte_limit_is_413_when_chunked(small_limit_client: Any, services: Any) -> None:
    data = images.png(images.scene(400, 400))
    response = small_limit_client.post("/v1/photos", input_stream=io.BytesIO(data), headers={"Transfer-Encoding": "chunked"},
                                       environ_overrides={"wsgi.input_terminated": True})
    assert_error(response, 413, "too_large")
    assert stored_keys(services) == []


@pytest.mark.parametrize(
    "payload",
    [b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>', b"%PDF-1.4 fake", b"hello, world"],
)
def test_not_an_image_is_415_whatever_the_name_and_type(client: Any, services: Any, payload: bytes) -> None:
    response = client.post("/v1/photos", data={"file": (io.BytesIO(payload), "photo.jpg", "image/jpeg")})
    assert_error(response, 415, "unsupported_format")
    assert stored_keys(services) == []


def test_pixel_bomb_is_422_before_decoding(client: Any, services: Any) -> None:
    assert_error(client.post("/v1/photos", data=images.forged_png(60_000, 60_000)), 422, "too_many_pixels")
    assert stored_keys(services) == []


def test_unreadable_header_is_422(client: Any, services: Any) -> None:
    assert_error(client.post("/v1/photos", data=b"\x89PNG\r\n\x1a\n" + b"\x00" * 100), 422, "corrupt_image")
    assert stored_keys(services) == []


def test_broker_down_at_upload_keeps_the_photo_queued_for_the_reconciler(client: Any, services: Any, queue: Any) -> None:
    """The original and the row are safe before the broker is asked: the upload is accepted, and
    once the broker is back the reconciler queues the photo, which then ends ready."""
    queue.fail_with = QueueUnavailable("broker is down")
    data = images.jpeg(images.scene(300, 200))
    response = client.post("/v1/photos", data=data)
    assert response.status_code == 202 and response.get_json()["status"] == "queued"
    photo_id = response.get_json()["id"]
    assert services.storage.get(f"originals/{photo_id}") == data and queue.enqueued == []
    assert client.get(f"/v1/photos/{photo_id}").get_json()["status"] == "queued"
    queue.fail_with = None
    assert service.reconcile(services) == (0, 0)  # not stuck yet: a queued photo gets its deadline
    later = time.time() + services.settings.stuck_after_seconds + 1
    assert service.reconcile(services, now=later) == (1, 0) and queue.enqueued == [photo_id]
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    assert client.get(f"/v1/photos/{photo_id}").get_json()["status"] == "ready"


def test_storage_down_at_upload_is_503_and_leaves_nothing(client: Any, services: Any, monkeypatch: Any) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise StorageUnavailable("storage is down")

    monkeypatch.setattr(services.storage, "put", refuse)
    assert_error(client.post("/v1/photos", data=images.jpeg(images.scene(100, 100))), 503, "storage_unavailable")
    assert stored_keys(services) == []


def test_unknown_and_malformed_ids_are_404(client: Any) -> None:
    assert_error(client.get(f"/v1/photos/{service.new_photo_id()}"), 404, "not_found")
    assert_error(client.get("/v1/photos/..%2F..%2Fetc"), 404, "not_found")
    assert_error(client.delete(f"/v1/photos/{service.new_photo_id()}"), 404, "not_found")
    assert_error(client.get("/nothing-here"), 404, "not_found")
    assert_error(client.put("/v1/photos"), 405, "method_not_allowed")


def test_ready_photo_lists_renditions_that_serve_and_delete_removes_all(client: Any, services: Any) -> None:
    upright = images.scene(1200, 800, seed=4)
    data = images.jpeg(upright, exif=images.exif_bytes(orientation=1, make="Canon", model="EOS R5"))
    photo_id = client.post("/v1/photos", data=data).get_json()["id"]
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    assert service.process_photo(services, photo_id) is service.Outcome.ALREADY_DONE  # idempotent
    body = client.get(f"/v1/photos/{photo_id}").get_json()
    assert body["status"] == "ready"
    assert body["metadata"]["camera"] == {"make": "Canon", "model": "EOS R5"}
    assert body["metadata"]["taken_at"] == "2024-05-06T07:08:09+02:00"
    assert body["placeholder"]["blurhash"] and body["placeholder"]["dominant_color"].startswith("#")
    originals = [r for r in body["renditions"] if r["aspect"] == "original"]  # crops: test_crop_api.py
    widths = sorted({r["width"] for r in originals})
    assert widths == [320, 640, 1080, 1200]
    assert len(originals) == 4 * len(services.preset.eager)
    assert len(body["renditions"]) > len(originals)  # DELETE below removes the crops too
    for rendition in originals:
        response = client.get(rendition["url"])
        assert response.status_code == 200
        assert response.headers["Content-Type"] == {"avif": "image/avif", "webp": "image/webp", "jpeg": "image/jpeg"}[rendition["format"]]
        assert "immutable" in response.headers["Cache-Control"]
        assert int(response.headers["Content-Length"]) == rendition["bytes"] == len(response.data)
        decoded = images.decode(response.data)
        assert (decoded.width, decoded.height) == (rendition["width"], rendition["height"])
        assert images.mean_abs_diff(decoded, upright) < 6
    spec = body["renditions"][0]["url"].split("/")[3]
    assert client.get(f"/i/{photo_id}/{spec}/999.webp").status_code == 404
    assert client.get(f"/i/{photo_id}/{spec}/original").status_code == 404

    assert client.delete(f"/v1/photos/{photo_id}").status_code == 204
    assert client.get(f"/v1/photos/{photo_id}").status_code == 404
    assert client.get(body["renditions"][0]["url"]).status_code == 404
    assert stored_keys(services) == []


def test_public_base_url_prefixes_rendition_urls(services: Any) -> None:
    from media_pipeline.web import create_app

    services.settings = services.settings.replace(public_base_url="https://cdn.example.com")
    client = create_app(services.settings, services).test_client()
    photo_id = client.post("/v1/photos", data=images.jpeg(images.scene(400, 300))).get_json()["id"]
    service.process_photo(services, photo_id)
    urls = [r["url"] for r in client.get(f"/v1/photos/{photo_id}").get_json()["renditions"]]
    assert urls and all(u.startswith(f"https://cdn.example.com/i/{photo_id}/") for u in urls)


def test_a_file_that_fails_in_the_worker_ends_failed_with_a_code(client: Any, services: Any) -> None:
    data = images.jpeg(images.scene(900, 700))
    photo_id = client.post("/v1/photos", data=data[: len(data) * 2 // 3]).get_json()["id"]  # header fine, data cut
    assert service.process_photo(services, photo_id) is service.Outcome.FAILED
    body = client.get(f"/v1/photos/{photo_id}").get_json()
    assert body["status"] == "failed" and body["error"]["code"] == "corrupt_image" and body["error"]["message"]
    assert "renditions" not in body


def test_health_and_readiness(client: Any) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"] == {"storage": "ok", "catalog": "ok", "queue": "ok"}


def test_readiness_fails_when_the_queue_is_down(client: Any, queue: Any) -> None:
    queue.fail_with = QueueUnavailable("down")
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["checks"]["queue"] != "ok"
