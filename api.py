"""WSGI entry point: ``gunicorn api:app``. Settings come from ``MP_*`` environment variables."""

from config.settings import Settings
from media_pipeline.web import create_app
from workers.celery_app import make_queue

settings = Settings.from_env()
app = create_app(settings, queue=make_queue(settings))
