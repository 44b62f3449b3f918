"""Events: what happened to a photo or a reprocess job, as a client learns it from a webhook or
from the feed (``GET /v1/events``). Pure values: the catalog writes them in the transaction of
the change that causes them (catalog/events.py), webhooks.py delivers them, web/events.py lists them.

An event is ``{"id", "type", "timestamp", "data"}``; ``data`` holds the photo (a summary of its
record: ``GET /v1/photos/<id>`` has the rest) or the job, as they were when it happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from media_pipeline.models import Duplicate, Photo
from media_pipeline.timestamps import rfc3339

PHOTO_READY = "photo.ready"
PHOTO_FAILED = "photo.failed"
PHOTO_DELETED = "photo.deleted"
PHOTO_DUPLICATE_FOUND = "photo.duplicate_found"
REPROCESS_FINISHED = "reprocess.finished"
TYPES = (PHOTO_READY, PHOTO_FAILED, PHOTO_DELETED, PHOTO_DUPLICATE_FOUND, REPROCESS_FINISHED)


@dataclass(frozen=True)
class Event:
    seq: int  # its place in the feed: commit order
    id: str
    type: str
    photo_id: str | None
    created_at: float
    data: Mapping[str, Any]

    @property
    def cursor(self) -> str:
        return str(self.seq)

    def to_json(self) -> dict[str, Any]:
        """The event as a webhook's body and an item of the feed."""
        return {"id": self.id, "type": self.type, "timestamp": rfc3339(self.created_at), "data": dict(self.data)}


@dataclass(frozen=True)
class Settled:
    """The answer to one delivery of event ``seq``: ``delivered``; ``pending`` again from ``next_at``; ``failed`` for good."""

    seq: int
    state: str
    attempts: int = 0
    next_at: float = 0.0
    error: str | None = None


def photo_summary(photo: Photo) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "id": photo.id,
        "owner": photo.owner,
        "status": photo.status.value,
        "sha256": photo.sha256,
        "original": {"format": photo.original_format, "width": photo.original_width, "height": photo.original_height,
                     "bytes": photo.original_bytes},
        "preset_version": photo.preset_version,
        "links": {"self": f"/v1/photos/{photo.id}"},
    }
    if photo.error_code is not None:
        summary["error"] = {"code": photo.error_code, "message": photo.error_message or ""}
    return summary


def photo_data(photo: Photo) -> dict[str, Any]:
    """``photo.ready`` and ``photo.failed``: the photo as it became."""
    return {"photo": photo_summary(photo)}


def deleted_data(photo_id: str, owner: str | None) -> dict[str, Any]:
    return {"photo": {"id": photo_id, "owner": owner, "status": "deleted"}}


def duplicates_data(photo_id: str, owner: str | None, found: Iterable[Duplicate]) -> dict[str, Any]:
    """``photo.duplicate_found``: the earlier (or, found later, newer) photos it was just matched with."""
    return {"photo": {"id": photo_id, "owner": owner},
            "duplicates": [{"id": d.id, "kind": d.kind, "distance": d.distance, "transform": d.transform, "inliers": d.inliers}
                           for d in found]}


def job_data(job_id: str, target_version: str, counts: Mapping[str, int]) -> dict[str, Any]:
    """``reprocess.finished``: the job and how many of its photos ended each way."""
    return {"job": {"id": job_id, "status": "done", "target_version": target_version, "counts": dict(sorted(counts.items()))}}
