"""Flask app factory: ``create_app(settings)``; blueprints for the v1 API, image serving and health."""

from __future__ import annotations

from flask import Flask

from config.settings import Settings
from media_pipeline import logs
from media_pipeline.queue import TaskQueue
from media_pipeline.service import Services, build_services


def create_app(settings: Settings | None = None, services: Services | None = None, queue: TaskQueue | None = None) -> Flask:
    """The app on ``services``, or on services built for ``settings`` with ``queue``, the task-queue
    adapter the entry point chose (api.py and ``media-pipeline api`` hand in Celery's)."""
    settings = settings or (services.settings if services else Settings.from_env())
    logs.configure(settings.log_level, settings.log_format)
    if services is None:
        if queue is None:
            raise TypeError("create_app needs services, or a queue to build them with")
        services = build_services(settings, queue)
    app = Flask("media_pipeline")
    # Headroom over the file limit for multipart framing; the file itself is counted exactly.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + 1_000_000
    app.config["MAX_FORM_MEMORY_SIZE"] = 1_000_000  # text fields; also bounds the parser's buffer
    app.extensions["media_pipeline"] = services

    from media_pipeline.web import access, errors, fastpath, health, images, metrics, openapi, owners, photos, tus, ui, uploads

    errors.register(app)
    access.register(app, settings)
    metrics.register(app)
    app.register_blueprint(photos.bp)
    app.register_blueprint(owners.bp)
    app.register_blueprint(tus.bp)
    app.register_blueprint(uploads.bp)
    app.register_blueprint(images.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(ui.bp)
    app.register_blueprint(openapi.bp)
    app.wsgi_app = fastpath.ImmutableRenditions(app.wsgi_app, services)  # type: ignore[method-assign]
    return app
