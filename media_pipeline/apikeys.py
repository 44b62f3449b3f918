"""API keys as the service keeps them: only their SHA-256, by name, maybe revoked (pure)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A random key with a recognisable prefix (secret scanners can find leaked ones)."""
    return "mpk_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class KeyEntry:
    name: str
    revoked: bool
    operator: bool = False  # from MP_OPERATOR_KEYS: may also open the operator console


def parse_keys(spec: str, operator: bool = False) -> dict[str, KeyEntry]:
    """``MP_API_KEYS`` (or ``MP_OPERATOR_KEYS``, with ``operator``) as {sha256: entry}; raises
    ValueError naming the first bad entry."""
    keys: dict[str, KeyEntry] = {}
    for raw in (part.strip() for part in spec.split(",")):
        if not raw:
            continue
        revoked = raw.startswith("!")
        name, _, digest = raw.lstrip("!").partition(":")
        if not name or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
            raise ValueError(f"{raw!r} is not name:sha256-hex")
        keys[digest.lower()] = KeyEntry(name=name, revoked=revoked, operator=operator)
    return keys
