"""The operator console's JSON endpoints (docs/console.md): every photo of every owner, paged;
counts, failures and the last hour; duplicate clusters; reprocess jobs; retrying a failed photo.
Usable on their own with curl. Once any key is configured they answer only an operator key
(web/access.py checks this blueprint's name)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from media_pipeline import console, service
from media_pipeline.console import KINDS, MAX_PAGE, DuplicateCopy, PhotoFilter, PhotoSummary
from media_pipeline.errors import BadQuery, MediaPipelineError, NotFailed, NotFound
from media_pipeline.models import PhotoStatus
from media_pipeline.timestamps import rfc3339
from media_pipeline.web.photos import services

bp = Blueprint("console", __name__, url_prefix="/v1")

_STATUSES = {s.value for s in PhotoStatus}
_MAX_TEXT = 128


def list_photos() -> Response:
    """``GET /v1/photos`` without ``external_id`` (web/photos.py routes it here)."""
    query = PhotoFilter(
        status=_choice("status", _STATUSES),
        owner=_text("owner"),
        kind=_choice("kind", set(KINDS)),
        error_code=_text("error_code"),
        created_after=_moment("since"),
        created_before=_moment("until"),
        search=_text("q"),
        cursor=_cursor("cursor"),
        limit=_limit(),
    )
    photos, next_cursor = services().catalog.list_photos(query)
    base = services().settings.public_base_url
    return _no_store({"photos": [summary_json(p, base) for p in photos], "next_cursor": next_cursor})


@bp.post("/photos/<photo_id>/retry")
def retry_photo(photo_id: str) -> tuple[Response, int]:
    svc = services()
    photo = svc.catalog.get_photo(photo_id) if service.is_photo_id(photo_id) else None
    if photo is None:
        raise NotFound(f"no photo {photo_id}")
    if not service.retry_photo(svc, photo_id):
        raise NotFailed(f"photo {photo_id} is {photo.status.value}; only a failed photo is retried")
    return _no_store({"id": photo_id, "status": PhotoStatus.QUEUED.value, "links": {"self": f"/v1/photos/{photo_id}"}}), 202


@bp.get("/stats")
def stats() -> Response:
    svc = services()
    now = time.time()
    counts = {status: 0 for status in sorted(_STATUSES)}
    counts.update(svc.catalog.status_counts())
    arrived, finished = svc.catalog.activity(console.minute_start(now) - 59 * 60)
    in_flight = counts[PhotoStatus.QUEUED.value] + counts[PhotoStatus.PROCESSING.value]
    try:
        queues: dict[str, int] | None = svc.queue.depths()
    except MediaPipelineError:
        queues = None  # the broker's own count is a nice-to-have; readiness says when it is down
    return _no_store({
        "generated_at": rfc3339(now),
        "photos": counts,
        "failures": [{"code": code, "count": n} for code, n in svc.catalog.failure_counts()],
        "stuck": svc.catalog.stuck_count(now - svc.settings.stuck_after_seconds),
        "queues": queues,
        "last_check": _last_check(svc),
        "last_hour": [{"minute": rfc3339(m.minute), "arrived": m.arrived, "finished": m.finished, "queue_depth": m.queue_depth}
                      for m in console.queue_depth_series(now, in_flight, arrived, finished)],
    })


def _last_check(svc: Any) -> dict[str, Any] | None:
    found = svc.catalog.last_check()
    if found is None:
        return None
    finished_at, ok, summary = found
    return {"finished_at": rfc3339(finished_at), "ok": ok, "photos": summary.get("photos", {}), "problems": summary.get("counts", {})}


@bp.get("/duplicates")
def duplicate_clusters() -> Response:
    svc = services()
    clusters, next_cursor = svc.catalog.duplicate_clusters(_cursor("cursor"), _limit(default=20))
    ids = [c.id for c in clusters] + [copy.id for c in clusters for copy in c.copies]
    found = svc.catalog.photo_summaries(ids)
    base = svc.settings.public_base_url
    return _no_store({
        "clusters": [{"photo": summary_json(found[c.id], base),
                      "copies": [copy_json(copy, found[copy.id], base) for copy in c.copies if copy.id in found]}
                     for c in clusters if c.id in found],
        "next_cursor": next_cursor,
    })


@bp.get("/jobs")
def jobs() -> Response:
    svc = services()
    now = time.time()
    body = []
    for job in svc.catalog.list_jobs(_limit(default=20)):
        report = svc.catalog.job_report(job.id)
        progress = console.job_progress(job, report, now)
        body.append({
            "id": job.id, "kind": "reprocess", "status": job.status, "selection": job.selection.to_dict(),
            "target_version": job.target_version, "created_at": rfc3339(job.created_at),
            "finished_at": rfc3339(job.finished_at) if job.finished_at else None,
            "total": progress.total, "finished": progress.finished, "progress": round(progress.fraction, 4),
            "per_second": None if progress.per_second is None else round(progress.per_second, 2),
            "eta_seconds": None if progress.eta_seconds is None else round(progress.eta_seconds),
            "report": {"outcomes": report.counts, "bytes_written": report.bytes_written, "bytes_deleted": report.bytes_deleted,
                       "failures": [{"id": pid, "code": code} for pid, code in report.failures]},
        })
    return _no_store({"jobs": body})


def summary_json(photo: PhotoSummary, base_url: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": photo.id, "status": photo.status, "owner": photo.owner, "created_at": rfc3339(photo.created_at),
        "original": {"format": photo.original_format, "width": photo.original_width, "height": photo.original_height},
        "placeholder": ({"blurhash": photo.placeholder.blurhash, "dominant_color": photo.placeholder.dominant_color}
                        if photo.placeholder else None),
        # The negotiated URL of the smallest whole-picture rendition: the browser's Accept picks the format.
        "thumbnail": f"{base_url}/i/{photo.id}/{photo.thumbnail_width}" if photo.thumbnail_width and photo.status == "ready" else None,
        "kinds": list(photo.kinds),
        "links": {"self": f"/v1/photos/{photo.id}"},
    }
    if photo.status == PhotoStatus.FAILED.value:
        body["error"] = {"code": photo.error_code, "message": photo.error_message}
    return body


def copy_json(copy: DuplicateCopy, photo: PhotoSummary, base_url: str) -> dict[str, Any]:
    return {"photo": summary_json(photo, base_url), "kind": copy.kind, "distance": copy.distance, "inliers": copy.inliers,
            "transform": copy.transform}


# --------------------------------------------------------------------------- query parameters
def _text(name: str) -> str | None:
    value = request.args.get(name)
    if value is None:
        return None
    if not 1 <= len(value) <= _MAX_TEXT or not value.isprintable():
        raise BadQuery(f"{name} must be 1 to {_MAX_TEXT} printable characters (leave it out for any)")
    return value


def _choice(name: str, allowed: set[str]) -> str | None:
    value = _text(name)
    if value is not None and value not in allowed:
        raise BadQuery(f"{name} must be one of {', '.join(sorted(allowed))}")
    return value


def _cursor(name: str) -> str | None:
    value = _text(name)
    if value is not None and not service.is_photo_id(value):
        raise BadQuery(f"{name} must be the next_cursor of a previous page")
    return value


def _moment(name: str) -> float | None:
    value = _text(name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadQuery(f"{name} must be an RFC 3339 time with its offset, e.g. 2026-12-03T09:00:00Z") from None
    if moment.tzinfo is None:
        raise BadQuery(f"{name} needs a UTC offset (Z or +hh:mm)")
    return moment.timestamp()


def _limit(default: int = 50) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return default
    if not raw.isdecimal() or not 1 <= int(raw) <= MAX_PAGE:
        raise BadQuery(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def _no_store(body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response
