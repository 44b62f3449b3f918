"""Who may call the API, how often, and from which web origins.

- API keys: ``MP_API_KEYS`` lists ``name:sha256`` entries, so the keys themselves are never stored
  (``media-pipeline api-key NAME`` makes one). An entry written ``!name:sha256`` is revoked: that
  key gets 403, an unknown or missing key 401. Checked in ``before_request``, before any view
  touches the body, so a refused upload is never read. With no keys configured, nothing is
  checked and ``media-pipeline`` binds to loopback only.
- Operator keys: ``MP_OPERATOR_KEYS``, the same form, kept apart from client apps' keys. The
  console's endpoints (the ``console`` blueprint: every photo of every owner, stats, retries) answer
  only an operator key once any key is configured; a client app's key gets 403 there.
- Rate limits: ``MP_RATE_LIMIT`` requests per minute for each key (or client address without
  keys) on the API's POSTs (uploads and searches, the requests that cost work). The counters live
  in Redis when ``MP_RATE_LIMIT_URL`` (or a Redis broker) names one, so every gunicorn worker and
  host shares them; otherwise in this process.
- CORS: origins in ``MP_CORS_ORIGINS`` may call ``/v1`` from a browser; preflights need no key.
"""

from __future__ import annotations

import math
import re
import threading
import time
from typing import Protocol

from flask import Flask, Response, current_app, g, request

from config.settings import Settings
from media_pipeline.apikeys import hash_key, parse_keys
from media_pipeline.errors import Forbidden, RateLimited, Unauthorized

API_PREFIX = "/v1/"
METRICS_PATH = "/metrics"
OPERATOR_BLUEPRINT = "console"  # media_pipeline/web/console.py
WINDOW_SECONDS = 60
_DIRECT_BODY = re.compile(r"/v1/uploads/[0-9a-f]{32}/body")
CORS_HEADERS = ("Authorization, Content-Type, Idempotency-Key, X-API-Key, X-Owner, Tus-Resumable, Upload-Length, Upload-Offset, "
                "Upload-Metadata, Upload-Checksum")
CORS_EXPOSED = ("Location, Retry-After, Idempotent-Replayed, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, "
                "Upload-Offset, Upload-Length, Upload-Expires, Photo-Id, Photo-Location")


# --------------------------------------------------------------------------- rate limit counters
class Counter(Protocol):
    def hit(self, bucket: str, window: int, ttl: int) -> int:
        """Count one request in ``bucket`` for ``window``; the count so far."""


class MemoryCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}

    def hit(self, bucket: str, window: int, ttl: int) -> int:
        with self._lock:
            for stale in [k for k in self._counts if k[1] < window]:
                del self._counts[stale]
            count = self._counts.get((bucket, window), 0) + 1
            self._counts[(bucket, window)] = count
            return count


class RedisCounter:
    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    def hit(self, bucket: str, window: int, ttl: int) -> int:
        key = f"mp:ratelimit:{bucket}:{window}"
        pipe = self._redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, ttl)
        return int(pipe.execute()[0])


def make_counter(settings: Settings) -> Counter:
    url = settings.effective_rate_limit_url
    return RedisCounter(url) if url else MemoryCounter()


# --------------------------------------------------------------------------- the hooks
class Access:
    def __init__(self, settings: Settings, counter: Counter | None = None) -> None:
        # An operator key is also a key for everything a client's opens; the operator's entry
        # wins if one key were listed in both.
        self.keys = {**parse_keys(settings.api_keys), **parse_keys(settings.operator_keys, operator=True)}
        self.limit = settings.rate_limit
        self.origins = {o.strip() for o in settings.cors_origins.split(",") if o.strip()}
        self.counter = counter or make_counter(settings)

    def before(self) -> Response | None:
        if request.path == METRICS_PATH:
            g.client = self._authenticate()  # the same keys as the API: Prometheus sends a bearer token
            return None
        if not request.path.startswith(API_PREFIX) or _DIRECT_BODY.fullmatch(request.path):
            return None  # (a direct upload's local target is authenticated by its one-time token)
        if request.method == "OPTIONS":
            # A browser's CORS preflight, answered here; any other OPTIONS (tus discovery) is
            # the view's, and tells nothing that needs a key.
            return self._preflight() if request.headers.get("Access-Control-Request-Method") else None
        g.client = self._authenticate()
        if _operators_only() and self.keys and not g.client.startswith("operator:"):
            raise Forbidden("this endpoint is the operator console's: it needs an operator key (MP_OPERATOR_KEYS)")
        if self.limit and request.method == "POST":
            self._count(g.client)
        return None

    def after(self, response: Response) -> Response:
        if not request.path.startswith(API_PREFIX):
            return response
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin and self._origin_allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
        return response

    def _authenticate(self) -> str:
        if not self.keys:
            return f"addr:{request.remote_addr}"
        presented = request.headers.get("X-API-Key") or _bearer(request.headers.get("Authorization", ""))
        if not presented:
            raise Unauthorized("an API key is required: send Authorization: Bearer <key>")
        entry = self.keys.get(hash_key(presented))
        if entry is None:
            raise Unauthorized("unknown API key")
        if entry.revoked:
            raise Forbidden(f"the API key {entry.name!r} has been revoked")
        return f"operator:{entry.name}" if entry.operator else f"key:{entry.name}"

    def _count(self, client: str) -> None:
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        try:
            count = self.counter.hit(client, window, WINDOW_SECONDS * 2)
        except Exception:  # noqa: BLE001 - a limiter outage must not take the API down with it
            current_app.logger.warning("rate limiter unavailable; request let through", exc_info=True)
            return
        if count > self.limit:
            retry_after = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
            raise RateLimited(f"more than {self.limit} requests a minute; retry in {retry_after} s", retry_after)

    def _origin_allowed(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins

    def _preflight(self) -> Response:
        response = current_app.make_default_options_response()
        origin = request.headers.get("Origin", "")
        if self._origin_allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, HEAD, PATCH"
            response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = "600"
        response.status_code = 204
        return response


def key_name() -> str | None:
    """The name of the API key this request came with; ``None`` when keys are not configured."""
    client = g.get("client", "")
    return client[len("key:"):] if client.startswith("key:") else None


def _bearer(header: str) -> str:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _operators_only() -> bool:
    """The console's endpoints, and its list of every photo (``GET /v1/photos`` unless it asks for
    one imported photo by ``external_id``, which any client app may)."""
    return request.blueprint == OPERATOR_BLUEPRINT or (request.endpoint == "photos.list_photos" and "external_id" not in request.args)


def register(app: Flask, settings: Settings) -> None:
    access = Access(settings)
    app.before_request(access.before)
    app.after_request(access.after)
