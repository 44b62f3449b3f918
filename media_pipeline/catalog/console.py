"""The operator console's reads: pages of photos newest first, counts by status and error code,
the last hour's arrivals and completions, duplicate clusters (reprocess jobs are listed by
reprocess_jobs.py).

Every list is a keyset page on an index (migration 11): photos by id, which sorts by acceptance
time, so a time range is an id range (console.id_floor) and the next page starts after the last id
seen; nothing is counted or offset past. ``tests/test_console_api.py`` and
``tests/contract/test_console_contract.py`` read the query plans on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from media_pipeline.catalog.database import Cursor, SqlDatabase
from media_pipeline.console import KINDS, DuplicateCluster, DuplicateCopy, PhotoFilter, PhotoSummary, id_floor, minute_start
from media_pipeline.models import Placeholder

_SUMMARY_COLUMNS = ("p.id, p.status, p.owner, p.created_at, p.original_format, p.original_width, p.original_height, "
                    "p.placeholder, p.error_code, p.error_message")


def photo_list_sql(query: PhotoFilter) -> tuple[str, list[Any]]:
    """The statement of one page (``limit`` + 1 rows: the extra one says there is a next page)."""
    clauses: list[str] = ["1 = 1"]
    params: list[Any] = []
    if query.search:
        # One photo by id or by the main app's id (an import's external_id), or the few of one
        # original's bytes: an index lookup each, then a small sort.
        if len(query.search) == 64:
            clauses.append("p.sha256 = ?")
            params.append(query.search.lower())
        else:
            clauses.append("(p.id = ? OR p.external_id = ?)")
            params += [query.search.lower(), query.search]
    for column, value in (("p.status", query.status), ("p.owner", query.owner), ("p.error_code", query.error_code)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.created_after is not None:
        clauses.append("p.id >= ?")
        params.append(id_floor(query.created_after))
    if query.created_before is not None:
        clauses.append("p.id < ?")
        params.append(id_floor(query.created_before))
    if query.cursor:
        clauses.append("p.id < ?")
        params.append(query.cursor)
    if query.kind is not None:
        clauses.append(KINDS[query.kind])
    sql = (f"SELECT {_SUMMARY_COLUMNS} FROM photos p WHERE {' AND '.join(clauses)} "
           f"ORDER BY p.id DESC LIMIT {int(query.limit) + 1}")
    return sql, params


class ConsoleStore(SqlDatabase):
    def list_photos(self, query: PhotoFilter) -> tuple[list[PhotoSummary], str | None]:
        sql, params = photo_list_sql(query)
        with self._tx(write=False) as cur:
            rows = cur.fetchall(sql, params)
            page = rows[: query.limit]
            summaries = _summaries(cur, page)
        return summaries, (page[-1][0] if len(rows) > query.limit else None)

    def photo_summaries(self, photo_ids: Sequence[str]) -> dict[str, PhotoSummary]:
        if not photo_ids:
            return {}
        with self._tx(write=False) as cur:
            rows = cur.fetchall(f"SELECT {_SUMMARY_COLUMNS} FROM photos p WHERE p.id IN ({_marks(photo_ids)})", list(photo_ids))
            return {s.id: s for s in _summaries(cur, rows)}

    def status_counts(self) -> dict[str, int]:
        with self._tx(write=False) as cur:
            return {r[0]: int(r[1]) for r in cur.fetchall("SELECT status, COUNT(*) FROM photos GROUP BY status")}

    def failure_counts(self) -> list[tuple[str, int]]:
        """(error code, photos) of the failed photos, most first."""
        with self._tx(write=False) as cur:
            rows = cur.fetchall("SELECT COALESCE(error_code, 'internal'), COUNT(*) FROM photos WHERE status = 'failed' "
                                "GROUP BY error_code")
        return sorted(((r[0], int(r[1])) for r in rows), key=lambda r: (-r[1], r[0]))

    def activity(self, since: float) -> tuple[dict[float, int], dict[float, int]]:
        """Photos accepted, and photos that ended ready or failed, per minute since ``since``
        (the minute of their last update: a later edit of a ready photo moves it)."""
        with self._tx(write=False) as cur:
            arrived = cur.fetchall("SELECT created_at FROM photos WHERE id >= ?", (id_floor(since),))
            finished = cur.fetchall("SELECT updated_at FROM photos WHERE status IN ('ready', 'failed') AND updated_at >= ?", (since,))
        return _per_minute(r[0] for r in arrived), _per_minute(r[0] for r in finished)

    def stuck_count(self, updated_before: float) -> int:
        with self._tx(write=False) as cur:
            return int(cur.fetchall("SELECT COUNT(*) FROM photos WHERE status IN ('queued', 'processing') AND updated_at < ?",
                                    (updated_before,))[0][0])

    def duplicate_clusters(self, cursor: str | None, limit: int) -> tuple[list[DuplicateCluster], str | None]:
        """Earlier photos that later ones repeat, newest first, each with its copies."""
        with self._tx(write=False) as cur:
            where, params = ("WHERE other_id < ?", [cursor]) if cursor else ("", [])
            heads = [r[0] for r in cur.fetchall(
                f"SELECT DISTINCT other_id FROM photo_duplicates {where} ORDER BY other_id DESC LIMIT {int(limit) + 1}", params)]
            page = heads[:limit]
            rows = cur.fetchall(
                f"SELECT other_id, photo_id, kind, distance, inliers, transform FROM photo_duplicates WHERE other_id IN ({_marks(page)}) "
                "ORDER BY photo_id", page) if page else []
        copies: dict[str, list[DuplicateCopy]] = {head: [] for head in page}
        for head, photo_id, kind, distance, inliers, transform in rows:
            copies[head].append(DuplicateCopy(id=photo_id, kind=kind, distance=distance, inliers=inliers, transform=transform))
        clusters = [DuplicateCluster(id=head, copies=tuple(copies[head])) for head in page]
        return clusters, (page[-1] if len(heads) > limit else None)


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _per_minute(moments: Any) -> dict[float, int]:
    counts: dict[float, int] = {}
    for moment in moments:
        minute = minute_start(float(moment))
        counts[minute] = counts.get(minute, 0) + 1
    return counts


def _summaries(cur: Cursor, rows: Sequence[tuple[Any, ...]]) -> list[PhotoSummary]:
    """Rows of ``_SUMMARY_COLUMNS`` as summaries, with their thumbnails and kinds read for the page at once."""
    ids = [r[0] for r in rows]
    thumbs: dict[str, int] = {}
    kinds: dict[str, list[str]] = {}
    if ids:
        marks = _marks(ids)
        thumbs = {r[0]: int(r[1]) for r in cur.fetchall(
            f"SELECT photo_id, MIN(width) FROM renditions WHERE photo_id IN ({marks}) AND current = 1 AND aspect = 'original' "
            "GROUP BY photo_id", ids)}
        # Each kind's own condition, asked of this page's ids only: a new kind needs no code here.
        for kind, condition in KINDS.items():
            for (photo_id,) in cur.fetchall(f"SELECT p.id FROM photos p WHERE p.id IN ({marks}) AND {condition}", ids):
                kinds.setdefault(photo_id, []).append(kind)
    return [
        PhotoSummary(id=r[0], status=r[1], owner=r[2], created_at=float(r[3]), original_format=r[4], original_width=r[5],
                     original_height=r[6], placeholder=Placeholder(**json.loads(r[7])) if r[7] else None, error_code=r[8],
                     error_message=r[9], thumbnail_width=thumbs.get(r[0]),
                     kinds=tuple(kinds.get(r[0], ())))
        for r in rows
    ]
