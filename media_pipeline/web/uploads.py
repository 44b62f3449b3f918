"""Direct uploads (``media_pipeline/direct_uploads.py``): a target to send the file to, the
local target itself, and the completion that makes the photo."""

from __future__ import annotations

import time
from dataclasses import asdict

from flask import Blueprint, Response, jsonify, request, url_for

from media_pipeline import direct_uploads
from media_pipeline.errors import UploadError
from media_pipeline.timestamps import rfc3339
from media_pipeline.web.access import key_name
from media_pipeline.web.photos import accepted, services

bp = Blueprint("uploads", __name__, url_prefix="/v1/uploads")

_MAX_OWNER = 128


@bp.post("")
def create_target() -> tuple[Response, int]:
    given = [request.headers.get("X-Owner")]
    if request.is_json:
        document = request.get_json(silent=True)
        if not isinstance(document, dict) or ("owner" in document and not isinstance(document["owner"], str)):
            raise UploadError("the body must be a JSON object with a string owner, e.g. {\"owner\": \"alice\"}", code="bad_request")
        given.insert(0, document.get("owner"))
    for value in given:
        if value is not None and (not isinstance(value, str) or len(value) > _MAX_OWNER):
            raise UploadError(f"owner must be a string of at most {_MAX_OWNER} characters", code="bad_owner")
    owner = next((value for value in given if value), None)
    local = url_for("uploads.receive_body", upload_id="UPLOAD", token="TOKEN").replace("UPLOAD", "{id}").replace("TOKEN", "{token}")
    target = direct_uploads.create_target(services(), owner, local, time.time())
    body = asdict(target) | {"expires_at": rfc3339(target.expires_at),
                             "complete": url_for("uploads.complete", upload_id=target.id)}
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, 201


@bp.put("/<upload_id>/body")
def receive_body(upload_id: str) -> tuple[str, int]:
    """The local target: authenticated by its one-time token, not an API key (it is handed to the
    client like a presigned URL)."""
    direct_uploads.receive_body(services(), upload_id, request.args.get("token", ""), request.stream, time.time())
    return "", 204


@bp.post("/<upload_id>/complete")
def complete(upload_id: str) -> tuple[Response, int]:
    photo, replayed = direct_uploads.complete(services(), upload_id, time.time(), key_name())
    return accepted(photo, replayed)
