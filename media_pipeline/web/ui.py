"""A small operator page: upload a photo, watch it process, see its renditions, placeholder,
metadata and duplicates. Plain HTML and a little JavaScript over the public v1 API."""

from __future__ import annotations

from flask import Blueprint, Response, send_from_directory

bp = Blueprint("ui", __name__, static_folder="static", static_url_path="/ui/static")


@bp.get("/ui")
def page() -> Response:
    response = send_from_directory(bp.static_folder, "ui.html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data: blob: *; style-src 'self' 'unsafe-inline'; script-src 'self'"
    )
    return response
