"""An owner's choice to be shown or not: ``PUT /v1/owners/<owner>/visibility`` ``{"visible": false}``
hides every photo of theirs (every image URL answers 404 with ``no-store`` from the next request
on); ``{"visible": true}`` shows them again, unchanged (visibility.py)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from media_pipeline import visibility
from media_pipeline.errors import BadVisibility
from media_pipeline.service import Services
from media_pipeline.timestamps import rfc3339
from media_pipeline.web.photos import valid_owner

bp = Blueprint("owners", __name__, url_prefix="/v1")


def services() -> Services:
    return current_app.extensions["media_pipeline"]


@bp.put("/owners/<path:owner>/visibility")
def set_visibility(owner: str) -> Response:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or set(body) != {"visible"} or not isinstance(body["visible"], bool):
        raise BadVisibility('send {"visible": true} or {"visible": false}')
    owner = valid_owner(owner) or ""
    if not owner:
        raise BadVisibility("an owner is needed")
    visibility.set_owner_visible(services(), owner, body["visible"])
    return _answer(owner)


@bp.get("/owners/<path:owner>/visibility")
def get_visibility(owner: str) -> Response:
    return _answer(valid_owner(owner) or "")


def _answer(owner: str) -> Response:
    visible, updated_at = services().catalog.owner_visibility(owner)
    response = jsonify({"owner": owner, "visible": visible, "updated_at": None if updated_at is None else rfc3339(updated_at)})
    response.headers["Cache-Control"] = "no-store"
    return response
