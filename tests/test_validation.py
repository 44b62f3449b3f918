"""MP_VALIDATION_URL: every photo is shown, signed, to an outside validator before its renditions
are made; its 4xx rejects the photo, its outage delays it, and nothing slips through unchecked."""

from __future__ import annotations

import base64
import hmac
import http.server
import io
import json
import threading
from typing import Any, Iterator

import pytest
from PIL import Image
from standardwebhooks.webhooks import Webhook

from bench import edits
from config.settings import ConfigError, Settings
from media_pipeline import service
from media_pipeline.errors import ValidatorUnavailable
from media_pipeline.service import Outcome, build_services
from media_pipeline.validation import signature
from tests import images
from tests.conftest import ingest_bytes

SECRET = "validator-secret-0123456789"


class Receiver:
    """A validator on loopback: answers ``status`` (and ``reason``) and keeps what it was sent."""

    def __init__(self) -> None:
        self.status, self.reason = 200, ""
        self.calls: list[tuple[dict[str, str], bytes]] = []


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
            answer = json.dumps({"reason": state.reason}).encode()
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/check"
    server.shutdown()


def guarded(settings: Settings, queue: Any, url: str) -> Any:
    return build_services(settings.replace(validation_url=url, validation_secret=SECRET, validation_timeout=5.0), queue=queue)


def test_an_accepted_photo_was_shown_signed_with_a_preview(settings: Settings, queue: Any, receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    services = guarded(settings, queue, url)
    photo_id = ingest_bytes(services, edits.jpeg_bytes(images.natural(1200, 800, seed=71)), owner="alice")
    assert service.process_photo(services, photo_id) is Outcome.DONE
    [(headers, body)] = state.calls
    assert hmac.compare_digest(headers["x-mp-signature"], signature(SECRET, headers["x-mp-timestamp"], body))
    assert Webhook(SECRET.encode()).verify(body, headers)["photo"]["id"]  # and the Standard Webhooks headers
    sent = json.loads(body)
    assert sent["photo"]["id"] == photo_id and sent["photo"]["owner"] == "alice" and (sent["photo"]["width"], sent["photo"]["height"]) == (1200, 800)
    assert len(sent["hashes"]["pdq"]) == 64
    preview = Image.open(io.BytesIO(base64.b64decode(sent["preview"]["base64"])))
    assert preview.format == "JPEG" and max(preview.size) == 512 and not preview.info.get("exif")


def test_a_rejected_photo_ends_failed_with_the_reason(settings: Settings, queue: Any, receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    state.status, state.reason = 403, "violates the nudity policy"
    services = guarded(settings, queue, url)
    photo_id = ingest_bytes(services, edits.jpeg_bytes(images.natural(900, 600, seed=72)))
    assert service.process_photo(services, photo_id) is Outcome.FAILED
    photo = services.catalog.get_photo(photo_id)
    assert (photo.error_code, photo.error_message) == ("rejected", "violates the nudity policy")
    assert list(services.storage.list(f"renditions/{photo_id}/")) == []


def test_a_validator_outage_delays_the_photo_and_never_skips_the_check(settings: Settings, queue: Any, receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    state.status = 503
    services = guarded(settings, queue, url)
    photo_id = ingest_bytes(services, edits.jpeg_bytes(images.natural(900, 600, seed=73)))
    with pytest.raises(ValidatorUnavailable) as raised:
        service.process_photo(services, photo_id)
    assert raised.value.transient  # the task retries it with backoff
    assert services.catalog.get_photo(photo_id).status.value == "processing"
    state.status = 200
    assert service.process_photo(services, photo_id) is Outcome.DONE
    assert len(state.calls) == 2
    down = guarded(settings, queue, "http://127.0.0.1:9/check")  # nothing listens on the discard port
    other = ingest_bytes(down, edits.jpeg_bytes(images.natural(900, 600, seed=74)))
    with pytest.raises(ValidatorUnavailable):
        service.process_photo(down, other)


def test_the_validator_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="MP_VALIDATION_SECRET"):
        Settings.from_env({"MP_VALIDATION_URL": "https://moderation.example/check"})
    with pytest.raises(ConfigError, match="MP_VALIDATION_URL"):
        Settings.from_env({"MP_VALIDATION_URL": "ftp://x", "MP_VALIDATION_SECRET": SECRET})
