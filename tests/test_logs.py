"""JSON logs: every line a worker writes parses as JSON, and lines about a photo carry its id."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from typing import Any, Callable

import pytest

from config.settings import Settings
from media_pipeline import logs
from media_pipeline.service import build_services
from tests import images
from tests.conftest import ingest_bytes, wait_for_status
from workers.celery_app import make_queue


def test_json_formatter_adds_the_current_photo_and_extras() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.PhotoIdFilter())
    logger = logging.getLogger("test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with logs.photo_context("01abc"):
            logger.info("rendered %d outputs", 15, extra={"format": "avif"})
        logger.warning("no photo here")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "rendered 15 outputs" and first["photo_id"] == "01abc" and first["format"] == "avif"
    assert first["level"] == "info" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"]), first["ts"]
    assert "photo_id" not in second
    assert "ValueError: boom" in third["exception"]


@pytest.mark.slow
def test_a_worker_in_json_mode_writes_only_json_with_photo_ids(settings: Settings, start_worker: Callable[..., Any]) -> None:
    settings = settings.replace(log_format="json")
    worker = start_worker(settings)
    services = build_services(settings, queue=make_queue(settings))
    photo_id = ingest_bytes(services, images.jpeg(images.scene(500, 400)))
    assert wait_for_status(services.catalog, photo_id).status.value == "ready"
    # The photo is ready in the catalog before Celery logs the task's end: wait for that line too.
    deadline = time.monotonic() + 30
    while True:
        text = worker.log.read_text()
        lines = [line for line in text[:text.rfind("\n") + 1].splitlines() if line.strip()]  # whole lines only
        entries = [json.loads(line) for line in lines]  # every line parses
        about_it = [e for e in entries if e.get("photo_id") == photo_id]
        messages = " | ".join(e["message"] for e in about_it)
        if "succeeded" in messages or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "photo ready" in messages and "succeeded" in messages, messages
