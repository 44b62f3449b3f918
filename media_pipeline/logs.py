"""Logging for every process: text for people, or one JSON object a line for machines
(``MP_LOG_FORMAT=json``). The photo being worked on is held in a context variable and added to
every record, including those of libraries (Celery, libvips) logged while it is current."""

from __future__ import annotations

import contextvars
import json
import logging
from contextlib import contextmanager
from typing import Any, Iterator

from media_pipeline.timestamps import rfc3339

current_photo_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_photo_id", default=None)

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


@contextmanager
def photo_context(photo_id: str) -> Iterator[None]:
    token = current_photo_id.set(photo_id)
    try:
        yield
    finally:
        current_photo_id.reset(token)


class PhotoIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "photo_id", None) is None:
            record.photo_id = current_photo_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                entry[key] = value if isinstance(value, (str, int, float, bool, list, dict)) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        photo_id = getattr(record, "photo_id", None)
        return f"{line} photo_id={photo_id}" if photo_id else line


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure(level: str, fmt: str) -> None:
    """Replace the root logger's handlers with one on stderr in the chosen format."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    handler.addFilter(PhotoIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # warnings.warn() lines come through the same handler


def gunicorn_logconfig(level: str, fmt: str) -> dict[str, Any]:
    """gunicorn's error and access logs through the same formatter."""
    factory = "media_pipeline.logs.formatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": {"()": factory, "fmt": fmt}},
        "filters": {"photo": {"()": "media_pipeline.logs.PhotoIdFilter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "main", "filters": ["photo"]}},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }
