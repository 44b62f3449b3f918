"""Idempotency-Key on uploads: a client that retries never creates a second photo."""

from __future__ import annotations

from typing import Any

from media_pipeline import service
from tests import images


def post(client: Any, data: bytes, key: str | None, owner: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    if owner:
        headers["X-Owner"] = owner
    return client.post("/v1/photos", data=data, headers=headers)


def test_same_key_and_body_replays_the_first_answer(client: Any, services: Any, queue: Any) -> None:
    data = images.jpeg(images.scene(400, 300))
    first = post(client, data, "upload-1")
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    service.process_photo(services, first.get_json()["id"])  # it is ready by the time the retry comes
    again = post(client, data, "upload-1")
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert queue.enqueued == [first.get_json()["id"]]
    assert len([k for k in services.storage.list("originals/")]) == 1


def test_same_key_other_body_is_422_and_stores_nothing(client: Any, services: Any) -> None:
    assert post(client, images.jpeg(images.scene(300, 200, seed=1)), "k").status_code == 202
    other = post(client, images.jpeg(images.scene(300, 200, seed=2)), "k")
    assert other.status_code == 422 and other.get_json()["error"]["code"] == "idempotency_mismatch"
    assert len(list(services.storage.list("originals/"))) == 1


def test_concurrent_reuse_is_409(client: Any, services: Any) -> None:
    data = images.jpeg(images.scene(300, 200))
    import hashlib
    import time

    services.catalog.claim_idempotency_key("\nbusy", hashlib.sha256(data).hexdigest(), time.time() - 86400)  # in flight
    response = post(client, data, "busy")
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "idempotency_in_progress"
    assert list(services.storage.list("originals/")) == []


def test_a_rejected_upload_releases_its_key(client: Any, services: Any) -> None:
    assert post(client, b"not an image", "retry-me").status_code == 415
    response = post(client, b"not an image", "retry-me")
    assert response.status_code == 415  # the same bad answer again, not a 409 or a replay


def test_keys_are_scoped_by_owner_and_deleted_photos_are_made_anew(client: Any, services: Any) -> None:
    data = images.jpeg(images.scene(300, 200))
    alice = post(client, data, "k", owner="alice").get_json()["id"]
    bob = post(client, data, "k", owner="bob").get_json()["id"]
    assert alice != bob
    assert client.delete(f"/v1/photos/{alice}").status_code == 204
    again = post(client, data, "k", owner="alice")
    assert again.status_code == 202 and again.get_json()["id"] != alice


def test_bad_keys_are_400(client: Any) -> None:
    response = client.post("/v1/photos", data=images.jpeg(images.scene(100, 100)), headers={"Idempotency-Key": "x" * 200})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_idempotency_key"
