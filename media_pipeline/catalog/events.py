"""The events outbox: every event is a row written by ``record_event`` inside the transaction of
the change that causes it (a photo ready, failed or deleted, duplicates found, a reprocess job
done), so none is lost and none is written for a change that rolled back.

- The feed reads it by ``seq``, which follows commit order: ``record_event`` takes the next
  number under the writers' lock (SQLite's write lock, an advisory lock on PostgreSQL) as the
  last statement of its transaction, so a reader past ``seq`` N never finds a smaller one later.
- Webhooks: each receiver (its URL, or ``key:NAME URL`` for an API key's) has a cursor in ``webhook_receivers``; the deliverer fans the
  events past it out into ``webhook_deliveries``, one row per (receiver, event), and claims due
  rows for a lease, like the purge outbox. A row waits while an earlier row of the same photo
  for the same receiver is pending, so each receiver gets a photo's events in order.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Sequence

from media_pipeline.catalog.database import Cursor, SqlDatabase
from media_pipeline.events import Event, Settled

_EVENT_LOCK = 7231012  # pg_advisory_xact_lock key of the event writers (7231001 is the migrations')
_EVENT_COLUMNS = "e.seq, e.id, e.type, e.photo_id, e.created_at, e.data"


def record_event(cur: Cursor, event_type: str, photo_id: str | None, data: dict[str, Any], now: float) -> str:
    """Write an event in the caller's transaction: call it last there (the lock is held to commit)."""
    if cur.dialect == "postgresql":
        cur.execute(f"SELECT pg_advisory_xact_lock({_EVENT_LOCK})")
    event_id = f"evt_{uuid.uuid4().hex}"
    client = cur.fetchall("SELECT client FROM photo_clients WHERE photo_id = ?", (photo_id,)) if photo_id else []
    cur.execute("INSERT INTO events (seq, id, type, photo_id, client, created_at, data) SELECT COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ?, ? "
                "FROM events", (event_id, event_type, photo_id, client[0][0] if client else None, now, json.dumps(data, sort_keys=True)))
    return event_id


