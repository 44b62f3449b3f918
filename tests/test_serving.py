"""The CDN origin as a CDN sees it: URLs, cache headers, 304s, ranges, HEAD, negotiation,
signed on-demand renditions, deleted photos, and the presigned-redirect mode."""

from __future__ import annotations

import dataclasses

import threading
import urllib.request
from typing import Any, Iterator

import pytest

from media_pipeline import service, signing
from media_pipeline.models import Preset
from tests import images
from tests.front import AppServer, NginxFront

KEY_NEW = "new-signing-key-0123456789"
KEY_OLD = "old-signing-key-0123456789"


@pytest.fixture
def app_origin(services: Any) -> Any:
    """The app alone, through Flask's test client."""
    from media_pipeline.web import create_app

    services.settings = services.settings.replace(signing_keys=f"{KEY_NEW},{KEY_OLD}")
    # Every format made at ingest, so negotiation has all three to choose from; the default
    # preset's on-demand WebP has its own test below.
    services.preset = dataclasses.replace(services.preset, eager_formats=())
    return create_app(services.settings, services).test_client()


@pytest.fixture(params=["app", "front", "front-s3"])
def origin(request: Any, app_origin: Any, services: Any) -> Iterator[Any]:
    """Each serving test three times: the app alone, and over HTTP through the generated nginx
    front in both shapes: local storage (immutable URLs from the folder, the rest from the app)
    and S3 storage (every image URL through nginx's cache)."""
    if request.param == "app":
        yield app_origin
        return
    app = app_origin.application
    if request.param == "front-s3":
        from media_pipeline.storage.s3 import S3Storage
        from media_pipeline.web import create_app

        services.settings = request.getfixturevalue("s3_settings").replace(signing_keys=services.settings.signing_keys)
        services.storage = S3Storage.from_settings(services.settings)
        app = create_app(services.settings, services)
    server = AppServer(app)
    try:
        nginx = NginxFront(services.settings, server.port)
    except BaseException:
        server.stop()
        raise
    yield nginx.client
    nginx.stop()
    server.stop()


def ready_photo(client: Any, services: Any, width: int = 1200, height: int = 800) -> dict[str, Any]:
    photo_id = client.post("/v1/photos", data=images.jpeg(images.scene(width, height, seed=width))).get_json()["id"]
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    return client.get(f"/v1/photos/{photo_id}").get_json()


def rendition(photo: dict[str, Any], width: int, fmt: str) -> dict[str, Any]:
    return next(r for r in photo["renditions"] if r["width"] == width and r["format"] == fmt)


def signed(path: str, key: str = KEY_NEW) -> str:
    return signing.signed_path(path, key.encode())


def test_versioned_url_headers(origin: Any, services: Any) -> None:
    photo = ready_photo(origin, services)
    r = rendition(photo, 640, "webp")
    response = origin.get(r["url"])
    assert response.status_code == 200
    h = response.headers
    assert h["Content-Type"] == "image/webp" and h["X-Content-Type-Options"] == "nosniff"
    assert h["Cache-Control"] == "public, max-age=31536000, immutable"
    assert h["ETag"].startswith('"') and not h["ETag"].startswith('W/')
    assert h["Last-Modified"] and h["Accept-Ranges"] == "bytes"
    assert int(h["Content-Length"]) == len(response.data) == r["bytes"]


