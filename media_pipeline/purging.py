"""A deleted photo (or a hidden one, visibility.py) leaves the caches in front of the origin.

- The CDN: with ``MP_PURGE_URL``, deleting a photo queues ``{"tags": [...], "urls": [...]}`` in
  the catalog's outbox before anything is deleted (a crash after it cannot lose the purge; a
  purge of a photo whose delete then failed is harmless). It is sent right away from a thread of
  the deleting process and again by the reconciler's rounds until the hook answers 2xx, waiting
  1, 2, 4 … s (at most an hour, each stretched by up to half at random) between failed attempts. The POST is signed:
  ``X-MP-Signature: sha256=<hex HMAC-SHA256 of the body with MP_PURGE_SECRET>``, and the
  Standard Webhooks headers (webhook_signature.py; ``webhook-id`` is the purge's id).
- The nginx front on this host (cache shape): its entries for the photo's URLs are deleted by key
  hash, and the immutable URLs' mirror copies, after the photo's objects and rows are gone, before
  the DELETE answers, and once more 30 s later (a fill that began before the delete stores its copy
  when it ends); nginx then finds them missing and asks the app, which answers 404. The local shape
  caches nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
from typing import TYPE_CHECKING

from media_pipeline import front, nginx, purge, webhook_signature, webhooks
from media_pipeline.backoff import retry_delay
from media_pipeline.models import Photo

if TYPE_CHECKING:  # service.py calls this module when it deletes a photo
    from media_pipeline.service import Services

log = logging.getLogger(__name__)
FIRST_RETRY = 1.0
LAST_RETRY = 3600.0
LEASE = 60.0  # a claimed purge is not sent by anyone else for this long
# The front's second purge: longer than a fill of the largest rendition from storage takes.
FRONT_PURGED_AGAIN_AFTER = 30.0
TIMEOUT = 10.0


def before_delete(services: "Services", photo: Photo) -> list[str]:
    """Queue the CDN's purge; the paths to drop from the nginx front's cache after the delete."""
    paths = purge.photo_paths(photo.id, services.catalog.all_renditions(photo.id), services.settings.signing_key_list)
    _queue(services, list(purge.tags(photo.id, photo.owner)), paths)
    return paths


def after_delete(services: "Services", paths: list[str]) -> None:
    purge_front(nginx.front_for(services.settings), paths, FRONT_PURGED_AGAIN_AFTER)
    if services.settings.purge_url:
        threading.Thread(target=_deliver_quietly, args=(services,), name="purge-hook", daemon=True).start()


def purge_front(config: front.Front, paths: list[str], again_after: float) -> None:
    """Drop the paths from the nginx front's cache and mirror, now and once more ``again_after``
    seconds later: a request that read the catalog before the photo went may still be streaming
    the object from storage to nginx, which stores it when it ends, after the first purge."""
    if config.shape != "cache":
        return
    nginx.purge_cache(config, paths)
    again = threading.Timer(again_after, nginx.purge_cache, args=(config, paths))
    again.daemon = True
    again.start()


def purge_now(services: "Services", tags: list[str], paths: list[str]) -> None:
    """What a delete does to the caches, for URLs that stop answering while their objects stay
    (a photo or an owner hidden, visibility.py): the CDN's purge queued and sent, the front's
    cache entries dropped."""
    _queue(services, tags, paths)
    after_delete(services, paths)


def _queue(services: "Services", tags: list[str], paths: list[str]) -> None:
    settings = services.settings
    if settings.purge_url:
        body = {"tags": tags, "urls": [settings.public_base_url + p for p in paths]}
        services.catalog.add_purge(json.dumps(body), time.time())


def deliver_due(services: "Services", now: float | None = None) -> tuple[int, int]:
    """Send every purge that is due; (acknowledged, failed)."""
    settings = services.settings
    if not settings.purge_url:
        return 0, 0
    now = time.time() if now is None else now
    sent = failed = 0
    for purge_id, body, attempts in services.catalog.claim_purges(now, LEASE):
        try:
            _post(settings.purge_url, settings.purge_secret, purge_id, body.encode())
        except (OSError, urllib.error.URLError) as exc:  # refused, timed out, or a non-2xx answer
            delay = retry_delay(attempts, FIRST_RETRY, LAST_RETRY)
            services.catalog.purge_failed(purge_id, attempts + 1, now + delay, str(exc))
            log.warning("purge %s not acknowledged (attempt %d): %s; again in %.0f s", purge_id, attempts + 1, exc, delay)
            failed += 1
        else:
            services.catalog.purge_delivered(purge_id)
            sent += 1
    return sent, failed


def _deliver_quietly(services: "Services") -> None:
    try:
        deliver_due(services)
    except Exception:  # noqa: BLE001 - the outbox keeps it; the reconciler sends it next round
        log.exception("purge delivery failed; the reconciler retries it")


def _post(url: str, secret: str, purge_id: str, body: bytes) -> None:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    signed = webhook_signature.headers(webhook_signature.key_of(secret), purge_id, int(time.time()), body)
    webhooks.post(url, body, {"X-MP-Signature": f"sha256={signature}", "X-MP-Purge-Id": purge_id, **signed}, TIMEOUT)
