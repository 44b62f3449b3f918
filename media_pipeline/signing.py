"""HMAC-SHA256 URL signatures for on-demand renditions.

The signature covers the URL path (``/i/<id>/<width>.<ext>``). Several keys may be configured:
the first signs, every one verifies, so a key can be rotated in without breaking live URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Sequence

SIGNATURE_PARAM = "sig"


def sign(path: str, key: bytes) -> str:
    digest = hmac.new(key, path.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify(path: str, signature: str, keys: Sequence[bytes]) -> bool:
    """Constant-time comparison against every configured key (all are tried, whatever matches)."""
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(sign(path, key).encode(), signature.encode())
    return ok


def signed_path(path: str, key: bytes) -> str:
    return f"{path}?{SIGNATURE_PARAM}={sign(path, key)}"
