"""Standard Webhooks signatures (https://www.standardwebhooks.com): what a receiver verifies with
the ``standardwebhooks`` package, or by hand.

The secret is ``whsec_`` and the base64 of the key. Each attempt is signed anew:
``webhook-signature: v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">``,
the timestamp being the attempt's (receivers refuse one more than five minutes off).

The CDN purge hook and the outside validator are signed this way too, besides their older
``X-MP-Signature`` header, with the key ``key_of`` their secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The key of a ``whsec_…`` secret; ``ValueError`` when it is not one."""
    if not secret.startswith(PREFIX):
        raise ValueError(f"a webhook secret starts with {PREFIX}")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret's key is 24 to 64 bytes")
    return key


def key_of(secret: str) -> bytes:
    """The key of a ``whsec_`` secret, or of an older plain one (MP_PURGE_SECRET, MP_VALIDATION_SECRET):
    its UTF-8 bytes, which a receiver hands to ``standardwebhooks.Webhook`` as bytes."""
    return secret_key(secret) if secret.startswith(PREFIX) else secret.encode()


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(key, message_id, timestamp, body)}
