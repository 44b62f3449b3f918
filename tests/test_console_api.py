"""The operator console's JSON endpoints on the real app: what an operator asked with SQL and curl
before (what came in, what failed and why, which photos repeat which, how far a job is), the
retry of a failed photo, and who may ask (an operator key, never a client app's)."""

from __future__ import annotations

from typing import Any

import jsonschema
import numpy as np

from media_pipeline import reprocess, service
from media_pipeline.apikeys import hash_key
from media_pipeline.jobs import Selection
from media_pipeline.web import create_app
from tests import images
from tests.conftest import ingest_bytes

OPERATOR, APP = "mpk_ops-0123456789abcdef", "mpk_ios-0123456789abcdef"


def validate(client: Any, schema: str, body: Any) -> None:
    doc = client.get("/openapi.json").get_json()
    jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": doc["components"]},
                                    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(body)


def ready_photo(services: Any, data: bytes, owner: str | None = None) -> str:
    photo_id = ingest_bytes(services, data, owner)
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    return photo_id


def test_recent_photos_filter_search_and_page(client: Any, services: Any) -> None:
    picture = images.scene(640, 480, seed=5)
    first = ready_photo(services, images.jpeg(picture), "alice")
    mirrored = ready_photo(services, images.jpeg(np.ascontiguousarray(picture[:, ::-1])), "bob")
    other = ready_photo(services, images.jpeg(images.scene(640, 480, seed=9)), "alice")
    broken_bytes = images.jpeg(images.scene(500, 400))
    broken = ingest_bytes(services, broken_bytes[: len(broken_bytes) // 2], "bob")
    service.process_photo(services, broken)

    everything = client.get("/v1/photos").get_json()
    validate(client, "PhotoPage", everything)
    assert [p["id"] for p in everything["photos"]] == [broken, other, mirrored, first]
    assert everything["next_cursor"] is None
    newest = everything["photos"][1]
    assert newest["thumbnail"].endswith(f"/i/{other}/320") and newest["placeholder"]["blurhash"]
    assert client.get(newest["thumbnail"], headers={"Accept": "image/avif,image/webp,*/*"}).headers["Content-Type"] == "image/avif"

    failed = client.get("/v1/photos?status=failed").get_json()["photos"]
    assert [(p["id"], p["error"]["code"]) for p in failed] == [(broken, "corrupt_image")]
    assert [p["id"] for p in client.get("/v1/photos?owner=alice").get_json()["photos"]] == [other, first]
    dups = client.get("/v1/photos?kind=duplicate").get_json()["photos"]
    assert [p["id"] for p in dups] == [mirrored, first] and all(p["kinds"] == ["duplicate"] for p in dups)
    assert [p["id"] for p in client.get(f"/v1/photos?q={other}").get_json()["photos"]] == [other]
    sha = services.catalog.get_photo(first).sha256
    assert [p["id"] for p in client.get(f"/v1/photos?q={sha}").get_json()["photos"]] == [first]

    page = client.get("/v1/photos?limit=3").get_json()
    rest = client.get(f"/v1/photos?limit=3&cursor={page['next_cursor']}").get_json()
    assert [p["id"] for p in page["photos"] + rest["photos"]] == [broken, other, mirrored, first] and rest["next_cursor"] is None
    created = services.catalog.get_photo(mirrored).created_at
    from media_pipeline.timestamps import rfc3339

    window = client.get("/v1/photos", query_string={"since": rfc3339(created), "until": rfc3339(created + 0.001)}).get_json()
    assert [p["id"] for p in window["photos"]] == [mirrored]

    for bad in ("status=lost", "kind=panorama", "cursor=nope", "limit=0", "limit=500", "since=yesterday", "since=2026-12-03T09:00:00",
                "owner="):
        answer = client.get(f"/v1/photos?{bad}")
        assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "bad_query", bad


def test_stats_duplicates_and_jobs(client: Any, services: Any) -> None:
    picture = images.scene(640, 480, seed=5)
    first = ready_photo(services, images.jpeg(picture))
    copy = ready_photo(services, images.jpeg(np.ascontiguousarray(picture[:, ::-1])))
    waiting = ingest_bytes(services, images.jpeg(images.scene(300, 200, seed=2)))
    service.abandon(services, ingest_bytes(services, images.jpeg(images.scene(300, 200, seed=3))), 3)

    stats = client.get("/v1/stats").get_json()
    validate(client, "Stats", stats)
    assert stats["photos"] == {"queued": 1, "processing": 0, "ready": 2, "failed": 1}
    assert stats["failures"] == [{"code": "abandoned", "count": 1}]
    minutes = stats["last_hour"]
    assert sum(m["arrived"] for m in minutes) == 4 and sum(m["finished"] for m in minutes) == 3
    assert minutes[-1]["queue_depth"] == 1  # `waiting`, still queued
    assert stats["queues"] == {"photos": 4, "reprocess": 0}  # the recording queue keeps every message sent
    assert waiting

    clusters = client.get("/v1/duplicates").get_json()
    validate(client, "DuplicateClusterPage", clusters)
    [cluster] = clusters["clusters"]
    assert cluster["photo"]["id"] == first
    [found] = cluster["copies"]
    assert found["photo"]["id"] == copy and found["kind"] == "near" and "mirror" in found["transform"]

    job = reprocess.start_job(services, Selection(mode="all"))
    reprocess.enqueue(services, job)
    jobs = client.get("/v1/jobs").get_json()
    validate(client, "Jobs", jobs)
    [listed] = jobs["jobs"]
    assert (listed["id"], listed["total"], listed["finished"], listed["progress"]) == (job.id, 4, 0, 0)
    for photo_id in (first, copy):
        reprocess.reprocess_one(services, job, photo_id)
    listed = client.get("/v1/jobs").get_json()["jobs"][0]
    assert (listed["finished"], listed["progress"]) == (2, 0.5)
    assert listed["report"]["outcomes"] == {"pending": 2, "up_to_date": 2}
    assert listed["per_second"] > 0 and listed["eta_seconds"] is not None


def test_health_shows_what_the_last_check_found(client: Any, services: Any, monkeypatch: Any, capsys: Any) -> None:
    from media_pipeline.cli import main

    assert client.get("/v1/stats").get_json()["last_check"] is None  # no run yet
    photo_id = ready_photo(services, images.jpeg(images.scene(400, 300, seed=9)))
    for name, value in services.settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["check"]) == 0
    run = client.get("/v1/stats").get_json()["last_check"]
    assert run["ok"] is True and run["photos"] == {"ready": 1} and run["problems"] == {}
    services.storage.delete(services.catalog.get_photo(photo_id).original_key)  # an incident
    assert main(["check"]) == 1
    stats = client.get("/v1/stats").get_json()
    validate(client, "Stats", stats)
    assert stats["last_check"]["ok"] is False and stats["last_check"]["problems"] == {"catalog_row_without_original": 1}
    assert stats["last_check"]["finished_at"] > run["finished_at"]
    capsys.readouterr()


def test_retry_queues_a_failed_photo_again_until_it_is_ready(client: Any, services: Any, queue: Any) -> None:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(640, 480, seed=4)))
    service.abandon(services, photo_id, 3)  # as the reconciler does after three dead workers
    queue.enqueued.clear()
    answer = client.post(f"/v1/photos/{photo_id}/retry")
    assert answer.status_code == 202
    validate(client, "Retried", answer.get_json())
    assert queue.enqueued == [photo_id]
    assert client.get(f"/v1/photos/{photo_id}").get_json()["status"] == "queued"
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    assert client.get(f"/v1/photos/{photo_id}").get_json()["status"] == "ready"
    again = client.post(f"/v1/photos/{photo_id}/retry")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "not_failed"
    assert client.post(f"/v1/photos/{service.new_photo_id()}/retry").status_code == 404
    assert queue.enqueued == [photo_id]


