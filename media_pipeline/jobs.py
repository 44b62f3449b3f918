"""Reprocess jobs as the catalog keeps them: which photos a job covers, the job's progress, and its
report. Import jobs are reprocess jobs over a source (importing/importer.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Selection:
    """Which photos a reprocess job covers. ``mode``: all, stale (preset version differs) or failed."""

    mode: str = "stale"
    owner: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    ids_file: str | None = None  # photo ids, one a line, instead of a catalog query
    prefix: str | None = None  # originals in storage, catalogued first if they have no row
    source: str | None = None  # mode "import": the folder, s3:// prefix or manifest imported (importer.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Selection":
        return cls(**data)


@dataclass(frozen=True)
class ReprocessJob:
    id: str
    selection: Selection
    target_version: str
    status: str  # enqueuing, waiting, done, interrupted
    cursor: str
    enqueued: int
    created_at: float
    updated_at: float
    finished_at: float | None = None


@dataclass(frozen=True)
class JobReport:
    counts: dict[str, int]  # outcome -> photos: pending, updated, up_to_date, failed, missing
    bytes_written: int
    bytes_deleted: int
    failures: list[tuple[str, str | None]]
    first_finished_at: float | None
    last_finished_at: float | None

    @property
    def finished(self) -> int:
        return sum(n for outcome, n in self.counts.items() if outcome != "pending")

    @property
    def total(self) -> int:
        return sum(self.counts.values())
