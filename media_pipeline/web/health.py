"""Liveness and readiness."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from media_pipeline.errors import MediaPipelineError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    svc = current_app.extensions["media_pipeline"]
    checks: dict[str, str] = {}
    for name, check in (("storage", svc.storage.check), ("catalog", svc.catalog.check), ("queue", svc.queue.check)):
        try:
            check()
            checks[name] = "ok"
        except MediaPipelineError as exc:
            checks[name] = exc.message
    ready = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ready" if ready else "unavailable", "checks": checks}), 200 if ready else 503
