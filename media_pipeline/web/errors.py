"""One error handler: every failure becomes ``{"error": {"code", "message"}}`` with its status."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException

from media_pipeline import metrics
from media_pipeline.errors import MediaPipelineError, RateLimited

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_format",
    416: "range_not_satisfiable",
}


def error_response(status: int, code: str, message: str) -> Response:
    metrics.API_ERRORS.labels(code, str(status)).inc()
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def register(app: Flask) -> None:
    @app.errorhandler(MediaPipelineError)
    def _ours(exc: MediaPipelineError) -> Response:
        if exc.http_status >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        response = error_response(exc.http_status, exc.code, exc.message)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = f"the upload is larger than {current_app.extensions['media_pipeline'].settings.max_upload_bytes} bytes"
        response = error_response(status, _HTTP_CODES.get(status, exc.name.lower().replace(" ", "_")), message)
        for name, value in exc.get_headers():  # e.g. the Allow of a 405, which RFC 9110 requires
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal", "internal error")
