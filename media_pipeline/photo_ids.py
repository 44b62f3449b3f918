"""Photo ids: 26 characters of Crockford base32, time first, so they sort by acceptance time."""

from __future__ import annotations

import secrets
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_photo_id(now: float | None = None) -> str:
    """26 characters, Crockford base32: 48 bits of milliseconds then 80 random bits, so ids sort by time."""
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def is_photo_id(value: str) -> bool:
    return len(value) == 26 and all(c in _CROCKFORD for c in value)
