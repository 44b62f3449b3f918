"""Crop renditions as a client and a CDN see them: the focus in the API, crops listed with their
aspect and exact sizes, showing the subject, stable and negotiated crop URLs, signed on-demand
aspects, EXIF-rotated photos, and DELETE."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from media_pipeline import service, signing
from media_pipeline.crops import crop_window
from media_pipeline.framing import Focus
from media_pipeline.web import client_hints
from tests import images

KEY = "crop-signing-key-0123456789"


@pytest.fixture
def client(services: Any) -> Any:
    from media_pipeline.web import create_app

    services.settings = services.settings.replace(signing_keys=KEY)
    with_eager_aspects(services)
    return create_app(services.settings, services).test_client()


def with_eager_aspects(services: Any, aspects: tuple[str, ...] = ("1:1", "4:5")) -> None:
    """A preset that makes more than one aspect at ingest (the default makes only 1:1 grid tiles)."""
    services.preset = dataclasses.replace(services.preset, aspects=aspects)


def subject_on_plain(width: int = 1200, height: int = 600, left: int = 860, top: int = 180, size: int = 260) -> np.ndarray:
    """A textured square (the subject) near the right edge of a plain background."""
    picture = np.full((height, width, 3), (90, 120, 160), np.uint8)
    picture[top : top + size, left : left + size] = images.scene(size, size, seed=7)
    return picture


def ready(client: Any, services: Any, data: bytes) -> dict[str, Any]:
    photo_id = client.post("/v1/photos", data=data).get_json()["id"]
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    return client.get(f"/v1/photos/{photo_id}").get_json()


def crops_of(photo: dict[str, Any], aspect: str) -> list[dict[str, Any]]:
    return [r for r in photo["renditions"] if r["aspect"] == aspect]


def expected_crop(upright: np.ndarray, photo: dict[str, Any], aspect: tuple[int, int]) -> np.ndarray:
    """The part of the upright picture the API's focus says a crop shows."""
    focus = Focus.from_dict(photo["focus"])
    height, width = upright.shape[:2]
    window = crop_window((width, height), aspect, focus)
    return upright[window.top : window.top + window.height, window.left : window.left + window.width]


def test_crops_are_listed_with_exact_sizes_and_show_the_subject(client: Any, services: Any) -> None:
    upright = subject_on_plain()
    photo = ready(client, services, images.jpeg(upright))
    focus = photo["focus"]
    assert focus["source"] == "saliency"
    assert 0.7 < focus["focal_point"]["x"] < 0.95  # the subject is at the right
    assert focus["subject"]["x"] == pytest.approx(860 / 1200, abs=0.03)
    for aspect, ratio in (("1:1", (1, 1)), ("4:5", (4, 5))):
        listed = crops_of(photo, aspect)
        assert sorted({r["width"] for r in listed}) == [320]  # 640 would upscale the 600 px window
        assert {r["format"] for r in listed} == set(services.preset.eager_formats)
        for r in listed:
            response = client.get(r["url"])
            assert response.status_code == 200 and "immutable" in response.headers["Cache-Control"]
            decoded = images.decode(response.data)
            assert (decoded.width, decoded.height) == (r["width"], r["height"]) == (320, round(320 * ratio[1] / ratio[0]))
            assert images.mean_abs_diff(decoded, expected_crop(upright, photo, ratio)) < 6
        # The window those pixels came from holds the whole subject (860..1120 x 180..440).
        window = crop_window((1200, 600), ratio, Focus.from_dict(focus))
        assert window.left <= 860 and window.left + window.width >= 1120
        assert window.top <= 180 and window.top + window.height >= 440
        assert photo["crops"][aspect]["srcset"]["jpeg"].endswith(" 320w")
    assert photo["srcset"]["jpeg"].count("w,") == 3  # the whole-picture srcset is unchanged: 4 widths


