"""Webhooks: each event POSTed to every MP_WEBHOOK_URLS receiver, signed so that the
`standardwebhooks` package's verifier accepts it, retried with backoff until a 2xx or the retry
window ends (then `failed`, in `check` and the metrics), in order per photo and receiver."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any, Iterator

import pytest
from standardwebhooks.webhooks import Webhook

from media_pipeline import service, webhooks
from media_pipeline.check import check
from media_pipeline.service import build_services
from tests import images
from tests.conftest import free_port, ingest_bytes
from tests.front import PurgeHook

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


@pytest.fixture
def receiver() -> Iterator[PurgeHook]:
    hook = PurgeHook()
    yield hook
    hook.stop()


def with_webhooks(settings: Any, queue: Any, *urls: str, **overrides: Any) -> Any:
    return build_services(settings.replace(webhook_urls=",".join(urls), webhook_secret=SECRET, **overrides), queue=queue)


def test_the_standardwebhooks_verifier_accepts_a_delivery_made_after_a_failed_attempt(settings: Any, queue: Any) -> None:
    hook = PurgeHook(fail=1)
    try:
        services = with_webhooks(settings, queue, hook.url)
        photo_id = ingest_bytes(services, images.jpeg(images.scene(600, 400)), owner="ann")
        service.process_photo(services, photo_id)
        now = time.time()
        assert webhooks.deliver_due(services, now) == {"delivered": 0, "retried": 1, "failed": 0}  # the 503
        assert webhooks.deliver_due(services, now + 0.5) == {"delivered": 0, "retried": 0, "failed": 0}  # not due again yet
        assert webhooks.deliver_due(services, now + 1.5 * webhooks.FIRST_RETRY) == {"delivered": 1, "retried": 0, "failed": 0}
        [(headers, body)] = hook.received
        event = Webhook(SECRET).verify(body, dict(headers.items()))
        assert event["type"] == "photo.ready" and event["data"]["photo"]["id"] == photo_id
        assert headers["webhook-id"] == event["id"] and headers["Content-Type"] == "application/json"
        with pytest.raises(Exception, match="signature"):
            Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(body, dict(headers.items()))
        assert services.catalog.count_deliveries() == {"pending": 0, "failed": 0}
    finally:
        hook.stop()


def test_a_photos_events_reach_a_receiver_in_order_even_when_the_first_is_retried(settings: Any, queue: Any) -> None:
    hook = PurgeHook(fail=1)
    try:
        services = with_webhooks(settings, queue, hook.url)
        photo_id = ingest_bytes(services, images.jpeg(images.scene(400, 300)))
        service.process_photo(services, photo_id)
        service.delete_photo(services, photo_id)
        now = time.time()
        # The delete is due too, but waits behind the ready being retried.
        assert webhooks.deliver_due(services, now) == {"delivered": 0, "retried": 1, "failed": 0}
        later = now + 2 * webhooks.FIRST_RETRY
        assert webhooks.deliver_due(services, later)["delivered"] == 1
        assert webhooks.deliver_due(services, later)["delivered"] == 1
        assert [json.loads(body)["type"] for _, body in hook.received] == ["photo.ready", "photo.deleted"]
    finally:
        hook.stop()


def test_a_dead_receiver_is_given_up_after_the_window_and_shows_in_check(settings: Any, queue: Any, receiver: PurgeHook) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    services = with_webhooks(settings, queue, dead, receiver.url, webhook_retry_seconds=60)
    photo_id = ingest_bytes(services, images.jpeg(images.scene(400, 300)))
    service.process_photo(services, photo_id)
    now = time.time()
    assert webhooks.deliver_due(services, now) == {"delivered": 1, "retried": 1, "failed": 0}  # the live one is not held up
    assert webhooks.undelivered_age(services, now + 30) == pytest.approx(30, abs=2)
    report = check(services, now=now + 30)
    assert report.ok and report.webhooks["pending"] == 1
    assert webhooks.deliver_due(services, now + 59) == {"delivered": 0, "retried": 0, "failed": 1}  # the next wait passes the window
    report = check(services, now=now + 60)
    assert not report.ok and report.counts == {"webhook_delivery_failed": 1}
    assert dead in report.problems["webhook_delivery_failed"][0]
    service.delete_photo(services, photo_id)  # the photo's next event is not held up by the failed one
    assert webhooks.deliver_due(services, now + 61)["delivered"] == 1
    assert [json.loads(b)["type"] for _, b in receiver.received] == ["photo.ready", "photo.deleted"]


def test_a_new_receiver_gets_the_events_of_its_retry_window_only(settings: Any, queue: Any, receiver: PurgeHook) -> None:
    services = with_webhooks(settings, queue, receiver.url, webhook_retry_seconds=3600)
    old = ingest_bytes(services, images.jpeg(images.scene(300, 200, seed=1)))
    service.process_photo(services, old)
    new = ingest_bytes(services, images.jpeg(images.scene(320, 200, seed=7)))
    service.process_photo(services, new)
    [_, newest] = services.catalog.events_after(0)
    # Seen first just after the older event left the window.
    assert services.catalog.fan_out(receiver.url, start_before=newest.created_at) == 1
    assert webhooks.deliver_due(services)["delivered"] == 1
    assert json.loads(receiver.received[0][1])["data"]["photo"]["id"] == new


def test_the_deliverer_thread_sends_events_as_they_are_written(settings: Any, queue: Any, receiver: PurgeHook) -> None:
    services = with_webhooks(settings, queue, receiver.url)
    stop = threading.Event()
    deliverer = threading.Thread(target=webhooks.run, args=(services, stop))
    deliverer.start()
    try:
        photo_id = ingest_bytes(services, images.jpeg(images.scene(400, 300)))
        service.process_photo(services, photo_id)
        assert receiver.arrived.wait(30)
        assert Webhook(SECRET).verify(receiver.received[0][1], dict(receiver.received[0][0].items()))["type"] == "photo.ready"
    finally:
        stop.set()
        deliverer.join(30)
    assert not deliverer.is_alive()


def test_webhook_urls_need_a_whsec_secret(settings: Any) -> None:
    problems = settings.replace(webhook_urls="https://app.example.com/hooks", webhook_secret="plain-secret-123456").problems()
    assert any("MP_WEBHOOK_SECRET" in p for p in problems)
    assert not settings.replace(webhook_urls="https://app.example.com/hooks", webhook_secret=SECRET).problems()


def test_the_verification_example_in_the_docs_accepts_a_delivery_and_refuses_a_forgery(settings: Any, queue: Any,
                                                                                      receiver: PurgeHook) -> None:
    from tests.conftest import REPO

    text = (REPO / "docs" / "events.md").read_text()
    example = next(block.split("```")[0] for block in text.split("```python\n")[1:] if "def receive" in block)
    namespace: dict[str, Any] = {}
    exec(example, namespace)
    services = with_webhooks(settings, queue, receiver.url)
    service.process_photo(services, ingest_bytes(services, images.jpeg(images.scene(300, 200))))
    webhooks.deliver_due(services)
    [(headers, body)] = receiver.received
    assert namespace["receive"](body, dict(headers.items()), SECRET)["type"] == "photo.ready"
    assert namespace["receive"](body.replace(b"ready", b"fakes"), dict(headers.items()), SECRET) is None


def test_a_keys_receiver_hears_of_that_keys_photos_only(settings: Any, queue: Any, receiver: PurgeHook) -> None:
    from media_pipeline.apikeys import hash_key
    from media_pipeline.web import create_app

    ios_hook = PurgeHook()
    try:
        services = with_webhooks(settings, queue, receiver.url, api_keys=f"ios:{hash_key('i' * 32)},web:{hash_key('w' * 32)}",
                                 webhook_key_urls=f"ios={ios_hook.url}")
        client = create_app(services.settings, services).test_client()
        uploaded = {}
        for name, seed in (("ios", 1), ("web", 2)):
            answer = client.post("/v1/photos", data=images.jpeg(images.scene(300, 200, seed=seed)),
                                 headers={"Authorization": f"Bearer {name[0] * 32}"})
            assert answer.status_code == 202
            uploaded[name] = answer.get_json()["id"]
            service.process_photo(services, uploaded[name])
        service.delete_photo(services, uploaded["ios"])
        assert webhooks.deliver_due(services)["delivered"] == 3  # the ready of each to everyone's receiver, ios's to its own
        assert webhooks.deliver_due(services)["delivered"] == 2  # then ios's deleted, to both
        to_ios = [(e["type"], e["data"]["photo"]["id"]) for e in (Webhook(SECRET).verify(b, dict(h.items())) for h, b in ios_hook.received)]
        assert to_ios == [("photo.ready", uploaded["ios"]), ("photo.deleted", uploaded["ios"])]
        assert {json.loads(b)["data"]["photo"]["id"] for _, b in receiver.received} == set(uploaded.values())
    finally:
        ios_hook.stop()


def test_a_key_receiver_must_name_a_configured_key(settings: Any) -> None:
    problems = settings.replace(webhook_key_urls="ios=https://app.example.com/hooks", webhook_secret=SECRET).problems()
    assert any("not in MP_API_KEYS: ios" in p for p in problems)
    assert any("NAME=" in p for p in settings.replace(webhook_key_urls="https://app.example.com/hooks", webhook_secret=SECRET).problems())
