"""/openapi.json describes the API as it is: every route is documented, and real answers from the
app validate against the document's schemas."""

from __future__ import annotations

import io
import re
from typing import Any

import jsonschema
import pytest

from media_pipeline import service
from media_pipeline.errors import StorageUnavailable
from tests import images


@pytest.fixture
def doc(client: Any) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def check(doc: dict[str, Any], schema: str, body: Any) -> None:
    # With the format checker, a `date-time` that is not RFC 3339 fails too.
    validator = jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": doc["components"]},
                                                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(body), key=str)
    assert not errors, f"{schema}: {errors[0].message} at {list(errors[0].absolute_path)}"


def test_every_route_is_documented(app: Any, doc: dict[str, Any]) -> None:
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
    for rule in app.url_map.iter_rules():
        if rule.endpoint.endswith("static"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        assert path in doc["paths"], f"{rule.rule} is not in /openapi.json"
        documented = {m.upper() for m in doc["paths"][path] if m != "parameters"}
        declared = set(rule.methods) - {"OPTIONS", "HEAD"} | ({"HEAD"} if path.startswith("/i/") else set())
        assert declared <= documented, (path, declared - documented)


def test_answers_validate_against_the_document(client: Any, services: Any, doc: dict[str, Any]) -> None:
    accepted = client.post("/v1/photos", data={"file": (io.BytesIO(images.jpeg(images.scene(700, 500, seed=3),
                                                                             exif=images.exif_bytes())), "a.jpg"), "owner": "o"})
    check(doc, "PhotoAccepted", accepted.get_json())
    photo_id = accepted.get_json()["id"]
    check(doc, "Photo", client.get(f"/v1/photos/{photo_id}").get_json())  # queued
    service.process_photo(services, photo_id)
    ready = client.get(f"/v1/photos/{photo_id}").get_json()
    assert ready["status"] == "ready"
    check(doc, "Photo", ready)

    data = images.jpeg(images.scene(500, 400))
    broken = client.post("/v1/photos", data=data[: len(data) // 2]).get_json()["id"]
    service.process_photo(services, broken)
    failed = client.get(f"/v1/photos/{broken}").get_json()
    assert failed["status"] == "failed"
    check(doc, "Photo", failed)

    check(doc, "Readiness", client.get("/readyz").get_json())
    errors = [
        client.post("/v1/photos", data=b""),
        client.post("/v1/photos", data=b"not an image"),
        client.post("/v1/photos", data=images.forged_png(90_000, 90_000)),
        client.get(f"/v1/photos/{service.new_photo_id()}"),
        client.put("/v1/photos"),
        client.get(ready["renditions"][0]["url"], headers={"Range": "bytes=99999999-"}),
    ]
    def storage_down(*_: Any, **__: Any) -> None:
        raise StorageUnavailable("down")

    services.storage.put = storage_down  # type: ignore[method-assign]
    errors.append(client.post("/v1/photos", data=images.jpeg(images.scene(100, 100))))
    assert sorted(r.status_code for r in errors) == [400, 404, 405, 415, 416, 422, 503]
    for response in errors:
        check(doc, "Error", response.get_json())


def test_events_validate_against_the_document(client: Any, services: Any, doc: dict[str, Any]) -> None:
    data = images.jpeg(images.scene(500, 400, seed=5))
    first = client.post("/v1/photos", data=data).get_json()["id"]
    service.process_photo(services, first)
    second = client.post("/v1/photos", data=data).get_json()["id"]
    service.process_photo(services, second)
    service.fail_photo(services, second, "rejected", "no")
    assert client.delete(f"/v1/photos/{first}").status_code == 204
    page = client.get("/v1/events").get_json()
    assert [e["type"] for e in page["events"]] == ["photo.ready", "photo.duplicate_found", "photo.ready", "photo.failed", "photo.deleted"]
    for event in page["events"]:
        check(doc, "Event", event)
    check(doc, "Error", client.get("/v1/events?limit=0").get_json())
