"""Deleting a photo purges it from the CDN: a signed POST of its tags and URLs to MP_PURGE_URL,
kept in the catalog's outbox and retried with backoff until the hook acknowledges it."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, Iterator

import pytest
from standardwebhooks.webhooks import Webhook

from media_pipeline import front, purging, service
from media_pipeline.service import build_services
from tests import images
from tests.conftest import ingest_bytes
from tests.front import PurgeHook

SECRET = "purge-secret-0123456789"


@pytest.fixture
def hook() -> Iterator[PurgeHook]:
    receiver = PurgeHook(fail=1)
    yield receiver
    receiver.stop()


def test_a_delete_is_purged_by_tag_and_url_after_the_hook_fails_once(settings: Any, queue: Any, hook: PurgeHook,
                                                                     monkeypatch: Any) -> None:
    services = build_services(settings.replace(purge_url=hook.url, purge_secret=SECRET,
                                               public_base_url="https://cdn.example.com"), queue=queue)
    photo_id = ingest_bytes(services, images.jpeg(images.scene(600, 400)), owner="ann")
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    renditions = services.catalog.all_renditions(photo_id)
    monkeypatch.setattr(purging, "_deliver_quietly", lambda _: None)  # the reconciler's rounds only, to see each
    assert service.delete_photo(services, photo_id)

    [(purge_id, attempts, due, error)] = services.catalog.pending_purges()
    assert attempts == 0 and error is None
    assert purging.deliver_due(services, now=due) == (0, 1)  # 503
    [(_, attempts, retry_at, error)] = services.catalog.pending_purges()
    assert attempts == 1 and retry_at >= due + purging.FIRST_RETRY and "503" in error
    assert purging.deliver_due(services, now=retry_at - 0.5) == (0, 0)  # not due yet
    assert purging.deliver_due(services, now=retry_at) == (1, 0)
    assert services.catalog.pending_purges() == []

    headers, body = hook.received[0]
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-MP-Signature"] == f"sha256={expected}" and headers["X-MP-Purge-Id"] == purge_id
    assert Webhook(SECRET.encode()).verify(body, dict(headers.items())) and headers["webhook-id"] == purge_id  # Standard Webhooks too
    sent = json.loads(body)
    assert sent["tags"] == [f"photo-{photo_id}", "owner-ann"]
    for r in renditions:
        ext = r.key.rsplit(".", 1)[1]
        assert f"https://cdn.example.com/i/{photo_id}/{r.spec}/{r.width}.{ext}" in sent["urls"]
        assert f"https://cdn.example.com/i/{photo_id}/{r.width}.{ext}" in sent["urls"]
        assert f"https://cdn.example.com/i/{photo_id}/{r.width}" in sent["urls"]


def test_the_deleting_process_sends_the_purge_itself(settings: Any, queue: Any) -> None:
    receiver = PurgeHook()
    try:
        services = build_services(settings.replace(purge_url=receiver.url, purge_secret=SECRET), queue=queue)
        photo_id = ingest_bytes(services, images.jpeg(images.scene(300, 200)))
        assert service.delete_photo(services, photo_id)
        assert receiver.arrived.wait(30)
        assert json.loads(receiver.received[0][1])["tags"] == [f"photo-{photo_id}"]
        deadline = time.monotonic() + 10
        while services.catalog.pending_purges() and time.monotonic() < deadline:
            time.sleep(0.05)  # the thread acknowledges it just after the hook answered
        assert services.catalog.pending_purges() == []
    finally:
        receiver.stop()


def test_no_purge_url_queues_nothing(services: Any) -> None:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(300, 200)))
    assert service.delete_photo(services, photo_id)
    assert services.catalog.pending_purges() == []


def test_a_crops_urls_are_purged_with_its_aspect() -> None:
    from media_pipeline import purge
    from media_pipeline.models import Rendition

    crop = Rendition(640, 800, "jpeg", 1000, "renditions/x/abc/640.jpg", "abc", aspect="4:5")
    whole = Rendition(640, 480, "avif", 900, "renditions/x/def/640.avif", "def")
    paths = purge.photo_paths("p1", [crop, whole])
    assert {"/i/p1/abc/640.jpg", "/i/p1/4x5/640.jpg", "/i/p1/4x5/640", "/i/p1/def/640.avif", "/i/p1/640.avif", "/i/p1/640"} <= set(paths)
    assert "/i/p1/640.jpg" not in paths  # the crop is not the whole picture's stable URL


def test_the_fronts_copies_are_purged_again_after_a_fill_that_ended_late(tmp_path: Any) -> None:
    """A request that read the catalog before the delete may store its copy in the mirror after the
    first purge: the second one, a while later, removes it."""
    config = front.Front("127.0.0.1:1", "http://127.0.0.1:2", "cache", tmp_path, cache_dir=tmp_path / "cache",
                         mirror_dir=tmp_path / "mirror")
    path = f"/i/{'0' * 26}/abcd/320.jpg"
    copy = tmp_path / "mirror" / path.lstrip("/")
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"jpeg")
    purging.purge_front(config, [path], again_after=0.3)
    assert not copy.exists()
    copy.write_bytes(b"jpeg")  # the late fill
    deadline = time.monotonic() + 5
    while copy.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not copy.exists()
