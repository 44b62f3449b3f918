"""Direct uploads: the client sends the file to storage (a presigned S3 POST, or a one-time URL on
the API with a local folder), then completes; the photo is made as POST /v1/photos makes it."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import requests

from bench import edits
from media_pipeline import check, direct_uploads, service
from media_pipeline.errors import UploadExpired
from media_pipeline.service import Outcome, build_services
from media_pipeline.web import create_app
from tests import images

PHOTO = edits.jpeg_bytes(images.natural(1200, 900, seed=51), 90)


def test_a_local_target_takes_the_file_once_and_completes_into_a_photo(client: Any, services: Any) -> None:
    created = client.post("/v1/uploads", json={"owner": "carol"})
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    target = created.get_json()
    assert target["method"] == "PUT" and target["max_bytes"] == services.settings.max_upload_bytes and target["expires_at"].endswith("Z")
    url = target["url"]
    assert client.put(url.replace("token=", "token=x"), data=PHOTO).status_code == 404  # a wrong token
    assert client.post(target["complete"]).get_json()["error"]["code"] == "upload_missing"
    assert client.put(url, data=PHOTO).status_code == 204
    assert client.put(url, data=PHOTO).get_json()["error"]["code"] == "upload_used"  # one time only
    done = client.post(target["complete"])
    assert done.status_code == 202 and done.headers["Location"] == done.get_json()["links"]["self"]
    photo_id = done.get_json()["id"]
    again = client.post(target["complete"])  # a retried complete: the same photo
    assert again.status_code == 202 and again.get_json()["id"] == photo_id and again.headers["Idempotent-Replayed"] == "true"
    photo = services.catalog.get_photo(photo_id)
    assert photo.owner == "carol" and services.storage.get(photo.original_key) == PHOTO
    assert not services.storage.exists(direct_uploads.body_key(target["id"]))  # the copy is gone
    assert service.process_photo(services, photo_id) is Outcome.DONE


def test_the_wrong_file_is_refused_before_it_is_read(client: Any, services: Any) -> None:
    target = client.post("/v1/uploads").get_json()
    assert client.put(target["url"], data=b"%PDF-1.4 not an image" * 100).status_code == 204
    refused = client.post(target["complete"])
    assert refused.status_code == 415 and refused.get_json()["error"]["code"] == "unsupported_format"
    assert not services.storage.exists(direct_uploads.body_key(target["id"]))
    assert list(services.storage.list("originals/")) == []  # no photo was made of it


def test_abandoned_targets_expire_are_reported_and_cleaned(client: Any, services: Any) -> None:
    target = client.post("/v1/uploads").get_json()
    assert client.put(target["url"], data=PHOTO).status_code == 204
    later = time.time() + services.settings.direct_upload_seconds + 1
    assert set(check.check(services, now=later).problems["expired_upload_target"]) == {
        direct_uploads.body_key(target["id"]), direct_uploads.record_key(target["id"])}
    assert "expired_upload_target" not in check.check(services).problems  # not before it expires
    with pytest.raises(UploadExpired):
        direct_uploads.complete(services, target["id"], later)
    assert direct_uploads.expire(services, later) == 1
    assert list(services.storage.list("incoming/")) == []


@pytest.mark.slow
def test_an_s3_target_is_a_presigned_post_the_api_never_carries(s3_settings: Any, queue: Any) -> None:
    services = build_services(s3_settings, queue=queue)
    client = create_app(s3_settings, services=services).test_client()
    target = client.post("/v1/uploads", headers={"X-Owner": "dave"}).get_json()
    assert target["method"] == "POST" and target["url"].startswith(s3_settings.s3_endpoint_url)
    sent = requests.post(target["url"], data=target["fields"], files={"file": ("photo.jpg", PHOTO)}, timeout=30)
    assert sent.status_code in (200, 201, 204), sent.text
    done = client.post(target["complete"])
    assert done.status_code == 202, done.get_json()
    photo = services.catalog.get_photo(done.get_json()["id"])
    assert photo.owner == "dave" and services.storage.get(photo.original_key) == PHOTO
    # The policy S3 enforces (moto does not enforce POST policies, real S3 does): this key only,
    # at most MP_MAX_UPLOAD_BYTES, signed.
    policy = json.loads(base64.b64decode(target["fields"]["policy"]))
    assert {"key": f"incoming/{target['id']}"} in policy["conditions"]
    assert ["content-length-range", 1, s3_settings.max_upload_bytes] in policy["conditions"]
    assert target["fields"]["x-amz-signature"]