class EventStore(SqlDatabase):
    def record_client(self, photo_id: str, client: str) -> None:
        """The API key (its name) a photo was uploaded with, for that key's webhook receiver."""
        with self._tx() as cur:
            cur.execute("INSERT INTO photo_clients (photo_id, client) VALUES (?, ?) ON CONFLICT (photo_id) DO NOTHING", (photo_id, client))

    def events_after(self, after: int, limit: int = 100) -> list[Event]:
        """The feed: events with ``seq`` above ``after``, oldest first."""
        with self._tx(write=False) as cur:
            rows = cur.fetchall(f"SELECT {_EVENT_COLUMNS} FROM events e WHERE e.seq > ? ORDER BY e.seq LIMIT {int(limit)}", (after,))
        return [_event(r) for r in rows]

    def fan_out(self, receiver: str, start_before: float, limit: int = 1000, client: str | None = None) -> int:
        """Owe ``receiver`` the events past its cursor (only those of photos uploaded with the API key
        ``client``, when given); how many. A receiver seen for the first time starts with the
        events written from ``start_before`` on (its retry window), not all history."""
        with self._tx(write=False) as cur:  # the deliverer looks often: the write lock only when there is news
            cursor = cur.fetchall("SELECT cursor FROM webhook_receivers WHERE receiver = ?", (receiver,))
            last = cur.fetchall("SELECT MAX(seq) FROM events")[0][0]
        if cursor and (last is None or last <= cursor[0][0]):
            return 0
        with self._tx() as cur:
            cur.execute("INSERT INTO webhook_receivers (receiver, cursor) SELECT ?, COALESCE(MAX(seq), 0) FROM events WHERE created_at < ? "
                        "ON CONFLICT (receiver) DO NOTHING", (receiver, start_before))
            cursor = cur.fetchall("SELECT cursor FROM webhook_receivers WHERE receiver = ?", (receiver,))[0][0]
            rows = cur.fetchall(f"SELECT seq, photo_id, created_at, client FROM events WHERE seq > ? ORDER BY seq LIMIT {int(limit)}",
                                (cursor,))
            if not rows:
                return 0
            owed = [(receiver, seq, photo_id or "", created, created) for seq, photo_id, created, by in rows if client is None or by == client]
            cur.executemany("INSERT INTO webhook_deliveries (receiver, event_seq, photo, state, attempts, next_at, created_at, last_error) "
                            "VALUES (?, ?, ?, 'pending', 0, ?, ?, NULL) ON CONFLICT (receiver, event_seq) DO NOTHING", owed)
            cur.execute("UPDATE webhook_receivers SET cursor = ? WHERE receiver = ?", (rows[-1][0], receiver))
        return len(owed)

    def claim_deliveries(self, receiver: str, now: float, lease: float, limit: int = 100) -> list[tuple[Event, int]]:
        """(event, attempts so far) of the deliveries to ``receiver`` due at ``now``, at most one per
        photo (its earliest pending), each held from other deliverers for ``lease`` seconds."""
        claimed = []
        with self._tx(write=False) as cur:
            rows = cur.fetchall(
                f"SELECT {_EVENT_COLUMNS}, d.attempts, d.next_at FROM webhook_deliveries d JOIN events e ON e.seq = d.event_seq "
                "WHERE d.receiver = ? AND d.state = 'pending' AND d.next_at <= ? AND (d.photo = '' OR NOT EXISTS ("
                "SELECT 1 FROM webhook_deliveries p WHERE p.receiver = d.receiver AND p.photo = d.photo AND p.state = 'pending' "
                f"AND p.event_seq < d.event_seq)) ORDER BY d.event_seq LIMIT {int(limit)}",
                (receiver, now),
            )
        if not rows:
            return claimed
        with self._tx() as cur:
            for row in rows:
                if cur.execute("UPDATE webhook_deliveries SET next_at = ? WHERE receiver = ? AND event_seq = ? AND next_at = ?",
                               (now + lease, receiver, row[0], row[7])):
                    claimed.append((_event(row[:6]), int(row[6])))
        return claimed

    def settle_deliveries(self, receiver: str, settled: Sequence[Settled]) -> None:
        """Record the answers of a round in one transaction: ``delivered`` rows go; ``pending`` ones wait
        for ``next_at``; ``failed`` ones (given up) stay for ``check`` and the metrics, and no longer
        hold the photo's later events back."""
        with self._tx() as cur:
            cur.executemany("DELETE FROM webhook_deliveries WHERE receiver = ? AND event_seq = ?",
                            [(receiver, s.seq) for s in settled if s.state == "delivered"])
            cur.executemany("UPDATE webhook_deliveries SET state = ?, attempts = ?, next_at = ?, last_error = ? WHERE receiver = ? AND event_seq = ?",
                            [(s.state, s.attempts, s.next_at, (s.error or "")[:500], receiver, s.seq) for s in settled if s.state != "delivered"])

    def prune_events(self, before: float) -> int:
        """Delete events written before ``before`` that no receiver is still owed, the failed
        deliveries of those days and the clients of deleted photos; how many events went. The newest event always stays: the next
        one is numbered after it, so a feed cursor never sees numbers used again."""
        with self._tx() as cur:
            cur.execute("DELETE FROM webhook_deliveries WHERE state = 'failed' AND created_at < ?", (before,))
            # A deleted photo's events carry its client already: no event about it is to come.
            cur.execute("DELETE FROM photo_clients WHERE NOT EXISTS (SELECT 1 FROM photos WHERE photos.id = photo_clients.photo_id)")
            return cur.execute("DELETE FROM events WHERE created_at < ? AND seq < (SELECT MAX(seq) FROM events) AND NOT EXISTS ("
                               "SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = events.seq)", (before,))

    def oldest_undelivered(self, receivers: Sequence[str]) -> float | None:
        """When the oldest event still owed to one of ``receivers`` was written (fanned out or not); ``None`` if none is."""
        if not receivers:
            return None
        marks = ", ".join("?" * len(receivers))
        with self._tx(write=False) as cur:
            pending = cur.fetchall(f"SELECT MIN(created_at) FROM webhook_deliveries WHERE state = 'pending' AND receiver IN ({marks})", receivers)
            waiting = cur.fetchall(f"SELECT MIN(e.created_at) FROM webhook_receivers r JOIN events e ON e.seq = r.cursor + 1 "
                                   f"WHERE r.receiver IN ({marks})", receivers)
        found = [v for v in (pending[0][0], waiting[0][0]) if v is not None]
        return min(found) if found else None

    def failed_deliveries(self, limit: int = 100) -> list[tuple[str, str, str, int, str | None]]:
        """(receiver, event id, type, attempts, last error) of the deliveries given up, newest first."""
        with self._tx(write=False) as cur:
            rows = cur.fetchall(f"SELECT d.receiver, e.id, e.type, d.attempts, d.last_error FROM webhook_deliveries d "
                                f"JOIN events e ON e.seq = d.event_seq WHERE d.state = 'failed' ORDER BY d.event_seq DESC LIMIT {int(limit)}")
        return [(r[0], r[1], r[2], int(r[3]), r[4]) for r in rows]

    def count_deliveries(self) -> dict[str, int]:
        """Deliveries owed, by state: ``pending`` and ``failed``."""
        with self._tx(write=False) as cur:
            rows = cur.fetchall("SELECT state, COUNT(*) FROM webhook_deliveries GROUP BY state")
        return {"pending": 0, "failed": 0, **{state: int(n) for state, n in rows}}


def _event(row: Sequence[Any]) -> Event:
    return Event(seq=int(row[0]), id=row[1], type=row[2], photo_id=row[3], created_at=float(row[4]), data=json.loads(row[5]))
