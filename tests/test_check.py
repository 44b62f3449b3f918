"""`media-pipeline check`: every way the catalog and storage can disagree is found and named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from media_pipeline import service
from media_pipeline.check import check
from tests import images
from tests.conftest import REPO, ingest_bytes


def ready(services: Any, seed: int) -> str:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(400, 300, seed=seed)))
    service.process_photo(services, photo_id)
    return photo_id


def test_a_consistent_store_passes(services: Any) -> None:
    ready(services, 1)
    ready(services, 2)
    ingest_bytes(services, images.jpeg(images.scene(200, 100)))  # just queued: fine
    report = check(services)
    assert report.ok and report.photos == {"ready": 2, "queued": 1}


def test_every_kind_of_disagreement_is_reported(services: Any) -> None:
    a, b, c = ready(services, 1), ready(services, 2), ready(services, 3)
    queued = ingest_bytes(services, images.jpeg(images.scene(200, 100)))
    services.storage.delete(f"originals/{a}")
    lost = services.catalog.get_photo(b).renditions[0].key
    services.storage.delete(lost)
    stray = f"renditions/{c}/zzzzzz/1.webp"
    services.storage.put(stray, b"x", "image/webp")
    orphan_id = service.new_photo_id()
    services.storage.put(f"originals/{orphan_id}", b"x", "image/jpeg")
    services.storage.put(f"renditions/{orphan_id}/s/320.jpg", b"x", "image/jpeg")
    report = check(services, now=time.time() + services.settings.stuck_after_seconds + 1)
    assert report.counts == {
        "catalog_row_without_original": 1,
        "rendition_missing_from_storage": 1,
        "rendition_without_catalog_row": 1,
        "original_without_catalog_row": 1,
        "renditions_of_unknown_photo": 1,
        "stuck_queued_or_processing": 1,
    }
    assert report.problems["catalog_row_without_original"] == [a]
    assert report.problems["rendition_missing_from_storage"] == [lost]
    assert report.problems["rendition_without_catalog_row"] == [stray]
    assert report.problems["original_without_catalog_row"] == [f"originals/{orphan_id}"]
    assert report.problems["stuck_queued_or_processing"] == [queued]


def test_the_command_exits_1_and_prints_json(services: Any) -> None:
    photo_id = ready(services, 4)
    env = {**os.environ, **services.settings.as_env()}
    done = subprocess.run([sys.executable, "-m", "media_pipeline.cli", "check", "--json"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout)["ok"] is True
    services.storage.delete(f"originals/{photo_id}")
    done = subprocess.run([sys.executable, "-m", "media_pipeline.cli", "check", "--json"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    body = json.loads(done.stdout)
    assert done.returncode == 1 and body["counts"] == {"catalog_row_without_original": 1}
