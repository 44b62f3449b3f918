"""The purge outbox: cache purges owed to the CDN's hook (``MP_PURGE_URL``), kept in the catalog
so one is sent until acknowledged, whatever process dies in between. A row is claimed for a
lease before it is sent, so two senders (the API right after a DELETE, the reconciler's rounds)
rarely send it twice; twice is harmless, a purge is idempotent."""

from __future__ import annotations

import uuid

from media_pipeline.catalog.database import SqlDatabase


class PurgeOutboxStore(SqlDatabase):
    def add_purge(self, body: str, now: float) -> str:
        purge_id = uuid.uuid4().hex
        with self._tx() as cur:
            cur.execute("INSERT INTO purge_outbox (id, body, attempts, next_at, created_at, last_error) VALUES (?, ?, 0, ?, ?, NULL)",
                        (purge_id, body, now, now))
        return purge_id

    def claim_purges(self, now: float, lease: float, limit: int = 100) -> list[tuple[str, str, int]]:
        """(id, body, attempts so far) of the purges due at ``now``, each kept from other senders for ``lease`` seconds."""
        claimed = []
        with self._tx() as cur:
            rows = cur.fetchall(f"SELECT id, body, attempts, next_at FROM purge_outbox WHERE next_at <= ? ORDER BY next_at LIMIT {int(limit)}",
                                (now,))
            for purge_id, body, attempts, next_at in rows:
                if cur.execute("UPDATE purge_outbox SET next_at = ? WHERE id = ? AND next_at = ?", (now + lease, purge_id, next_at)):
                    claimed.append((purge_id, body, attempts))
        return claimed

    def purge_delivered(self, purge_id: str) -> None:
        with self._tx() as cur:
            cur.execute("DELETE FROM purge_outbox WHERE id = ?", (purge_id,))

    def purge_failed(self, purge_id: str, attempts: int, next_at: float, error: str) -> None:
        with self._tx() as cur:
            cur.execute("UPDATE purge_outbox SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
                        (attempts, next_at, error[:500], purge_id))

    def pending_purges(self) -> list[tuple[str, int, float, str | None]]:
        """(id, attempts, next attempt at, last error) of every purge not yet acknowledged."""
        with self._tx(write=False) as cur:
            return [tuple(r) for r in cur.fetchall("SELECT id, attempts, next_at, last_error FROM purge_outbox ORDER BY created_at")]  # type: ignore[misc]
