"""An outside validator that sees every photo before its renditions are made (a moderation or
trust-and-safety service), like pict-rs's external validation.

The service POSTs JSON to ``MP_VALIDATION_URL``: the photo's id, owner, digest, size and hashes
(PDQ for hash-sharing lookups) and a 512 px JPEG preview (base64), signed so the receiver knows
it came from us:

    X-MP-Timestamp: <unix seconds>
    X-MP-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" with MP_VALIDATION_SECRET>

and the Standard Webhooks headers (webhook_signature.py), so ``standardwebhooks`` verifies it too.

A 2xx answer lets the photo through; a 4xx rejects it (the photo ends ``failed`` with
``rejected``, and the answer's JSON ``reason``, if any, as its message); anything else (5xx, a
timeout, no connection) is transient and the task retries, so a validator outage delays photos
and never lets one through unchecked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from media_pipeline import webhook_signature
from media_pipeline.errors import ValidatorUnavailable


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str = ""


class Validator(Protocol):
    def check(self, payload: dict[str, Any]) -> Verdict: ...


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-MP-Signature`` value a receiver recomputes to verify a call."""
    return "v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class HttpValidator:
    def __init__(self, url: str, secret: str, timeout: float) -> None:
        self.url, self.secret, self.timeout = url, secret, timeout

    def check(self, payload: dict[str, Any]) -> Verdict:
        body = json.dumps(payload, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        signed = webhook_signature.headers(webhook_signature.key_of(self.secret), f"msg_{uuid.uuid4().hex}", int(timestamp), body)
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "X-MP-Timestamp": timestamp,
            "X-MP-Signature": signature(self.secret, timestamp, body), **signed})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                answer.read()
                return Verdict(True)
        except urllib.error.HTTPError as exc:
            if 400 <= exc.code < 500:
                return Verdict(False, _reason(exc) or f"the validator answered {exc.code}")
            raise ValidatorUnavailable(f"the validator answered {exc.code}") from exc
        except (OSError, TimeoutError) as exc:  # URLError, refused, reset, timed out
            raise ValidatorUnavailable(f"the validator could not be reached: {exc}") from exc


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        reason = json.loads(exc.read(4096) or b"{}").get("reason", "")
    except (ValueError, AttributeError, OSError):
        return ""
    return str(reason)[:500]
