"""What the operator console asks and answers, as values (pure: no I/O, no clock).

- ``PhotoFilter``: a page of the photo list (status, owner, kind, time range, error code, a search
  for one id or sha256, a cursor); ``PhotoSummary``: one photo of it.
- ``KINDS``: the kinds a list can be filtered by. A kind is one SQL condition on the photo row
  ``p``; a new kind (animated, HDR) is one more entry here, nothing else changes.
- ``id_floor``: photo ids start with their acceptance time in milliseconds (service.new_photo_id),
  so a time range is a range of ids and pages on the primary key.
- ``queue_depth_series``, ``job_progress``: the Health and Jobs views' figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from media_pipeline.jobs import JobReport, ReprocessJob
from media_pipeline.models import Placeholder

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"

# kind -> SQL condition on the photo row `p` (portable across SQLite and PostgreSQL, indexed).
KINDS: dict[str, str] = {
    # Either side of a duplicate pair; both lookups are on an index of photo_duplicates.
    "duplicate": "(EXISTS (SELECT 1 FROM photo_duplicates d WHERE d.photo_id = p.id) "
                 "OR EXISTS (SELECT 1 FROM photo_duplicates d WHERE d.other_id = p.id))",
    # An animation kept as one (renditions with every frame).
    "animated": "(p.original_animated = 1 AND p.animation_dropped IS NULL)",
    # An HDR original (a gain map, or PQ/HLG): its JPEG renditions are Ultra HDR.
    "hdr": "p.original_hdr = 1",
    # Photos hidden on their own or whose owner opted out (visibility.py).
    "hidden": "(p.hidden = 1 OR EXISTS (SELECT 1 FROM owner_visibility v WHERE v.owner = p.owner AND v.visible = 0))",
}
MAX_PAGE = 200


@dataclass(frozen=True)
class PhotoFilter:
    status: str | None = None
    owner: str | None = None
    kind: str | None = None
    error_code: str | None = None
    created_after: float | None = None  # seconds since the epoch, inclusive
    created_before: float | None = None  # exclusive
    search: str | None = None  # a photo id, an imported photo's external_id, or an original's sha256
    cursor: str | None = None  # the last id of the previous page
    limit: int = 50


@dataclass(frozen=True)
class PhotoSummary:
    id: str
    status: str
    owner: str | None
    created_at: float
    original_format: str
    original_width: int
    original_height: int
    placeholder: Placeholder | None
    error_code: str | None
    error_message: str | None
    thumbnail_width: int | None  # the smallest current whole-picture rendition, once ready
    kinds: tuple[str, ...]


@dataclass(frozen=True)
class DuplicateCopy:
    id: str
    kind: str
    distance: int | None
    inliers: int | None
    transform: str | None


@dataclass(frozen=True)
class DuplicateCluster:
    """An earlier photo and the later ones that repeat it."""

    id: str
    copies: tuple[DuplicateCopy, ...]


@dataclass(frozen=True)
class MinuteActivity:
    minute: float  # its start, seconds since the epoch
    arrived: int
    finished: int
    queue_depth: int  # photos queued or processing at the minute's end (reconstructed)


@dataclass(frozen=True)
class JobProgress:
    total: int
    finished: int
    fraction: float
    per_second: float | None
    eta_seconds: float | None


def id_floor(seconds: float) -> str:
    """The smallest photo id accepted at or after ``seconds``: its millisecond prefix, then zeros."""
    value = min(max(int(seconds * 1000), 0), (1 << 48) - 1) << 80
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def minute_start(seconds: float) -> float:
    return float(int(seconds // 60) * 60)


def queue_depth_series(now: float, in_flight: int, arrived: dict[float, int], finished: dict[float, int],
                       minutes: int = 60) -> list[MinuteActivity]:
    """The last ``minutes`` minutes, oldest first. The catalog keeps no history of the queue, so its
    depth is walked back from now: at the end of the minute before, it was this minute's end minus
    what arrived in it plus what finished in it (exact unless photos were requeued or deleted)."""
    series: list[MinuteActivity] = []
    depth = in_flight
    start = minute_start(now)
    for i in range(minutes):
        minute = start - 60 * i
        came, went = arrived.get(minute, 0), finished.get(minute, 0)
        series.append(MinuteActivity(minute=minute, arrived=came, finished=went, queue_depth=depth))
        depth = max(0, depth - came + went)
    return series[::-1]


def job_progress(job: ReprocessJob, report: JobReport, now: float) -> JobProgress:
    """How far a job is: photos finished of those enqueued, the rate since its first photo
    finished (up to now while it runs, to its last one when it is over) and the time left at it."""
    total = max(report.total, job.enqueued)
    finished = report.finished
    per_second = eta = None
    if report.first_finished_at is not None and finished:
        end = report.last_finished_at if job.finished_at is not None and report.last_finished_at else now
        elapsed = max(end - report.first_finished_at, 1e-3)
        per_second = finished / elapsed
        eta = 0.0 if job.finished_at is not None else (total - finished) / per_second
    return JobProgress(total=total, finished=finished, fraction=finished / total if total else 1.0 if job.finished_at else 0.0,
                       per_second=per_second, eta_seconds=eta)
