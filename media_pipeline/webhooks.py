"""Webhooks: every event of the outbox (catalog/events.py) POSTed to each ``MP_WEBHOOK_URLS`` receiver.

- At least once: a delivery row stays until the receiver answers 2xx. A deliverer that dies
  mid-send leaves its claim to lapse (the timeout plus a margin), and the event is sent again with
  the same ``webhook-id``, which is how a receiver tells a repeat.
- Retries: 1, 2, 4 … s between attempts, at most an hour, each stretched by up to half at random
  (backoff.py), until ``MP_WEBHOOK_RETRY_SECONDS`` after the event; then the delivery is marked
  ``failed``, which ``check`` and ``/metrics`` show, and the photo's later events go on.
- Order: a receiver never has two events of one photo in flight, and gets them in the order
  they were written; events of different photos go out ``MP_WEBHOOK_CONCURRENCY`` at a time.
- Receivers: every ``MP_WEBHOOK_URLS`` one gets every event; an ``MP_WEBHOOK_KEY_URLS`` one
  (``NAME=URL``) gets the events of the photos uploaded with the API key NAME.
- Nothing waits for a receiver but its own thread here: this runs in a process of its own
  (``media-pipeline webhooks``, a child of ``serve``), one thread per receiver, so a slow or dead
  receiver slows neither processing nor the other receivers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from media_pipeline import metrics, webhook_signature
from media_pipeline.backoff import retry_delay
from media_pipeline.errors import MediaPipelineError
from media_pipeline.events import Event, Settled

if TYPE_CHECKING:
    from media_pipeline.service import Services

log = logging.getLogger(__name__)
FIRST_RETRY = 1.0
LAST_RETRY = 3600.0
LEASE_MARGIN = 30.0  # a claim outlives the request's timeout by this much
IDLE_POLL = 0.05  # seconds between looks at the outbox when there was nothing to send
BATCH = 200


class Receiver:
    """One receiver's deliveries: ``round`` sends what is due and records each answer. A receiver
    of an API key (``client``) is owed only the events of the photos uploaded with that key."""

    def __init__(self, services: "Services", url: str, client: str | None = None) -> None:
        settings = services.settings
        self.services, self.url, self.client = services, url, client
        self.id = receiver_id(url, client)
        self.key = webhook_signature.secret_key(settings.webhook_secret)
        self.timeout, self.window = settings.webhook_timeout, settings.webhook_retry_seconds
        self.pool = ThreadPoolExecutor(max_workers=settings.webhook_concurrency, thread_name_prefix="webhook")

    def round(self, now: float | None = None) -> dict[str, int]:
        """Fan the new events out, send the due ones; how many were delivered, retried, failed."""
        catalog = self.services.catalog
        now = time.time() if now is None else now
        catalog.fan_out(self.id, start_before=now - self.window, client=self.client)
        claimed = catalog.claim_deliveries(self.id, now, self.timeout + LEASE_MARGIN, limit=BATCH)
        # One per photo at most in a claim, so they may all be in flight together; their answers
        # are recorded in one transaction.
        settled = list(self.pool.map(lambda claim: self._deliver(claim[0], claim[1], now), claimed))
        if settled:
            catalog.settle_deliveries(self.id, settled)
        outcomes = {"delivered": 0, "retried": 0, "failed": 0}
        for answer in settled:
            outcome = {"delivered": "delivered", "pending": "retried", "failed": "failed"}[answer.state]
            metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
            outcomes[outcome] += 1
        return outcomes

    def _deliver(self, event: Event, attempts: int, now: float) -> Settled:
        body = json.dumps(event.to_json(), separators=(",", ":")).encode()
        try:
            post(self.url, body, webhook_signature.headers(self.key, event.id, int(time.time()), body), self.timeout)
        except (OSError, urllib.error.URLError) as exc:  # refused, timed out, or a non-2xx answer
            delay = retry_delay(attempts, FIRST_RETRY, LAST_RETRY)
            if now + delay > event.created_at + self.window:
                log.warning("webhook %s to %s failed for good after %d attempts: %s", event.id, self.url, attempts + 1, exc,
                            extra={"photo_id": event.photo_id})
                return Settled(event.seq, "failed", attempts + 1, now, str(exc))
            return Settled(event.seq, "pending", attempts + 1, now + delay, str(exc))
        metrics.WEBHOOK_DELAY.observe(max(time.time() - event.created_at, 0.0))
        return Settled(event.seq, "delivered")

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def post(url: str, body: bytes, signed: dict[str, str], timeout: float) -> None:
    """POST JSON; raises ``URLError`` (``HTTPError`` for an answer other than 2xx) or ``OSError``."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json", **signed})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # raises HTTPError on 4xx/5xx
        response.read()


def receiver_id(url: str, client: str | None) -> str:
    """How the outbox names a receiver: its URL, and the API key's name for a key's receiver."""
    return url if client is None else f"key:{client} {url}"


def undelivered_age(services: "Services", now: float | None = None) -> float | None:
    """Seconds since the oldest event a receiver still waits for was written; ``None`` if none."""
    oldest = services.catalog.oldest_undelivered([receiver_id(url, client) for url, client in services.settings.webhook_receivers])
    return None if oldest is None else max((time.time() if now is None else now) - oldest, 0.0)


def deliver_due(services: "Services", now: float | None = None) -> dict[str, int]:
    """One round for every receiver, one after the other (tests, and a look from the command line)."""
    total = {"delivered": 0, "retried": 0, "failed": 0}
    for url, client in services.settings.webhook_receivers:
        receiver = Receiver(services, url, client)
        try:
            for outcome, n in receiver.round(now).items():
                total[outcome] += n
        finally:
            receiver.close()
    return total


def run(services: "Services", stop: threading.Event) -> None:
    """Deliver until ``stop`` is set: a thread per receiver, each going round as long as it has work."""
    threads = [threading.Thread(target=_loop, args=(Receiver(services, url, client), stop), name=f"webhooks {url}", daemon=True)
               for url, client in services.settings.webhook_receivers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _loop(receiver: Receiver, stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            try:
                busy = any(receiver.round().values())
            except MediaPipelineError as exc:  # the catalog is down: the outbox waits for it
                log.warning("webhooks: %s: %s", exc.code, exc.message)
                busy = False
                stop.wait(5.0)
            if not busy:
                stop.wait(IDLE_POLL)
    finally:
        receiver.close()
