"""Prometheus metrics: what the API and the pipeline count, /metrics behind the API keys, and the
per-process files of multiprocess mode folded without losing a count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from media_pipeline import metrics, service
from tests import images
from tests.conftest import REPO
from tests.test_serve import metric_samples


def scrape(client: Any, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    return metric_samples(response.get_data(as_text=True))


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_uploads_rejects_steps_and_bytes_are_counted(client: Any, services: Any) -> None:
    before = scrape(client)
    data = images.jpeg(images.scene(640, 480))
    accepted = client.post("/v1/photos", data=data, headers={"Idempotency-Key": "metrics-1"})
    replayed = client.post("/v1/photos", data=data, headers={"Idempotency-Key": "metrics-1"})
    rejected = client.post("/v1/photos", data=b"not an image at all")
    assert (accepted.status_code, replayed.status_code, rejected.status_code) == (202, 202, 415)
    in_flight = scrape(client)
    assert value(in_flight, "mp_photos_in_flight", status="queued") == 1
    assert value(in_flight, "mp_queue_depth", queue="photos") == 1
    service.process_photo(services, accepted.json["id"])
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mp_uploads_total", outcome="accepted") == 1
    assert delta("mp_uploads_total", outcome="replayed") == 1
    assert delta("mp_uploads_total", outcome="rejected") == 1
    assert delta("mp_api_errors_total", code="unsupported_format", status="415") == 1
    assert delta("mp_bytes_written_total", kind="original") == len(data)
    photo = services.catalog.get_photo(accepted.json["id"])
    assert delta("mp_bytes_written_total", kind="rendition") == sum(r.bytes for r in photo.renditions)
    for step in ("fetch_original", "decode_resize", "describe", "duplicates", "focus", "record"):
        assert delta("mp_step_seconds_count", step=step) == 1, step
    # One more per loop (whole picture, crops): the last next() ends it.
    assert delta("mp_step_seconds_count", step="encode") == len(photo.renditions) + 2
    assert delta("mp_step_seconds_count", step="store") == len(photo.renditions)
    assert value(after, "mp_photos_in_flight", status="queued") == 0
    assert delta("mp_http_requests_total", route="/v1/photos", method="POST", status="202") == 2


def test_failures_are_counted_by_code(client: Any, services: Any) -> None:
    before = scrape(client)
    data = images.jpeg(images.scene(900, 600))
    photo_id = client.post("/v1/photos", data=data[: len(data) // 2]).json["id"]  # the header passes, the pixels do not
    service.process_photo(services, photo_id)
    assert services.catalog.get_photo(photo_id).error_code == "corrupt_image"
    after = scrape(client)
    assert value(after, "mp_photo_failures_total", code="corrupt_image") - value(before, "mp_photo_failures_total", code="corrupt_image") == 1


def test_metrics_need_an_api_key_when_keys_are_configured(settings: Any) -> None:
    from media_pipeline.apikeys import hash_key
    from media_pipeline.queue import RecordingQueue
    from media_pipeline.web import create_app

    app = create_app(settings.replace(api_keys=f"prometheus:{hash_key('scrape-key')}"), queue=RecordingQueue())
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert "mp_uploads_total" in client.get("/metrics", headers={"Authorization": "Bearer scrape-key"}).get_data(as_text=True)


COUNTING_PROCESS = """
import sys
from media_pipeline import metrics
metrics.UPLOADS.labels("accepted").inc(int(sys.argv[1]))
metrics.STEP_SECONDS.labels("encode").observe(0.2)
"""


def test_counts_of_exited_processes_are_folded_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()

    def run(count: int) -> None:
        subprocess.run([sys.executable, "-c", COUNTING_PROCESS, str(count)], check=True, cwd=REPO,
                       env={"PROMETHEUS_MULTIPROC_DIR": str(folder), "PATH": "/usr/bin:/bin"})

    def totals() -> tuple[float, float]:
        samples = metric_samples(metrics.exposition(folder, metrics.StateCollector(dict, dict)).decode())
        return value(samples, "mp_uploads_total", outcome="accepted"), value(samples, "mp_step_seconds_count", step="encode")

    run(2)
    run(3)
    assert len(list(folder.glob("counter_*.db"))) == 2  # one file per process
    assert totals() == (5, 2)  # the scrape folds both exited processes' files
    assert sorted(p.name for p in folder.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]
    run(4)
    assert totals() == (9, 3)
    assert totals() == (9, 3)  # folding twice counts nothing twice
    assert metrics.fold_exited(folder) == 0
