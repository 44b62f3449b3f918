"""Idempotency keys of uploads: the request body's hash under a key scoped by owner, and the photo
once it exists, so a retried upload gets the first photo back instead of a second copy."""

from __future__ import annotations

import time

from media_pipeline.catalog.database import SqlDatabase


class IdempotencyKeyStore(SqlDatabase):
    def claim_idempotency_key(self, scope: str, request_sha256: str, expires_before: float) -> tuple[str, str | None]:
        """("new", None) when this request may go ahead; ("replay", photo id) when the same body was
        accepted before; ("mismatch", None) for another body; ("in_progress", None) while the first
        request with this key is still running. Keys older than ``expires_before`` are forgotten."""
        now = time.time()
        with self._tx() as cur:
            cur.execute("DELETE FROM idempotency_keys WHERE scope = ? AND created_at < ?", (scope, expires_before))
            inserted = cur.execute(
                "INSERT INTO idempotency_keys (scope, request_sha256, photo_id, created_at) VALUES (?, ?, NULL, ?) "
                "ON CONFLICT (scope) DO NOTHING",
                (scope, request_sha256, now),
            )
            if inserted:
                return "new", None
            sha, photo_id = cur.fetchall("SELECT request_sha256, photo_id FROM idempotency_keys WHERE scope = ?", (scope,))[0]
        if sha != request_sha256:
            return "mismatch", None
        return ("replay", photo_id) if photo_id else ("in_progress", None)

    def settle_idempotency_key(self, scope: str, photo_id: str | None) -> None:
        """Record the photo the key produced, or (``None``: the request failed) release the key."""
        with self._tx() as cur:
            if photo_id is None:
                cur.execute("DELETE FROM idempotency_keys WHERE scope = ? AND photo_id IS NULL", (scope,))
            else:
                cur.execute("UPDATE idempotency_keys SET photo_id = ? WHERE scope = ?", (photo_id, scope))
