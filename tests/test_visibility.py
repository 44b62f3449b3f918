"""Owners opt out and photos are hidden: every image URL answers 404 with no-store at once (the app,
the nginx front's local shape, its cache shape and the CDN's purge hook), the photo document
still answers and says so, and showing them again brings the same renditions back unchanged."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from media_pipeline import front, service, signing
from media_pipeline.web import create_app
from tests import images
from tests.test_front import SIGNING_KEY, s3_front, through_front  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def upload(client: Any, services: Any, owner: str, seed: int) -> str:
    photo_id = client.post("/v1/photos", data=images.jpeg(images.scene(900, 600, seed=seed)), headers={"X-Owner": owner}).get_json()["id"]
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    return photo_id


def image_urls(client: Any, photo_id: str) -> list[str]:
    """Every kind of image URL of a photo: immutable, stable, negotiated, a crop's, a signed on-demand one."""
    doc = client.get(f"/v1/photos/{photo_id}").get_json()
    urls = [r["url"].removeprefix(doc_base(doc)) for r in doc["renditions"]] + [f"/i/{photo_id}/640.jpg", f"/i/{photo_id}/640"]
    urls += [f"/i/{photo_id}/{aspect.replace(':', 'x')}/320" for aspect in doc["crops"]]
    return urls


def doc_base(doc: dict[str, Any]) -> str:
    url = doc["renditions"][0]["url"]
    return url[: url.index("/i/")]


def statuses(client: Any, urls: list[str]) -> set[tuple[int, str | None]]:
    answers = [client.get(url) for url in urls]
    return {(r.status_code, r.headers.get("Cache-Control") if r.status_code != 200 else None) for r in answers}


def test_an_owner_opts_out_and_comes_back(settings: Any, queue: Any) -> None:
    from media_pipeline.service import build_services

    settings = settings.replace(signing_keys=SIGNING_KEY)
    services = build_services(settings, queue=queue)
    client = create_app(settings, services).test_client()
    erin = [upload(client, services, "erin", seed) for seed in (1, 2)]
    bob = upload(client, services, "bob", 3)
    urls = {pid: image_urls(client, pid) for pid in erin + [bob]}
    before = {pid: [client.get(u).data for u in urls[pid]] for pid in erin}
    renditions = {pid: len(services.catalog.all_renditions(pid)) for pid in erin}
    on_demand = signing.signed_path(f"/i/{erin[0]}/480.webp", SIGNING_KEY.encode())

    answer = client.put("/v1/owners/erin/visibility", json={"visible": False})
    assert answer.status_code == 200 and answer.get_json()["visible"] is False and answer.headers["Cache-Control"] == "no-store"
    for pid in erin:
        assert statuses(client, urls[pid]) == {(404, "no-store")}
        doc = client.get(f"/v1/photos/{pid}").get_json()
        assert (doc["visible"], doc["hidden_by"]) == (False, "owner")
    assert client.get(on_demand).status_code == 404  # nothing is rendered for a hidden owner
    assert statuses(client, urls[bob]) == {(200, None)}
    assert client.get("/v1/owners/erin/visibility").get_json()["visible"] is False
    assert client.get("/v1/owners/zoe/visibility").get_json() == {"owner": "zoe", "visible": True, "updated_at": None}

    assert client.put("/v1/owners/erin/visibility", json={"visible": True}).get_json()["visible"] is True
    assert {pid: [client.get(u).data for u in urls[pid]] for pid in erin} == before  # the same bytes, nothing re-rendered
    assert {pid: len(services.catalog.all_renditions(pid)) for pid in erin} == renditions
    assert client.get(f"/v1/photos/{erin[0]}").get_json()["visible"] is True