def test_stable_and_negotiated_crop_urls(client: Any, services: Any) -> None:
    photo = ready(client, services, images.jpeg(subject_on_plain(1600, 1000)))
    photo_id = photo["id"]
    immutable = next(r for r in crops_of(photo, "4:5") if r["width"] == 640 and r["format"] == "jpeg")
    assert immutable["stable_url"] == f"/i/{photo_id}/4x5/640.jpg"
    stable = client.get(immutable["stable_url"])
    assert stable.status_code == 200 and stable.data == client.get(immutable["url"]).data
    assert "max-age=86400" in stable.headers["Cache-Control"] and "immutable" not in stable.headers["Cache-Control"]
    negotiated = client.get(f"/i/{photo_id}/4x5/640", headers={"Accept": "image/avif,image/webp,*/*"})
    assert negotiated.status_code == 200 and negotiated.headers["Content-Type"] == "image/avif"
    assert negotiated.headers["Vary"] == client_hints.VARY
    assert client.get(f"/i/{photo_id}/4x5/640", headers={"Accept": "image/jpeg"}).headers["Content-Type"] == "image/jpeg"
    etag = stable.headers["ETag"]
    assert client.get(immutable["stable_url"], headers={"If-None-Match": etag}).status_code == 304
    ranged = client.get(immutable["stable_url"], headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and len(ranged.data) == 10
    assert client.head(immutable["stable_url"]).headers["Content-Length"] == str(immutable["bytes"])
    # The whole-picture stable URL still serves the whole picture.
    whole = images.decode(client.get(f"/i/{photo_id}/640.jpg").data)
    assert (whole.width, whole.height) == (640, 400)


def test_aspects_not_made_at_ingest_need_a_signature_and_an_allowed_aspect(client: Any, services: Any) -> None:
    photo = ready(client, services, images.jpeg(subject_on_plain(1600, 1000)))
    photo_id = photo["id"]
    unsigned = client.get(f"/i/{photo_id}/16x9/640.jpg")
    assert unsigned.status_code == 404 and unsigned.headers["Cache-Control"] == "no-store"
    assert client.get(signing.signed_path(f"/i/{photo_id}/2x7/640.jpg", KEY.encode())).status_code == 404
    response = client.get(signing.signed_path(f"/i/{photo_id}/16x9/600.webp", KEY.encode()))
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/webp"
    decoded = images.decode(response.data)
    assert (decoded.width, decoded.height) == (640, 360)  # 600 snaps up to 640
    listed = client.get(f"/v1/photos/{photo_id}").get_json()
    made = [r for r in crops_of(listed, "16:9") if r["format"] == "webp"]
    assert [(r["width"], r["height"]) for r in made] == [(640, 360)]
    assert client.get(f"/i/{photo_id}/16x9/640.webp").status_code == 200  # stored once, served unsigned since


def test_an_on_demand_crop_wider_than_the_largest_levels_window_is_cut_from_the_original(client: Any, services: Any) -> None:
    """A wide photo (4000 x 1600): the cascade's largest level is 2160 x 864, whose 4:5 window is
    691 px wide, but the picture's own 4:5 window is 1280: a 4:5 crop at 1080 (a feed post on a
    phone) is made from the original's pixels; 1440 would need upscaling and is 404."""
    upright = subject_on_plain(4000, 1600, left=2600, top=500, size=700)
    photo = ready(client, services, images.jpeg(upright))
    photo_id = photo["id"]
    response = client.get(signing.signed_path(f"/i/{photo_id}/4x5/1080.jpg", KEY.encode()))
    assert response.status_code == 200
    decoded = images.decode(response.data)
    assert (decoded.width, decoded.height) == (1080, 1350)
    assert images.mean_abs_diff(decoded, expected_crop(upright, photo, (4, 5)), size=256) < 6
    listed = client.get(f"/v1/photos/{photo_id}").get_json()
    assert (1080, 1350) in [(r["width"], r["height"]) for r in crops_of(listed, "4:5") if r["format"] == "jpeg"]
    too_wide = client.get(signing.signed_path(f"/i/{photo_id}/4x5/1440.jpg", KEY.encode()))
    assert too_wide.status_code == 404 and too_wide.get_json()["error"]["code"]


def test_an_on_demand_crop_decodes_no_more_pixels_than_ingests_largest_level(client: Any, services: Any) -> None:
    """A 12 MP landscape photo: its 9:16 crop at 1080 needs a 2560 x 1920 level (4.9 MP) and is
    made; at 1440 it would need 3413 x 2560 (8.7 MP), more than the 2160 x 2880 (6.2 MP) ingest
    ever holds, so it is 404 like any width the photo cannot give."""
    photo = ready(client, services, images.jpeg(subject_on_plain(4000, 3000, left=2400, top=900, size=900)))
    photo_id = photo["id"]
    made = client.get(signing.signed_path(f"/i/{photo_id}/9x16/1080.jpg", KEY.encode()))
    assert made.status_code == 200
    assert (images.decode(made.data).width, images.decode(made.data).height) == (1080, 1920)
    assert client.get(signing.signed_path(f"/i/{photo_id}/9x16/1440.jpg", KEY.encode())).status_code == 404


def test_a_crop_of_an_exif_rotated_photo_is_cut_from_the_upright_picture(client: Any, services: Any) -> None:
    upright = subject_on_plain(600, 1000, left=300, top=680, size=240)  # portrait, subject low right
    photo = ready(client, services, images.oriented_jpeg(upright, 6))
    assert photo["focus"]["focal_point"]["y"] > 0.6
    r = next(r for r in crops_of(photo, "1:1") if r["width"] == 320 and r["format"] == "jpeg")
    decoded = images.decode(client.get(r["url"]).data)
    assert images.mean_abs_diff(decoded, expected_crop(upright, photo, (1, 1))) < 6


def test_delete_removes_the_crops(client: Any, services: Any) -> None:
    photo = ready(client, services, images.jpeg(subject_on_plain()))
    assert crops_of(photo, "1:1")
    assert client.delete(f"/v1/photos/{photo['id']}").status_code == 204
    assert client.get(crops_of(photo, "1:1")[0]["url"]).status_code == 404
    assert sorted(services.storage.list("")) == []


# --------------------------------------------------------------------------- a user's focal point
def test_a_focal_point_set_by_patch_re_renders_only_the_crops(client: Any, services: Any, queue: Any) -> None:
    services.settings = services.settings.replace(rendition_keep_seconds=3600)
    photo = ready(client, services, images.jpeg(subject_on_plain(1600, 1000)))
    photo_id = photo["id"]
    old_crop = next(r for r in crops_of(photo, "1:1") if r["width"] == 320 and r["format"] == "jpeg")
    response = client.patch(f"/v1/photos/{photo_id}", json={"focal_point": {"x": 0.1, "y": 0.5}})
    assert response.status_code == 202
    assert response.get_json()["focus"]["source"] == "user"
    assert queue.enqueued[-1] == photo_id
    assert service.process_photo(services, photo_id) is service.Outcome.DONE  # the worker's turn
    after = client.get(f"/v1/photos/{photo_id}").get_json()
    assert after["focus"]["focal_point"] == {"x": 0.1, "y": 0.5}
    originals = lambda p: sorted(r["url"] for r in crops_of(p, "original"))  # noqa: E731
    assert originals(after) == originals(photo)  # the whole picture is not touched
    new_crop = next(r for r in crops_of(after, "1:1") if r["width"] == 320 and r["format"] == "jpeg")
    assert new_crop["url"] != old_crop["url"]
    # Honoured: the 1000 px window sits at the left edge, as near 0.1 as the edge allows.
    assert images.mean_abs_diff(images.decode(client.get(new_crop["url"]).data), subject_on_plain(1600, 1000)[:, :1000]) < 6
    assert client.get(old_crop["url"]).status_code == 200  # retired, still servable for the keep period
    # null goes back to the computed focus, and its crops' keys.
    client.patch(f"/v1/photos/{photo_id}", json={"focal_point": None})
    service.process_photo(services, photo_id)
    back = client.get(f"/v1/photos/{photo_id}").get_json()
    assert back["focus"] == photo["focus"]
    assert sorted(r["url"] for r in crops_of(back, "1:1")) == sorted(r["url"] for r in crops_of(photo, "1:1"))


@pytest.mark.parametrize("body", [
    {"focal_point": {"x": 1.2, "y": 0.5}},
    {"focal_point": {"x": -0.1, "y": 0.5}},
    {"focal_point": {"x": "0.5", "y": 0.5}},
    {"focal_point": {"x": True, "y": 0.5}},
    {"focal_point": {"x": 0.5}},
    {"focal_point": {"x": 0.5, "y": 0.5, "z": 1}},
    {"focal_point": {"x": 0.5, "y": 0.5}, "title": "mine"},
    {},
    [0.5, 0.5],
])
def test_a_bad_focal_point_is_a_400(client: Any, services: Any, body: Any) -> None:
    photo = ready(client, services, images.jpeg(subject_on_plain(400, 300, 200, 100, 100)))
    response = client.patch(f"/v1/photos/{photo['id']}", json=body)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_focal_point"
    assert client.patch(f"/v1/photos/{photo['id']}", data="not json", content_type="application/json").status_code == 400


def test_a_focal_point_on_a_photo_that_is_not_ready_is_a_409(client: Any) -> None:
    photo_id = client.post("/v1/photos", data=images.jpeg(images.scene(300, 200))).get_json()["id"]
    response = client.patch(f"/v1/photos/{photo_id}", json={"focal_point": {"x": 0.5, "y": 0.5}})
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "not_ready"
    assert client.patch("/v1/photos/01m80qm0yt000000000000000a", json={"focal_point": None}).status_code == 404
