"""Events: written in the transaction of the change that causes it (never for a change that rolled
back), and listed by `GET /v1/events` in commit order for clients that cannot take webhooks."""

from __future__ import annotations

from typing import Any

import pytest

from media_pipeline import reprocess, service
from media_pipeline.catalog import photos as photo_store
from media_pipeline.errors import CatalogError
from media_pipeline.jobs import Selection
from media_pipeline.models import PhotoStatus
from tests import images
from tests.conftest import ingest_bytes


def feed(client: Any, after: str = "", limit: int = 100) -> dict[str, Any]:
    response = client.get(f"/v1/events?limit={limit}" + (f"&after={after}" if after else ""))
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def test_a_photo_tells_ready_once_then_deleted_and_the_feed_pages_through_them(services: Any, client: Any) -> None:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(600, 400)), owner="ann")
    assert feed(client) == {"events": [], "next": "0"}  # accepted is no event
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    assert service.process_photo(services, photo_id) is service.Outcome.ALREADY_DONE  # a redelivered task: no news
    assert service.delete_photo(services, photo_id)

    first = feed(client, limit=1)
    [ready] = first["events"]
    assert ready["type"] == "photo.ready" and ready["id"].startswith("evt_") and ready["timestamp"].endswith("Z")
    photo = ready["data"]["photo"]
    assert (photo["id"], photo["owner"], photo["status"]) == (photo_id, "ann", "ready")
    assert photo["original"]["width"] == 600 and photo["links"]["self"] == f"/v1/photos/{photo_id}"
    second = feed(client, after=first["next"], limit=1)
    [deleted] = second["events"]
    assert deleted["type"] == "photo.deleted" and deleted["data"]["photo"] == {"id": photo_id, "owner": "ann", "status": "deleted"}
    assert feed(client, after=second["next"]) == {"events": [], "next": second["next"]}
    assert [e["id"] for e in feed(client)["events"]] == [ready["id"], deleted["id"]]


def test_no_event_is_written_for_a_change_that_rolled_back(services: Any, client: Any, monkeypatch: Any) -> None:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(400, 300)))

    def broken(*args: Any) -> str:
        raise CatalogError("the disk is full")

    monkeypatch.setattr(photo_store, "record_event", broken)
    with pytest.raises(CatalogError):
        service.process_photo(services, photo_id)
    assert services.catalog.get_photo(photo_id).status is PhotoStatus.PROCESSING  # the change went with the event
    monkeypatch.undo()
    assert feed(client)["events"] == []
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    assert [e["type"] for e in feed(client)["events"]] == ["photo.ready"]


def test_a_failed_photo_tells_its_error(services: Any, client: Any) -> None:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(400, 300)), owner="bo")
    service.fail_photo(services, photo_id, "rejected", "the validator said no")
    service.fail_photo(services, photo_id, "rejected", "the validator said no")  # already failed: told once
    [failed] = feed(client)["events"]
    assert failed["type"] == "photo.failed"
    assert failed["data"]["photo"]["error"] == {"code": "rejected", "message": "the validator said no"}


def test_a_duplicate_found_names_the_earlier_photo(services: Any, client: Any) -> None:
    data = images.jpeg(images.scene(640, 480))
    first = ingest_bytes(services, data)
    service.process_photo(services, first)
    second = ingest_bytes(services, data)
    service.process_photo(services, second)
    types = [(e["type"], e["data"]["photo"]["id"]) for e in feed(client)["events"]]
    assert types == [("photo.ready", first), ("photo.duplicate_found", second), ("photo.ready", second)]
    found = feed(client)["events"][1]["data"]["duplicates"]
    assert [(d["id"], d["kind"]) for d in found] == [(first, "exact")]


def test_a_finished_reprocess_job_tells_its_counts(services: Any, client: Any) -> None:
    photo_id = ingest_bytes(services, images.jpeg(images.scene(400, 300)))
    service.process_photo(services, photo_id)
    job = reprocess.start_job(services, Selection(mode="all"))
    reprocess.enqueue(services, job)
    reprocess.reprocess_one(services, job, photo_id)
    reprocess.wait(services, job, on_progress=lambda report: None, poll=0.01)
    event = feed(client)["events"][-1]
    assert event["type"] == "reprocess.finished"
    assert event["data"]["job"] == {"id": job.id, "status": "done", "target_version": services.preset.version,
                                    "counts": {"up_to_date": 1}}


@pytest.mark.parametrize("query", ["after=-1", "after=abc", "limit=0", "limit=1001", "after=1.5"])
def test_a_bad_cursor_or_limit_is_a_400(client: Any, query: str) -> None:
    response = client.get(f"/v1/events?{query}")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_query"


def test_cleanup_drops_old_events_no_receiver_is_owed_but_keeps_the_newest(services: Any, client: Any) -> None:
    ids = [ingest_bytes(services, images.jpeg(images.scene(300, 200, seed=s))) for s in (1, 2, 3)]
    for photo_id in ids:
        service.fail_photo(services, photo_id, "rejected", "no")
    events = services.catalog.events_after(0)
    owed = "http://127.0.0.1:9/hook"
    with services.catalog._tx() as cur:  # a receiver still owed the first event
        cur.execute("INSERT INTO webhook_deliveries (receiver, event_seq, photo, state, attempts, next_at, created_at) "
                    "VALUES (?, ?, ?, 'pending', 3, 0, 0)", (owed, events[0].seq, ids[0]))
    assert services.catalog.prune_events(events[-1].created_at + 1) == 1  # the second: the first is owed, the third newest
    assert [e["id"] for e in feed(client)["events"]] == [events[0].id, events[2].id]
    photo_id = ingest_bytes(services, images.jpeg(images.scene(320, 200, seed=4)))
    service.fail_photo(services, photo_id, "rejected", "no")
    assert feed(client, after=events[2].cursor)["events"][0]["data"]["photo"]["id"] == photo_id  # numbered after the kept newest


def test_the_feed_needs_an_api_key_like_the_other_reads(services: Any, client: Any) -> None:
    from media_pipeline.apikeys import hash_key

    services.settings = services.settings.replace(api_keys=f"app:{hash_key('k' * 32)}")
    from media_pipeline.web import create_app

    keyed = create_app(services.settings, services).test_client()
    assert keyed.get("/v1/events").status_code == 401
    assert keyed.get("/v1/events", headers={"Authorization": f"Bearer {'k' * 32}"}).status_code == 200


def test_a_job_left_to_run_without_waiting_tells_its_end_when_its_last_photo_finishes(services: Any, client: Any) -> None:
    ids = [ingest_bytes(services, images.jpeg(images.scene(300, 200, seed=s))) for s in (1, 2)]
    job = reprocess.start_job(services, Selection(mode="all"))
    reprocess.enqueue(services, job)  # `reprocess --no-wait`: nobody waits for the job
    reprocess.reprocess_one(services, job, ids[0])
    assert [e["type"] for e in feed(client)["events"]] == ["photo.ready"]
    reprocess.reprocess_one(services, job, ids[1])
    reprocess.reprocess_one(services, job, ids[1])  # a redelivered message: no second end
    finished = [e for e in feed(client)["events"] if e["type"] == "reprocess.finished"]
    assert len(finished) == 1 and finished[0]["data"]["job"]["counts"] == {"updated": 2}
    assert services.catalog.get_job(job.id).status == "done"