def test_one_photo_is_hidden_and_bad_requests_are_refused(client: Any, services: Any) -> None:
    hidden, kept = upload(client, services, "ann", 4), upload(client, services, "ann", 5)
    urls = image_urls(client, hidden)
    answer = client.patch(f"/v1/photos/{hidden}", json={"visible": False})
    assert answer.status_code == 200 and (answer.get_json()["visible"], answer.get_json()["hidden_by"]) == (False, "photo")
    assert statuses(client, urls) == {(404, "no-store")}
    assert statuses(client, image_urls(client, kept)) == {(200, None)}
    # The owner opting out and back in does not show a photo hidden on its own.
    client.put("/v1/owners/ann/visibility", json={"visible": False})
    client.put("/v1/owners/ann/visibility", json={"visible": True})
    assert statuses(client, urls) == {(404, "no-store")}
    assert client.patch(f"/v1/photos/{hidden}", json={"visible": True}).status_code == 200
    assert statuses(client, urls) == {(200, None)}
    for bad in ({"visible": "no"}, {"visible": None}, {"shown": False}, {}):
        refused = client.put("/v1/owners/ann/visibility", json=bad)
        assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "bad_visibility"
    refused = client.patch(f"/v1/photos/{hidden}", json={"visible": 0})
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "bad_visibility"


def test_through_the_local_front_an_opted_out_owner_is_404_at_once(through_front: Any, services: Any) -> None:  # noqa: F811
    """nginx sends immutable renditions from the storage folder without the app: it must stop at once too."""
    client, _, calls, _ = through_front
    pid = upload(client, services, "erin", 6)
    immutable = [u for u in image_urls(client, pid) if re.fullmatch(r"/i/[0-9a-z]{26}/[0-9a-f]+/[0-9]+\.[a-z]+", u)]
    assert immutable and all(client.get(u).status_code == 200 for u in immutable)
    calls.clear()
    assert all(client.get(u).status_code == 200 for u in immutable) and calls == []  # nginx's own hits
    assert client.open("/v1/owners/erin/visibility", method="PUT", data=json.dumps({"visible": False}).encode(),
                       headers={"Content-Type": "application/json"}).status_code == 200
    hidden_at = time.monotonic()
    answers = [client.get(u) for u in immutable]
    assert time.monotonic() - hidden_at < 1.0
    assert {(r.status_code, r.headers["Cache-Control"]) for r in answers} == {(404, "no-store")}
    client.open("/v1/owners/erin/visibility", method="PUT", data=json.dumps({"visible": True}).encode(),
                headers={"Content-Type": "application/json"})
    # nginx's descriptor cache remembers the marker for up to its validity: the app answers until then.
    time.sleep(front.DELETED_SERVED_AT_MOST_SECONDS + 0.1)
    calls.clear()
    assert all(client.get(u).status_code == 200 for u in immutable) and calls == []  # nginx serves them again itself
    # A new photo of an owner who opted out is never served by nginx either.
    client.open("/v1/owners/erin/visibility", method="PUT", data=json.dumps({"visible": False}).encode(),
                headers={"Content-Type": "application/json"})
    late = upload(client, services, "erin", 7)
    late_urls = [f"/i/{late}/{r.spec}/{r.width}.{'jpg' if r.format == 'jpeg' else r.format}" for r in services.catalog.all_renditions(late)]
    assert {client.get(u).status_code for u in late_urls} == {404}


def test_through_the_cache_front_an_opted_out_owner_leaves_its_cache_and_the_cdn(s3_front: Any) -> None:  # noqa: F811
    client, services, calls, hook = s3_front
    pid = upload(client, services, "ann", 8)
    urls = image_urls(client, pid)
    assert {client.get(u).status_code for u in urls} == {200}
    assert {client.get(u).headers["X-Cache-Status"] for u in urls[:2]} == {"HIT"}
    assert client.open("/v1/owners/ann/visibility", method="PUT", data=json.dumps({"visible": False}).encode(),
                       headers={"Content-Type": "application/json"}).status_code == 200
    time.sleep(front.DELETED_SERVED_AT_MOST_SECONDS + 0.1)  # the mirror's descriptors of the immutable URLs' copies
    answers = [client.get(u) for u in urls]
    assert {(r.status_code, r.headers["Cache-Control"]) for r in answers} == {(404, "no-store")}
    assert hook.arrived.wait(30)
    assert json.loads(hook.received[0][1])["tags"] == ["owner-ann"]
