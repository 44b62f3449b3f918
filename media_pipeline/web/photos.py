"""The v1 upload API, the public contract for client apps."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from media_pipeline import crop_renditions, crops, duplicates, service, visibility
from media_pipeline.errors import BadFocalPoint, BadQuery, BadVisibility, EmptyUpload, NotFound, NotReady, UploadError
from media_pipeline.framing import Point
from media_pipeline.models import OUTPUT_EXTENSIONS, POSTER_SEGMENT, Animation, Duplicate, Photo, PhotoStatus
from media_pipeline.service import Services, SpooledUpload
from media_pipeline.timestamps import rfc3339
from media_pipeline.web.access import key_name

bp = Blueprint("photos", __name__, url_prefix="/v1")

_MAX_OWNER = 128


def services() -> Services:
    return current_app.extensions["media_pipeline"]


@bp.post("/photos")
def upload_photo() -> tuple[Response, int]:
    svc = services()
    settings = svc.settings
    stream, owner = _upload_stream()
    key = _valid_idempotency_key(request.headers.get("Idempotency-Key"))
    upload = SpooledUpload.receive(stream, settings.tmp_dir, settings.max_upload_bytes)
    try:
        photo, replayed = service.ingest_idempotent(svc, upload, owner, key, client=key_name())
    finally:
        upload.close()
    return accepted(photo, replayed)


def accepted(photo: Photo, replayed: bool) -> tuple[Response, int]:
    """The 202 of an accepted upload, however it came (a POST, tus, a direct upload)."""
    body = {
        "id": photo.id,
        "status": photo.status.value,
        "sha256": photo.sha256,
        "links": {"self": url_for("photos.get_photo", photo_id=photo.id)},
    }
    if replayed:
        body["status"] = PhotoStatus.QUEUED.value  # the first answer, replayed as it was
    response = jsonify(body)
    response.headers["Location"] = body["links"]["self"]
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response, 202


@bp.post("/duplicates/search")
def search_duplicates() -> Response:
    """The photos an image would be a duplicate of, without storing anything."""
    svc = services()
    stream, owner = _upload_stream()
    upload = SpooledUpload.receive(stream, svc.settings.tmp_dir, svc.settings.max_upload_bytes)
    try:
        found, blocked = duplicates.search_duplicates(svc, upload, owner)
    finally:
        upload.close()
    response = jsonify({"duplicates": [duplicate_json(d) for d in found],
                        "blocklists": [{"list": hit.list, "distance": hit.distance} for hit in blocked]})
    response.headers["Cache-Control"] = "no-store"
    return response


def _upload_stream() -> tuple[Any, str | None]:
    """The image of a raw-body or multipart (`file`, optional `owner`) request, and its owner."""
    owner = request.headers.get("X-Owner")
    if request.mimetype == "multipart/form-data":
        part = request.files.get("file")
        owner = request.form.get("owner") or owner
        if part is None:
            raise EmptyUpload("no `file` field in the multipart form", code="missing_file")
        return part.stream, valid_owner(owner)
    return request.stream, valid_owner(owner)


def duplicate_json(duplicate: Duplicate) -> dict[str, Any]:
    return {"id": duplicate.id, "kind": duplicate.kind, "distance": duplicate.distance,
            "inliers": duplicate.inliers, "transform": duplicate.transform}


@bp.get("/photos")
def list_photos() -> Response:
    """``?external_id=…`` finds an imported photo (any API key); anything else is the operator
    console's list of every photo (an operator key: web/access.py)."""
    if "external_id" in request.args:
        return photos_by_external_id()
    from media_pipeline.web import console

    return console.list_photos()


