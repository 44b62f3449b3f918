"""Reprocess jobs and their ledger: which photos a job selects, its cursor and status, and one
row per photo it enqueued with that photo's first outcome (so a redelivery never counts twice)."""

from __future__ import annotations

import json
import time
from typing import Any, Sequence

from media_pipeline import events
from media_pipeline.catalog.database import Cursor, SqlDatabase
from media_pipeline.catalog.events import record_event
from media_pipeline.jobs import JobReport, ReprocessJob, Selection


_JOB_COLUMNS = "id, selection, target_version, status, cursor, enqueued, created_at, updated_at, finished_at"


class ReprocessJobStore(SqlDatabase):
    def select_photo_ids(self, selection: Selection, target_version: str, after: str = "", limit: int = 1000) -> list[str]:
        where, params = _selection_sql(selection, target_version)
        with self._tx(write=False) as cur:
            rows = cur.fetchall(f"SELECT id FROM photos WHERE id > ? AND {where} ORDER BY id LIMIT {int(limit)}", [after, *params])
        return [r[0] for r in rows]

    def count_photos(self, selection: Selection, target_version: str) -> tuple[int, int]:
        """(selected, of which not at ``target_version``)."""
        where, params = _selection_sql(selection, target_version)
        with self._tx(write=False) as cur:
            row = cur.fetchall(
                f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN preset_version = ? AND status = 'ready' THEN 0 ELSE 1 END), 0) "
                f"FROM photos WHERE {where}",
                [target_version, *params],
            )[0]
        return int(row[0]), int(row[1])

    def processing_stats(self) -> tuple[float | None, dict[tuple[str, int], float]]:
        """(mean seconds to process a photo, mean bytes of a rendition per (format, width)), from what was recorded."""
        with self._tx(write=False) as cur:
            seconds = cur.fetchall("SELECT AVG(process_seconds) FROM photos WHERE process_seconds IS NOT NULL")[0][0]
            sizes = cur.fetchall("SELECT format, width, AVG(bytes) FROM renditions WHERE current = 1 GROUP BY format, width")
        return (float(seconds) if seconds is not None else None, {(r[0], int(r[1])): float(r[2]) for r in sizes})

    def create_job(self, job: ReprocessJob) -> None:
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO reprocess_jobs (id, selection, target_version, status, cursor, enqueued, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job.id, json.dumps(job.selection.to_dict()), job.target_version, job.status, job.cursor, job.enqueued,
                 job.created_at, job.updated_at),
            )

    def get_job(self, job_id: str | None = None) -> ReprocessJob | None:
        """The job ``job_id``, or the newest one."""
        if not job_id:
            return next(iter(self.list_jobs(1)), None)
        with self._tx(write=False) as cur:
            rows = cur.fetchall(f"SELECT {_JOB_COLUMNS} FROM reprocess_jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def list_jobs(self, limit: int) -> list[ReprocessJob]:
        """Jobs newest first (the operator console's Jobs view), on ``reprocess_jobs (created_at)``."""
        with self._tx(write=False) as cur:
            return [_job(r) for r in cur.fetchall(f"SELECT {_JOB_COLUMNS} FROM reprocess_jobs ORDER BY created_at DESC LIMIT {int(limit)}")]

    def checkpoint(self, job_id: str, cursor: str, photo_ids: list[str]) -> int:
        """Record a batch as enqueued and move the cursor past it, in one transaction. Returns how
        many of the ids are new to the job (a resumed batch is not counted twice)."""
        now = time.time()
        with self._tx() as cur:
            added = cur.executemany(
                "INSERT INTO reprocess_items (job_id, photo_id, outcome, enqueued_at) VALUES (?, ?, 'pending', ?) "
                "ON CONFLICT (job_id, photo_id) DO NOTHING",
                [(job_id, pid, now) for pid in photo_ids],
            )
            cur.execute(
                "UPDATE reprocess_jobs SET cursor = ?, enqueued = enqueued + ?, updated_at = ? WHERE id = ?",
                (cursor, added, now, job_id),
            )
        return added

    def set_job_status(self, job_id: str, status: str) -> None:
        now = time.time()
        with self._tx() as cur:
            job = cur.fetchall("SELECT status FROM reprocess_jobs WHERE id = ?", (job_id,))
            if status == "done" and job and job[0][0] != "done":
                _finish(cur, job_id, now)
                return
            finished = now if status in ("done", "interrupted", "failed") else None
            cur.execute("UPDATE reprocess_jobs SET status = ?, updated_at = ?, finished_at = ? WHERE id = ?",
                        (status, now, finished, job_id))
            if status == "waiting":  # its photos may all have their outcome already
                _finish_if_complete(cur, job_id, now)

    def record_item(self, job_id: str, photo_id: str, outcome: str, code: str | None, bytes_written: int,
                    bytes_deleted: int, seconds: float) -> bool:
        """The first outcome of a photo in a job wins; a redelivered message does not count it twice.
        The last outcome of a job that is done enqueuing finishes it (``reprocess.finished``), whether
        or not a ``reprocess`` command is still waiting for it."""
        now = time.time()
        with self._tx() as cur:
            # The job's row first: on PostgreSQL this serialises the job's last outcomes, so the
            # one that leaves no photo pending sees that it does.
            cur.execute("UPDATE reprocess_jobs SET updated_at = ? WHERE id = ?", (now, job_id))
            recorded = bool(cur.execute(
                "UPDATE reprocess_items SET outcome = ?, code = ?, bytes_written = ?, bytes_deleted = ?, seconds = ?, "
                "finished_at = ? WHERE job_id = ? AND photo_id = ? AND outcome = 'pending'",
                (outcome, code, bytes_written, bytes_deleted, seconds, now, job_id, photo_id),
            ))
            if recorded:
                _finish_if_complete(cur, job_id, now)
            return recorded

    def start_item(self, job_id: str, photo_id: str) -> int | None:
        """Count a start of a photo in a job: the starts so far, or ``None`` once it has an outcome."""
        with self._tx() as cur:
            cur.execute("UPDATE reprocess_items SET attempts = attempts + 1 WHERE job_id = ? AND photo_id = ? AND outcome = 'pending'",
                        (job_id, photo_id))
            rows = cur.fetchall("SELECT attempts FROM reprocess_items WHERE job_id = ? AND photo_id = ? AND outcome = 'pending'",
                                (job_id, photo_id))
        return int(rows[0][0]) if rows else None

    def release_item(self, job_id: str, photo_id: str) -> None:
        """A start that ended in a transient error and went back on the queue does not count."""
        with self._tx() as cur:
            cur.execute("UPDATE reprocess_items SET attempts = attempts - 1 WHERE job_id = ? AND photo_id = ? AND attempts > 0 "
                        "AND outcome = 'pending'", (job_id, photo_id))

    def job_report(self, job_id: str) -> JobReport:
        with self._tx(write=False) as cur:
            rows = cur.fetchall(
                "SELECT outcome, COUNT(*), COALESCE(SUM(bytes_written), 0), COALESCE(SUM(bytes_deleted), 0), MAX(finished_at), "
                "MIN(finished_at) FROM reprocess_items WHERE job_id = ? GROUP BY outcome",
                (job_id,),
            )
            failures = cur.fetchall(
                "SELECT photo_id, code FROM reprocess_items WHERE job_id = ? AND outcome = 'failed' ORDER BY photo_id LIMIT 50",
                (job_id,),
            )
        counts = {r[0]: int(r[1]) for r in rows}
        finished = [r[4] for r in rows if r[4] is not None]
        started = [r[5] for r in rows if r[5] is not None]
        return JobReport(
            counts=counts,
            bytes_written=sum(int(r[2]) for r in rows),
            bytes_deleted=sum(int(r[3]) for r in rows),
            failures=[(r[0], r[1]) for r in failures],
            first_finished_at=min(started) if started else None,
            last_finished_at=max(finished) if finished else None,
        )

    def pending_items(self, job_id: str, enqueued_before: float, limit: int = 1000) -> list[str]:
        with self._tx(write=False) as cur:
            rows = cur.fetchall(
                f"SELECT photo_id FROM reprocess_items WHERE job_id = ? AND outcome = 'pending' AND enqueued_at < ? "
                f"ORDER BY photo_id LIMIT {int(limit)}",
                (job_id, enqueued_before),
            )
        return [r[0] for r in rows]

    def touch_items(self, job_id: str, photo_ids: list[str]) -> None:
        with self._tx() as cur:
            cur.executemany("UPDATE reprocess_items SET enqueued_at = ? WHERE job_id = ? AND photo_id = ?",
                            [(time.time(), job_id, pid) for pid in photo_ids])


def _finish_if_complete(cur: Cursor, job_id: str, now: float) -> None:
    """Done once it has enqueued everything (``waiting``) and no photo is pending."""
    waiting = cur.fetchall("SELECT 1 FROM reprocess_jobs WHERE id = ? AND status = 'waiting' AND NOT EXISTS ("
                           "SELECT 1 FROM reprocess_items WHERE job_id = ? AND outcome = 'pending')", (job_id, job_id))
    if waiting:
        _finish(cur, job_id, now)


def _finish(cur: Cursor, job_id: str, now: float) -> None:
    """Mark the job done and tell it, in the caller's transaction."""
    cur.execute("UPDATE reprocess_jobs SET status = 'done', updated_at = ?, finished_at = ? WHERE id = ?", (now, now, job_id))
    target = cur.fetchall("SELECT target_version FROM reprocess_jobs WHERE id = ?", (job_id,))[0][0]
    counts = cur.fetchall("SELECT outcome, COUNT(*) FROM reprocess_items WHERE job_id = ? GROUP BY outcome", (job_id,))
    record_event(cur, events.REPROCESS_FINISHED, None, events.job_data(job_id, target, {outcome: int(n) for outcome, n in counts}), now)


def _job(r: Sequence[Any]) -> ReprocessJob:
    return ReprocessJob(id=r[0], selection=Selection.from_dict(json.loads(r[1])), target_version=r[2], status=r[3],
                        cursor=r[4], enqueued=r[5], created_at=r[6], updated_at=r[7], finished_at=r[8])


def _selection_sql(selection: Selection, target_version: str) -> tuple[str, list[Any]]:
    clauses, params = ["1 = 1"], []
    if selection.mode == "stale":
        clauses.append("status IN ('ready', 'queued', 'processing') AND (preset_version IS NULL OR preset_version <> ?)")
        params.append(target_version)
    elif selection.mode == "failed":
        clauses.append("status = 'failed'")
    if selection.owner is not None:
        clauses.append("owner = ?")
        params.append(selection.owner)
    if selection.created_after is not None:
        clauses.append("created_at >= ?")
        params.append(selection.created_after)
    if selection.created_before is not None:
        clauses.append("created_at < ?")
        params.append(selection.created_before)
    return " AND ".join(clauses), params
