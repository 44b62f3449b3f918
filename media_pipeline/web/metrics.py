"""``/metrics`` for Prometheus, and the request hooks that count what the API answers."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, g, request

from media_pipeline import metrics, webhooks
from media_pipeline.web.access import METRICS_PATH
from media_pipeline.web.photos import services

bp = Blueprint("metrics", __name__)
UPLOAD_ENDPOINT = "photos.upload_photo"


@bp.get(METRICS_PATH)
def scrape() -> Response:
    svc = services()
    urls = svc.settings.webhook_receivers
    state = metrics.StateCollector(svc.queue.depths, svc.catalog.in_flight,
                                   svc.catalog.count_deliveries if urls else None,
                                   (lambda: webhooks.undelivered_age(svc)) if urls else None)
    folder = svc.settings.metrics_folder if metrics.multiprocess() else None
    response = Response(metrics.exposition(folder, state), content_type=metrics.CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _count(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    metrics.HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        metrics.HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)
    if request.endpoint == UPLOAD_ENDPOINT:  # matched before the access hooks run, so 401s count too
        if response.status_code != 202:
            outcome = "rejected"
        elif response.headers.get("Idempotent-Replayed") == "true":
            outcome = "replayed"
        else:
            outcome = "accepted"
        metrics.UPLOADS.labels(outcome).inc()
    return response


def register(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_count)
    app.register_blueprint(bp)