def photos_by_external_id() -> Response:
    """``?external_id=…&owner=…``: the photo an import made from the main app's photo, as a list
    of zero or one (``owner`` absent: photos with no owner)."""
    external_id = request.args.get("external_id")
    if not external_id:
        raise BadQuery("give `external_id` (and `owner`) to find an imported photo")
    others = sorted(set(request.args) - {"external_id", "owner"})
    if others:
        raise BadQuery(f"`external_id` finds one imported photo and takes only `owner`, not {', '.join(others)}")
    owner = request.args.get("owner")
    if len(external_id) > 256 or (owner is not None and len(owner) > _MAX_OWNER):
        raise BadQuery("`external_id` is at most 256 characters, `owner` at most 128")
    svc = services()
    found = svc.catalog.photo_by_external_id(owner, external_id)
    photo = svc.catalog.get_photo(found[0]) if found else None
    response = jsonify({"photos": [photo_json(photo, svc.settings.public_base_url)] if photo else [], "next_cursor": None})
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/photos/<photo_id>")
def get_photo(photo_id: str) -> Response:
    photo = _find(photo_id)
    response = jsonify(photo_json(photo, services().settings.public_base_url))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.patch("/photos/<photo_id>")
def patch_photo(photo_id: str) -> tuple[Response, int]:
    """``{"focal_point": {"x", "y"} | null}`` (0..1 of the upright picture; its crops are made
    again: 202) and/or ``{"visible": true | false}`` (its image URLs answer 404 while false)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not body or set(body) - {"focal_point", "visible"}:
        raise BadFocalPoint('send a JSON object with "focal_point": {"x": 0..1, "y": 0..1} or null, and/or "visible": true or false')
    point = _focal_point(body["focal_point"]) if "focal_point" in body else None
    if "visible" in body and not isinstance(body["visible"], bool):
        raise BadVisibility('"visible" must be true or false')
    photo = _find(photo_id)
    svc = services()
    if "focal_point" in body and (photo.status is not PhotoStatus.READY or not crop_renditions.set_focal_point(svc, photo, point)):
        raise NotReady(f"photo {photo_id} is {photo.status.value}; a focal point can be set once it is ready")
    if "visible" in body:
        visibility.set_photo_visible(svc, photo, body["visible"])
    response = jsonify(photo_json(_find(photo_id), svc.settings.public_base_url))
    response.headers["Cache-Control"] = "no-store"
    return response, 202 if "focal_point" in body else 200


def _focal_point(value: Any) -> Point | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"x", "y"}:
        raise BadFocalPoint('"focal_point" must be {"x": 0..1, "y": 0..1} or null')
    x, y = value["x"], value["y"]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1 for v in (x, y)):
        raise BadFocalPoint('"x" and "y" must be numbers from 0 to 1')
    return Point(float(x), float(y))


@bp.delete("/photos/<photo_id>")
def delete_photo(photo_id: str) -> tuple[str, int]:
    if not service.is_photo_id(photo_id) or not service.delete_photo(services(), photo_id):
        raise NotFound(f"no photo {photo_id}")
    return "", 204


def _find(photo_id: str) -> Photo:
    photo = services().catalog.get_photo(photo_id) if service.is_photo_id(photo_id) else None
    if photo is None:
        raise NotFound(f"no photo {photo_id}")
    return photo


def _valid_idempotency_key(key: str | None) -> str | None:
    if key is None or key == "":
        return None
    if len(key) > 128 or not key.isprintable():
        raise UploadError("Idempotency-Key must be at most 128 printable characters", code="bad_idempotency_key")
    return key


def valid_owner(owner: str | None) -> str | None:
    if owner is None or owner == "":
        return None
    if len(owner) > _MAX_OWNER or not owner.isprintable():
        raise UploadError(f"owner must be at most {_MAX_OWNER} printable characters", code="bad_owner")
    return owner


def rendition_url(base: str, photo_id: str, spec: str, width: int, fmt: str) -> str:
    return f"{base}/i/{photo_id}/{spec}/{width}.{OUTPUT_EXTENSIONS[fmt]}"


def stable_url(base: str, photo_id: str, aspect: str, width: int, fmt: str, poster: bool = False) -> str:
    """The URL that follows the photo's current rendition: ``/i/<id>/<w>.<ext>`` for the whole
    picture, ``/i/<id>/<A>x<B>/<w>.<ext>`` for a crop, ``/i/<id>/poster/<w>.<ext>`` for the still
    of an animated photo (whose plain stable URL answers with the animation)."""
    segment = f"{POSTER_SEGMENT}/" if poster else "" if aspect == "original" else f"{crops.aspect_path(aspect)}/"
    return f"{base}/i/{photo_id}/{segment}{width}.{OUTPUT_EXTENSIONS[fmt]}"


def _srcsets(renditions: list[dict[str, Any]]) -> dict[str, str]:
    """Per format, what a browser should show: the animation where the format has one."""
    moving = {r["format"] for r in renditions if r["animated"]}
    by_width = sorted((r for r in renditions if r["animated"] or r["format"] not in moving), key=lambda r: r["width"])
    return {fmt: ", ".join(f"{r['url']} {r['width']}w" for r in by_width if r["format"] == fmt)
            for fmt in sorted({r["format"] for r in renditions})}


def animation_json(animation: Animation) -> dict[str, Any]:
    """``animated``, ``frames`` and ``duration_ms`` of the original; for an animation, whether its
    renditions move and, if not, why (the limit it passes)."""
    body: dict[str, Any] = {"animated": animation.animated, "frames": animation.frames, "duration_ms": animation.duration_ms}
    if animation.animated:
        body["animation"] = {"kept": animation.kept, "reason": animation.dropped}
    return body


def photo_json(photo: Photo, base_url: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": photo.id,
        "status": photo.status.value,
        "owner": photo.owner,
        "external_id": photo.external_id,
        "sha256": photo.sha256,
        "created_at": rfc3339(photo.created_at),
        # False while the photo or its owner is hidden: its image URLs answer 404.
        "visible": photo.visible,
        "hidden_by": "photo" if photo.hidden else "owner" if photo.owner_hidden else None,
        "links": {"self": f"/v1/photos/{photo.id}"},
        "original": {
            "format": photo.original_format,
            "width": photo.original_width,
            "height": photo.original_height,
            "bytes": photo.original_bytes,
            **animation_json(photo.animation),
            "hdr": photo.original_hdr,
        },
    }
    if photo.status is PhotoStatus.READY:
        metadata = photo.metadata.to_dict() if photo.metadata else None
        body["metadata"] = metadata
        body["preset_version"] = photo.preset_version
        body["renditions"] = [
            {
                "aspect": r.aspect,
                "width": r.width,
                "height": r.height,
                "format": r.format,
                "bytes": r.bytes,
                "quality": r.quality,
                "score": None if r.score is None else round(r.score, 2),
                "animated": r.animated,
                "gamut": r.gamut,
                "hdr": r.hdr,
                "url": rendition_url(base_url, photo.id, r.spec, r.width, r.format),
                "stable_url": stable_url(base_url, photo.id, r.aspect, r.width, r.format,
                                         poster=photo.animation.kept and r.aspect == "original" and not r.animated),
            }
            for r in photo.renditions
        ]
        # Ready-made srcset strings per format (immutable URLs) of the whole picture, the same per
        # aspect for crops, and one negotiated URL per width.
        originals = [r for r in body["renditions"] if r["aspect"] == "original"]
        body["srcset"] = _srcsets(originals)
        body["crops"] = {
            aspect: {"srcset": _srcsets([r for r in body["renditions"] if r["aspect"] == aspect]),
                     "negotiated": f"{base_url}/i/{photo.id}/{crops.aspect_path(aspect)}/{{width}}"}
            for aspect in sorted({r.aspect for r in photo.renditions} - {"original"})
        }
        body["focus"] = photo.focus.to_dict() if photo.focus else None
        body["links"]["negotiated"] = f"{base_url}/i/{photo.id}/{{width}}"
        body["placeholder"] = (
            {"blurhash": photo.placeholder.blurhash, "dominant_color": photo.placeholder.dominant_color}
            if photo.placeholder
            else None
        )
        body["hashes"] = (
            {"phash": photo.hashes.phash, "dhash": photo.hashes.dhash, "pdq": photo.hashes.pdq, "pdq_quality": photo.hashes.pdq_quality}
            if photo.hashes else None
        )
        body["hash_quality"] = (
            {"score": round(photo.hash_quality.score, 1), "near_matching": photo.hash_quality.matched}
            if photo.hash_quality else None
        )
        body["duplicates"] = [duplicate_json(d) for d in photo.duplicates]
    if photo.status is PhotoStatus.FAILED:
        body["error"] = {"code": photo.error_code, "message": photo.error_message}
    return body
