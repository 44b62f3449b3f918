"""Imports (#23): photos by the main app's id, and the import ledger, one row per source item of
an import job with its outcome (imported, already imported, bad with its reason). The job itself
is a reprocess job (reprocess_jobs.py) whose selection names the source; the processing outcome
of each imported photo goes to that job's reprocess ledger."""

from __future__ import annotations

import time
from typing import Sequence

from media_pipeline.catalog.database import SqlDatabase
from media_pipeline.importing.models import ImportReport, ItemResult


class ImportItemStore(SqlDatabase):
    def photo_by_external_id(self, owner: str | None, external_id: str) -> tuple[str, str] | None:
        """(id, status) of the photo ``owner`` imported as ``external_id``."""
        with self._tx(write=False) as cur:
            rows = cur.fetchall("SELECT id, status FROM photos WHERE COALESCE(owner, '') = ? AND external_id = ?",
                                (owner or "", external_id))
        return (rows[0][0], rows[0][1]) if rows else None

    def photos_by_external_ids(self, keys: Sequence[tuple[str | None, str]]) -> dict[tuple[str, str], tuple[str, str]]:
        """(owner or "", external_id) -> (id, status), for the ``keys`` that are photos: one query a batch."""
        wanted = {(owner or "", external_id) for owner, external_id in keys}
        if not wanted:
            return {}
        ids = sorted({external_id for _, external_id in wanted})
        with self._tx(write=False) as cur:
            rows = cur.fetchall(f"SELECT COALESCE(owner, ''), external_id, id, status FROM photos WHERE external_id IN "
                                f"({', '.join('?' * len(ids))})", ids)
        return {(r[0], r[1]): (r[2], r[3]) for r in rows if (r[0], r[1]) in wanted}

    def photo_by_sha256(self, owner: str | None, sha256: str) -> tuple[str, str] | None:
        """(id, status) of a photo of ``owner`` with exactly these bytes (the oldest)."""
        with self._tx(write=False) as cur:
            rows = cur.fetchall("SELECT id, status FROM photos WHERE sha256 = ? AND COALESCE(owner, '') = ? ORDER BY id LIMIT 1",
                                (sha256, owner or ""))
        return (rows[0][0], rows[0][1]) if rows else None

    def ledger_items(self, job_id: str, items: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """item -> (outcome, photo id) of the ``items`` the job already recorded (a resumed batch)."""
        if not items:
            return {}
        with self._tx(write=False) as cur:
            rows = cur.fetchall(f"SELECT item, outcome, photo_id FROM import_items WHERE job_id = ? AND item IN ({', '.join('?' * len(items))})",
                                (job_id, *items))
        return {r[0]: (r[1], r[2]) for r in rows}

    def record_import_batch(self, job_id: str, results: Sequence[ItemResult], taken_at: dict[str, str]) -> None:
        """The batch's outcomes, each item's first one kept (a resumed batch does not count twice)."""
        now = time.time()
        with self._tx() as cur:
            cur.executemany(
                "INSERT INTO import_items (job_id, item, outcome, code, message, photo_id, owner, external_id, visible, bytes, "
                "created_at, taken_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, item) DO NOTHING",
                [(job_id, r.item, r.outcome, r.code, (r.message or "")[:500] or None, r.photo_id, r.owner, r.external_id,
                  None if r.visible is None else int(r.visible), r.bytes, now, taken_at.get(r.item)) for r in results],
            )

    def import_report(self, job_id: str, bad_limit: int = 100) -> ImportReport:
        with self._tx(write=False) as cur:
            rows = cur.fetchall("SELECT outcome, COUNT(*), COALESCE(SUM(bytes), 0) FROM import_items WHERE job_id = ? GROUP BY outcome",
                                (job_id,))
            bad = cur.fetchall(f"SELECT item, code, message FROM import_items WHERE job_id = ? AND outcome = 'bad' "
                               f"ORDER BY created_at, item LIMIT {int(bad_limit)}", (job_id,))
        return ImportReport(counts={r[0]: int(r[1]) for r in rows}, bytes=sum(int(r[2]) for r in rows),
                            bad=[(r[0], r[1], r[2]) for r in bad])

    def latest_import_job_id(self) -> str | None:
        with self._tx(write=False) as cur:
            rows = cur.fetchall("SELECT id FROM reprocess_jobs WHERE selection LIKE ? ORDER BY created_at DESC LIMIT 1",
                                ('%"mode": "import"%',))
        return rows[0][0] if rows else None