def test_conditional_requests_answer_304(origin: Any, services: Any) -> None:
    url = rendition(ready_photo(origin, services), 320, "avif")["url"]
    first = origin.get(url)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    for headers in ({"If-None-Match": etag}, {"If-None-Match": f'"nope", {etag}'}, {"If-None-Match": "*"},
                    {"If-Modified-Since": modified}):
        again = origin.get(url, headers=headers)
        assert again.status_code == 304 and again.data == b""
        assert again.headers["ETag"] == etag and "immutable" in again.headers["Cache-Control"]
    assert origin.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert origin.get(url, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200


def test_image_answers_carry_cache_tags_for_the_photo_and_its_owner(origin: Any, services: Any) -> None:
    owner = "Ann Smith, ltd"
    pid = origin.post("/v1/photos", data=images.jpeg(images.scene(700, 500)), headers={"X-Owner": owner}).get_json()["id"]
    assert service.process_photo(services, pid) is service.Outcome.DONE
    url = rendition(origin.get(f"/v1/photos/{pid}").get_json(), 320, "webp")["url"]
    both = [f"photo-{pid}", "owner-Ann%20Smith%2C%20ltd"]
    for response in (origin.get(f"/i/{pid}/320.webp"), origin.get(f"/i/{pid}/320", headers={"Accept": "image/webp"}),
                     origin.get(f"/i/{pid}/320.webp", headers={"If-None-Match": "*"})):
        assert response.status_code in (200, 304)
        assert response.headers["Surrogate-Key"].split(" ") == both and response.headers["Cache-Tag"].split(",") == both
    immutable = origin.get(url)
    # nginx sends the immutable files itself and knows only what the URL says: the photo.
    assert immutable.headers["Surrogate-Key"].split(" ")[0] == f"photo-{pid}" == immutable.headers["Cache-Tag"].split(",")[0]
    assert origin.get(f"/i/{pid}/999.webp").headers.get("Surrogate-Key") is None  # errors carry none


def test_head_has_the_headers_and_no_body(origin: Any, services: Any) -> None:
    r = rendition(ready_photo(origin, services), 640, "jpeg")
    response = origin.head(r["url"])
    assert response.status_code == 200 and response.data == b""
    assert int(response.headers["Content-Length"]) == r["bytes"] and response.headers["Content-Type"] == "image/jpeg"


def test_single_ranges(origin: Any, services: Any) -> None:
    url = rendition(ready_photo(origin, services), 1080, "jpeg")["url"]
    whole = origin.get(url).data
    part = origin.get(url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.data == whole[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(whole)}" and part.headers["Content-Length"] == "100"
    assert origin.get(url, headers={"Range": "bytes=-50"}).data == whole[-50:]
    assert origin.get(url, headers={"Range": "bytes=100-"}).data == whole[100:]
    bad = origin.get(url, headers={"Range": f"bytes={len(whole) + 10}-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{len(whole)}"
    assert bad.get_json()["error"]["code"] == "range_not_satisfiable" and bad.headers["Cache-Control"] == "no-store"
    assert origin.get(url, headers={"Range": "bytes=0-9,20-29"}).status_code == 200  # several: whole object
    stale = origin.get(url, headers={"Range": "bytes=0-9", "If-Range": '"changed"'})
    assert stale.status_code == 200 and stale.data == whole


def test_stable_and_negotiated_urls(origin: Any, services: Any) -> None:
    photo = ready_photo(origin, services)
    pid = photo["id"]
    stable = origin.get(f"/i/{pid}/640.webp")
    assert stable.status_code == 200 and stable.data == origin.get(rendition(photo, 640, "webp")["url"]).data
    assert stable.headers["Cache-Control"].startswith("public, max-age=86400")
    for accept, expected in (("image/avif,image/webp,*/*", "image/avif"), ("image/webp,*/*;q=0.8", "image/webp"),
                             ("image/png,*/*", "image/jpeg"), ("", "image/jpeg"), ("image/avif;q=0,image/webp", "image/webp")):
        response = origin.get(f"/i/{pid}/640", headers={"Accept": accept})
        assert response.status_code == 200 and response.headers["Content-Type"] == expected, accept
        assert "Accept" in response.headers["Vary"].split(", ")
        assert images.decode(response.data).width == 640


def test_unsigned_requests_never_render(origin: Any, services: Any) -> None:
    pid = ready_photo(origin, services)["id"]
    for path in (f"/i/{pid}/480.webp", f"/i/{pid}/480", f"/i/{pid}/480.webp?sig=forged"):
        response = origin.get(path)
        assert response.status_code == 404 and response.headers["Cache-Control"] == "no-store"
    assert not [k for k in services.storage.list(f"renditions/{pid}/") if "/480." in k]


def test_signed_on_demand_rendition_is_rendered_once_stored_and_served(origin: Any, services: Any, monkeypatch: Any) -> None:
    pid = ready_photo(origin, services)["id"]
    calls = []
    real = service.render_on_demand
    monkeypatch.setattr(service, "render_on_demand", lambda *a, **k: calls.append(a) or real(*a, **k))
    first = origin.get(signed(f"/i/{pid}/480.webp"))
    assert first.status_code == 200 and first.headers["Content-Type"] == "image/webp"
    decoded = images.decode(first.data)
    assert decoded.width == 480 and abs(decoded.height - 320) <= 1
    photo = origin.get(f"/v1/photos/{pid}").get_json()
    r = rendition(photo, 480, "webp")
    assert services.storage.get(r["url"].split("/i/", 1)[1].replace(f"{pid}/", f"renditions/{pid}/", 1)) == first.data
    again = origin.get(signed(f"/i/{pid}/480.webp"))
    assert again.data == first.data and len(calls) == 1
    assert origin.get(r["url"]).status_code == 200  # its immutable URL, unsigned
    assert origin.get(f"/i/{pid}/480.webp").status_code == 200  # exists now: no signature needed


def test_widths_snap_to_the_configured_set_and_never_upscale(origin: Any, services: Any) -> None:
    pid = ready_photo(origin, services, 1000, 700)["id"]
    snapped = origin.get(signed(f"/i/{pid}/700.webp"))
    assert images.decode(snapped.data).width == 750  # 700 is not in the set: the next one up
    capped = origin.get(signed(f"/i/{pid}/1900.avif"))
    assert images.decode(capped.data).width == 1000  # never wider than the original
    huge = origin.get(signed(f"/i/{pid}/99999.jpg"))
    assert huge.status_code == 200 and images.decode(huge.data).width == 1000
    assert origin.get(signed(f"/i/{pid}/123456.jpg")).status_code == 404  # absurd widths are not even parsed


def test_key_rotation_old_key_verifies_unknown_key_does_not(origin: Any, services: Any) -> None:
    pid = ready_photo(origin, services)["id"]
    assert origin.get(signed(f"/i/{pid}/240.jpg", KEY_OLD)).status_code == 200
    assert origin.get(signed(f"/i/{pid}/160.jpg", "some-other-key-0123456789")).status_code == 404
    assert origin.get(signed(f"/i/{pid}/240.jpg", KEY_NEW).replace("240.jpg", "160.jpg", 1)).status_code == 404


def test_formats_not_made_eagerly_are_rendered_on_demand(services: Any) -> None:
    from media_pipeline.web import create_app

    services.preset = Preset(widths=(640, 320), formats=services.preset.formats, eager_formats=("avif", "jpeg"))
    services.settings = services.settings.replace(signing_keys=KEY_NEW)
    client = create_app(services.settings, services).test_client()
    photo = ready_photo(client, services, 800, 600)
    assert {r["format"] for r in photo["renditions"]} == {"avif", "jpeg"}
    pid = photo["id"]
    assert client.get(f"/i/{pid}/640", headers={"Accept": "image/webp"}).headers["Content-Type"] == "image/jpeg"
    response = client.get(signed(f"/i/{pid}/640"), headers={"Accept": "image/webp"})
    assert response.headers["Content-Type"] == "image/webp" and "Accept" in response.headers["Vary"].split(", ")
    assert client.get(f"/i/{pid}/640", headers={"Accept": "image/webp"}).headers["Content-Type"] == "image/webp"


def test_concurrent_first_requests_render_once(app_origin: Any, services: Any) -> None:
    origin = app_origin
    pid = ready_photo(origin, services)["id"]
    path = signed(f"/i/{pid}/828.avif")
    bodies: list[bytes] = []
    from media_pipeline.web import create_app

    # One app for all threads, like a gunicorn worker: building Flask apps concurrently trips a
    # CPython 3.11 ast.parse race in werkzeug's rule compiler, which is not what this test is about.
    app = create_app(services.settings, services)

    def fetch() -> None:
        response = app.test_client().get(path)
        assert response.status_code == 200
        bodies.append(response.data)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(bodies) == 4 and len(set(bodies)) == 1
    photo = origin.get(f"/v1/photos/{pid}").get_json()
    assert sum(1 for r in photo["renditions"] if r["width"] == 828) == 1


def test_deleted_and_failed_photos_are_404_no_store(origin: Any, services: Any) -> None:
    photo = ready_photo(origin, services)
    pid = photo["id"]
    url = rendition(photo, 320, "jpeg")["url"]
    origin.delete(f"/v1/photos/{pid}")
    for path in (url, f"/i/{pid}/320.jpg", f"/i/{pid}/320", signed(f"/i/{pid}/480.jpg")):
        response = origin.get(path)
        assert response.status_code == 404 and response.headers["Cache-Control"] == "no-store", path
    data = images.jpeg(images.scene(500, 400))
    failed = origin.post("/v1/photos", data=data[: len(data) // 2]).get_json()["id"]
    service.process_photo(services, failed)
    assert origin.get(signed(f"/i/{failed}/320.jpg")).status_code == 404


@pytest.mark.parametrize("name", ["\u00b2.jpg", "\u0663\u0662\u0660", "%C2%A6_%C3%B0%0D"])
def test_widths_that_only_look_like_digits_are_404(origin: Any, services: Any, name: str) -> None:
    """Found by schemathesis: "²" passes str.isdigit() and int() then raised, a 500."""
    photo = ready_photo(origin, services, 400, 300)
    response = origin.get(f"/i/{photo['id']}/{name}")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/i/{pid}/originals/{pid}", "/i/{pid}/{v}/..%2F..%2Foriginals%2F{pid}", "/i/{pid}/{v}/original.jpg",
                                  "/i/{pid}/{v}/320.png", "/i/{pid}/{v}/-1.jpg", "/i/../originals/{pid}"])
def test_originals_are_never_served(origin: Any, services: Any, path: str) -> None:
    photo = ready_photo(origin, services, 400, 300)
    response = origin.get(path.format(pid=photo["id"], v=photo["renditions"][0]["url"].split("/")[3]))
    assert response.status_code == 404


def test_redirect_mode_sends_the_cdn_to_a_presigned_s3_url(s3_settings: Any, queue: Any) -> None:
    from media_pipeline.service import build_services
    from media_pipeline.web import create_app

    settings = s3_settings.replace(serve_mode="redirect", presign_seconds=600)
    services = build_services(settings, queue=queue)
    client = create_app(settings, services).test_client()
    photo = ready_photo(client, services, 700, 500)
    response = client.get(rendition(photo, 320, "avif")["url"])
    assert response.status_code == 302 and response.headers["Cache-Control"] == "public, max-age=300"
    with urllib.request.urlopen(response.headers["Location"], timeout=10) as fetched:
        body = fetched.read()
    assert images.decode(body).width == 320 and len(body) == rendition(photo, 320, "avif")["bytes"]


def test_s3_backend_streams_ranges_too(s3_settings: Any, queue: Any) -> None:
    from media_pipeline.service import build_services
    from media_pipeline.web import create_app

    services = build_services(s3_settings, queue=queue)
    client = create_app(s3_settings, services).test_client()
    url = rendition(ready_photo(client, services, 700, 500), 640, "jpeg")["url"]
    whole = client.get(url).data
    part = client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.data == whole[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(whole)}"


def test_immutable_gets_are_answered_below_flask_exactly_as_flask_would(app_origin: Any, services: Any) -> None:
    """web/fastpath.py answers versioned GET/HEAD without Flask; a query string sends the same
    request through the Flask route. Both must give the same status, headers and bytes, and the
    fast path must really be the one answering (the Flask view is made to fail to show it)."""
    origin = app_origin
    photo = ready_photo(origin, services)
    url = rendition(photo, 640, "webp")["url"]
    etag = origin.get(url + "?via=flask").headers["ETag"]
    for method, extra in (("GET", {}), ("HEAD", {}), ("GET", {"If-None-Match": etag}),
                          ("GET", {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}), ("GET", {"If-None-Match": '"other"'})):
        fast = origin.open(url, method=method, headers=extra)
        slow = origin.open(url + "?via=flask", method=method, headers=extra)
        assert (fast.status_code, fast.data) == (slow.status_code, slow.data), (method, extra)
        assert sorted(fast.headers.items()) == sorted(slow.headers.items()), (method, extra)
    assert origin.get(url, headers={"If-None-Match": etag}).status_code == 304
    lost = rendition(photo, 320, "jpeg")
    services.storage.delete(f"renditions/{photo['id']}/{lost['url'].split('/')[3]}/320.jpg")  # listed, but gone
    fast, slow = origin.get(lost["url"]), origin.get(lost["url"] + "?via=flask")
    assert fast.status_code == slow.status_code == 404 and fast.get_json() == slow.get_json()
    assert fast.headers["Cache-Control"] == "no-store"
    app = origin.application

    def flask_route_fails(**_: Any) -> Any:
        raise RuntimeError("the Flask route answered")

    app.view_functions["images.versioned"] = flask_route_fails
    assert origin.get(url).status_code == 200  # never reached Flask
    assert origin.get(url + "?via=flask").status_code == 500
    assert origin.get(url, headers={"Range": "bytes=0-9"}).status_code == 500  # ranges are Flask's
    missing = url.replace(f"/{rendition(photo, 640, 'webp')['width']}.", "/999.")
    assert origin.get(missing).status_code == 500  # a miss falls through to Flask, which answers errors
