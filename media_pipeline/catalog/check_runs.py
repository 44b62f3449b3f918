"""What the last runs of ``media-pipeline check`` found: its summary, kept for the console."""

from __future__ import annotations

import json
from typing import Any

from media_pipeline.catalog.database import SqlDatabase

_KEEP = 100  # runs kept; older ones go as new ones come


class CheckRunStore(SqlDatabase):
    def record_check(self, finished_at: float, ok: bool, summary: dict[str, Any]) -> None:
        with self._tx() as cur:
            cur.execute("INSERT INTO check_runs (finished_at, ok, summary) VALUES (?, ?, ?) ON CONFLICT (finished_at) DO NOTHING",
                        (finished_at, int(ok), json.dumps(summary, sort_keys=True)))
            cur.execute(f"DELETE FROM check_runs WHERE finished_at < (SELECT MIN(finished_at) FROM "
                        f"(SELECT finished_at FROM check_runs ORDER BY finished_at DESC LIMIT {_KEEP}) AS kept)")

    def last_check(self) -> tuple[float, bool, dict[str, Any]] | None:
        """(finished at, ok, summary) of the newest run, or None before the first."""
        with self._tx(write=False) as cur:
            rows = cur.fetchall("SELECT finished_at, ok, summary FROM check_runs ORDER BY finished_at DESC LIMIT 1")
        return (float(rows[0][0]), bool(rows[0][1]), json.loads(rows[0][2])) if rows else None