def test_the_console_needs_an_operator_key_once_keys_are_configured(services: Any) -> None:
    services.settings = services.settings.replace(api_keys=f"ios:{hash_key(APP)}", operator_keys=f"ops:{hash_key(OPERATOR)}")
    client = create_app(services.settings, services).test_client()
    photo_id = ready_photo(services, images.jpeg(images.scene(400, 300)))
    service.abandon(services, photo_id, 3)
    for method, path in (("get", "/v1/photos"), ("get", "/v1/stats"), ("get", "/v1/duplicates"), ("get", "/v1/jobs"),
                         ("post", f"/v1/photos/{photo_id}/retry")):
        assert getattr(client, method)(path).status_code == 401, path
        refused = getattr(client, method)(path, headers={"Authorization": f"Bearer {APP}"})
        assert refused.status_code == 403 and "operator key" in refused.get_json()["error"]["message"], path
    assert client.get("/v1/photos", headers={"Authorization": f"Bearer {OPERATOR}"}).get_json()["photos"][0]["id"] == photo_id
    # An operator key opens what a client's does too; a client's key still uploads.
    assert client.get(f"/v1/photos/{photo_id}", headers={"X-API-Key": OPERATOR}).status_code == 200
    assert client.post("/v1/photos", data=images.jpeg(images.scene(300, 200)), headers={"Authorization": f"Bearer {APP}"}).status_code == 202
    assert client.post(f"/v1/photos/{photo_id}/retry", headers={"Authorization": f"Bearer {OPERATOR}"}).status_code == 202

    # Client keys alone: nobody opens the console.
    services.settings = services.settings.replace(operator_keys="")
    client = create_app(services.settings, services).test_client()
    assert client.get("/v1/stats", headers={"Authorization": f"Bearer {APP}"}).status_code == 403


def test_operator_keys_are_made_by_the_cli_and_lift_the_loopback_bind() -> None:
    import subprocess
    import sys

    from config.settings import Settings
    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-m", "media_pipeline.cli", "api-key", "ops", "--operator"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True)
    key = done.stdout.split("stored anywhere): ")[1].split()[0]
    entry = done.stdout.split("MP_OPERATOR_KEYS: ")[1].split()[0]
    assert entry == f"ops:{hash_key(key)}" and "MP_API_KEYS" not in done.stdout
    settings = Settings.from_env({"MP_OPERATOR_KEYS": entry, "MP_HOST": "0.0.0.0"})
    assert settings.bind_host == "0.0.0.0"  # a key is configured: every /v1 request needs one
    assert Settings.from_env({"MP_HOST": "0.0.0.0"}).bind_host == "127.0.0.1"
