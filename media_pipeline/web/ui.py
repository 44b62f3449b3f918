"""The operator console (docs/console.md): recent photos, failures and retries, duplicates, jobs,
health, and one photo as it processes. Plain HTML, CSS and a little JavaScript (static/) over the
v1 API and the console's endpoints (web/console.py); the page holds no data itself, so it is served
to anyone, and asks for an operator key when the endpoints want one."""

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
