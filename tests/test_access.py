"""Access control and abuse limits: API keys (hashed, revocable), refusals before the body is
read, rate limits shared through Redis, the CORS allow-list, and the loopback-only bind."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import uuid
from typing import Any, Iterator

import pytest
from werkzeug.serving import make_server

from config.settings import ConfigError, Settings
from media_pipeline import service
from media_pipeline.apikeys import hash_key
from media_pipeline.web import create_app
from tests import images
from tests.conftest import REPO

KEY_IOS, KEY_WEB, KEY_OLD = "mpk_ios-0123456789abcdef", "mpk_web-0123456789abcdef", "mpk_old-0123456789abcdef"
KEYS = f"ios:{hash_key(KEY_IOS)},web:{hash_key(KEY_WEB)},!old:{hash_key(KEY_OLD)}"


def keyed_client(services: Any, **settings: Any) -> Any:
    services.settings = services.settings.replace(api_keys=KEYS, **settings)
    return create_app(services.settings, services).test_client()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.data
    assert response.get_json()["error"]["code"] == code
    assert response.headers["Cache-Control"] == "no-store"


def test_keys_are_required_checked_and_revocable(services: Any) -> None:
    client = keyed_client(services)
    photo = images.jpeg(images.scene(300, 200))
    assert_error(client.post("/v1/photos", data=photo), 401, "unauthorized")
    assert_error(client.post("/v1/photos", data=photo, headers=bearer("mpk_guessed-0123456789")), 401, "unauthorized")
    assert_error(client.post("/v1/photos", data=photo, headers={"Authorization": f"Basic {KEY_IOS}"}), 401, "unauthorized")
    revoked = client.post("/v1/photos", data=photo, headers=bearer(KEY_OLD))
    assert_error(revoked, 403, "forbidden")
    assert "revoked" in revoked.get_json()["error"]["message"]
    assert list(services.storage.list("originals/")) == []  # nothing refused was stored
    accepted = client.post("/v1/photos", data=photo, headers=bearer(KEY_IOS))
    assert accepted.status_code == 202
    photo_id = accepted.get_json()["id"]
    assert client.get(f"/v1/photos/{photo_id}", headers={"X-API-Key": KEY_WEB}).status_code == 200
    assert_error(client.get(f"/v1/photos/{photo_id}"), 401, "unauthorized")
    # Public: images for the CDN, health checks for the load balancer, the API description.
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    url = client.get(f"/v1/photos/{photo_id}", headers=bearer(KEY_IOS)).get_json()["renditions"][0]["url"]
    assert client.get(url).status_code == 200
    for path in ("/healthz", "/openapi.json"):
        assert client.get(path).status_code == 200


def test_without_keys_nothing_is_checked_and_only_loopback_is_bound(client: Any, settings: Settings) -> None:
    assert client.post("/v1/photos", data=images.jpeg(images.scene(64, 64))).status_code == 202
    assert settings.replace(host="0.0.0.0").bind_host == "127.0.0.1"
    assert settings.replace(host="0.0.0.0", api_keys=KEYS).bind_host == "0.0.0.0"


def test_bad_key_entries_are_reported_at_start_up() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"MP_API_KEYS": "ios:not-a-hash", "MP_RATE_LIMIT": "-1"})
    assert any("MP_API_KEYS" in p for p in raised.value.problems)
    assert any("MP_RATE_LIMIT" in p for p in raised.value.problems)


def test_the_api_key_command_prints_a_key_and_its_entry() -> None:
    done = subprocess.run([sys.executable, "-m", "media_pipeline.cli", "api-key", "android"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    key = done.stdout.split("stored anywhere): ")[1].split()[0]
    entry = done.stdout.split("MP_API_KEYS: ")[1].split()[0]
    assert entry == f"android:{hash_key(key)}" and key not in entry
    settings = Settings.from_env({"MP_API_KEYS": entry})
    assert settings.api_keys == entry


@pytest.fixture
def live_server(services: Any) -> Iterator[tuple[str, int]]:
    services.settings = services.settings.replace(api_keys=KEYS)
    server = make_server("127.0.0.1", 0, create_app(services.settings, services), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", server.server_port
    server.shutdown()


def test_a_refused_upload_is_answered_before_its_body_is_sent(live_server: tuple[str, int]) -> None:
    # The client announces 30 MB and sends 1 KB: the 401 must come back without the rest.
    with socket.create_connection(live_server, timeout=10) as conn:
        conn.sendall(b"POST /v1/photos HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 30000000\r\n\r\n" + b"\xff" * 1024)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401")
    assert json.loads(body)["error"]["code"] == "unauthorized"


def test_rate_limit_answers_429_with_retry_after_per_key(services: Any) -> None:
    client = keyed_client(services, rate_limit=3)
    photo = images.jpeg(images.scene(64, 64))
    for _ in range(3):
        assert client.post("/v1/photos", data=photo, headers=bearer(KEY_IOS)).status_code == 202
    limited = client.post("/v1/photos", data=photo, headers=bearer(KEY_IOS))
    assert_error(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert len(list(services.storage.list("originals/"))) == 3
    assert client.post("/v1/photos", data=photo, headers=bearer(KEY_WEB)).status_code == 202  # its own budget
    assert client.get(f"/v1/photos/{service.new_photo_id()}", headers=bearer(KEY_IOS)).status_code == 404  # reads are not limited


@pytest.mark.redis
def test_rate_limit_is_shared_by_processes_through_redis(services: Any, redis_url: str) -> None:
    # Two app instances stand for two gunicorn workers: the budget is one.
    key_name = f"ci-{uuid.uuid4().hex[:8]}"
    key = f"mpk_{key_name}-0123456789"
    settings = services.settings.replace(api_keys=f"{key_name}:{hash_key(key)}", rate_limit=3, rate_limit_url=redis_url)
    services.settings = settings
    first, second = (create_app(settings, services).test_client() for _ in range(2))
    photo = images.jpeg(images.scene(64, 64))
    codes = [c.post("/v1/photos", data=photo, headers=bearer(key)).status_code for c in (first, second, first, second)]
    assert codes == [202, 202, 202, 429]


def test_cors_allows_listed_origins_only(services: Any) -> None:
    client = keyed_client(services, cors_origins="https://app.example.com")
    preflight = client.options("/v1/photos", headers={"Origin": "https://app.example.com",
                                                       "Access-Control-Request-Method": "POST",
                                                       "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 204  # no key needed: browsers send none with a preflight
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    other = client.options("/v1/photos", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers
    refused = client.post("/v1/photos", data=b"x", headers={"Origin": "https://app.example.com"})
    assert refused.status_code == 401  # the browser can read why
    assert refused.headers["Access-Control-Allow-Origin"] == "https://app.example.com" and "Origin" in refused.headers["Vary"]
    answered = client.post("/v1/photos", data=images.jpeg(images.scene(64, 64)),
                           headers={"Origin": "https://evil.example", **bearer(KEY_IOS)})
    assert answered.status_code == 202 and "Access-Control-Allow-Origin" not in answered.headers
