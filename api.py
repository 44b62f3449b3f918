"""WSGI entry point: ``gunicorn api:app``. Settings come from ``MP_*`` environment variables."""

from media_pipeline.web import create_app

app = create_app()
