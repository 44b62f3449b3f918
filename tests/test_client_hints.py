"""Client hints on the negotiated URLs: Sec-CH-Width / Sec-CH-DPR pick the preset width that covers
the pixels asked for, Save-Data: on one smaller; Vary and Accept-CH say so; URLs that name a
format (what a mobile app asks for) are unaffected."""

from __future__ import annotations

from typing import Any

import pytest

from media_pipeline import service
from media_pipeline.web import client_hints
from tests import images
from tests.test_crop_api import subject_on_plain, with_eager_aspects

WIDTHS = (320, 640, 1080, 1440, 2160)


@pytest.fixture(autouse=True)
def _feed_aspects(services: Any) -> None:
    with_eager_aspects(services)  # 4:5 crops made at ingest, so their unsigned URLs exist


@pytest.mark.parametrize(("headers", "url_width", "expected"), [
    ({}, 640, None),
    ({"Sec-CH-Width": "900"}, 320, 1080),  # the smallest preset width covering 900 device pixels
    ({"Sec-CH-Width": "640"}, 320, 640),
    ({"Sec-CH-Width": "5000"}, 320, 2160),  # none covers it: the widest
    ({"Sec-CH-DPR": "2"}, 320, 640),  # 320 CSS px at 2x
    ({"Sec-CH-DPR": "2.625"}, 400, 1080),  # 1050 device px
    ({"Sec-CH-Width": "900", "Sec-CH-DPR": "3"}, 320, 1080),  # the width hint is in device pixels already
    ({"Sec-CH-Width": "900", "Save-Data": "on"}, 320, 640),  # one smaller
    ({"Save-Data": "on"}, 640, 320),
    ({"Save-Data": "on"}, 320, None),  # nothing smaller: the URL's width stands
    ({"Save-Data": "off"}, 640, None),
    ({"Sec-CH-Width": "-3"}, 640, None), ({"Sec-CH-Width": "9e9"}, 640, None), ({"Sec-CH-DPR": "0"}, 640, None),
    ({"Sec-CH-DPR": "abc", "Sec-CH-Width": ""}, 640, None),
])
def test_the_hints_pick_a_preset_width(headers: dict[str, str], url_width: int, expected: int | None) -> None:
    assert client_hints.hinted_width(headers, url_width, WIDTHS) == expected


def _ready(client: Any, services: Any, width: int, height: int) -> dict[str, Any]:
    photo_id = client.post("/v1/photos", data=images.jpeg(subject_on_plain(width, height, left=width // 2, top=height // 4,
                                                                          size=min(width, height) // 2))).get_json()["id"]
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    return client.get(f"/v1/photos/{photo_id}").get_json()


def _served_width(response: Any) -> int:
    assert response.status_code == 200
    return images.decode(response.data).width


def test_hints_pick_the_width_of_the_whole_picture_and_of_a_crop(client: Any, services: Any) -> None:
    photo = _ready(client, services, 1600, 1000)
    pid = photo["id"]
    plain = client.get(f"/i/{pid}/320", headers={"Accept": "image/jpeg"})
    assert _served_width(plain) == 320
    assert plain.headers["Vary"] == client_hints.VARY and plain.headers["Accept-CH"] == client_hints.ACCEPT_CH
    dpr = client.get(f"/i/{pid}/320", headers={"Accept": "image/jpeg", "Sec-CH-DPR": "3"})  # 960 device px
    assert _served_width(dpr) == 1080 and dpr.headers["Content-Type"] == "image/jpeg"
    assert _served_width(client.get(f"/i/{pid}/320", headers={"Sec-CH-Width": "1300"})) == 1440
    # Wider than the photo: its own width, the widest there is.
    assert _served_width(client.get(f"/i/{pid}/320", headers={"Sec-CH-Width": "3000"})) == 1600
    saving = client.get(f"/i/{pid}/640", headers={"Accept": "image/avif,image/webp", "Save-Data": "on"})
    assert _served_width(saving) == 320 and saving.headers["Content-Type"] == "image/avif"
    # A crop: its preset widths are 320 and 640, and the hinted one keeps the aspect.
    crop = client.get(f"/i/{pid}/4x5/320", headers={"Sec-CH-DPR": "2"})
    decoded = images.decode(crop.data)
    assert (decoded.width, decoded.height) == (640, 800) and crop.headers["Vary"] == client_hints.VARY
    assert _served_width(client.get(f"/i/{pid}/1x1/640", headers={"Save-Data": "on"})) == 320
    # A revalidation with the hints is answered for the same rendition.
    again = client.get(f"/i/{pid}/320", headers={"Sec-CH-DPR": "3", "If-None-Match": dpr.headers["ETag"],
                                                   "Accept": "image/jpeg"})
    assert again.status_code == 304 and again.headers["Vary"] == client_hints.VARY


def test_a_url_that_names_its_format_ignores_hints(client: Any, services: Any) -> None:
    """What a mobile app asks for: an explicit width and format, exactly that."""
    photo = _ready(client, services, 1600, 1000)
    pid = photo["id"]
    hints = {"Sec-CH-Width": "2000", "Sec-CH-DPR": "3", "Save-Data": "on"}
    for path in (f"/i/{pid}/640.jpg", f"/i/{pid}/4x5/320.jpg"):
        response = client.get(path, headers=hints)
        assert _served_width(response) == int(path.rsplit("/", 1)[1].split(".")[0])
        assert "Vary" not in response.headers and "Accept-CH" not in response.headers


def test_hints_on_a_small_photo_fall_back_to_what_exists(client: Any, services: Any) -> None:
    photo = _ready(client, services, 500, 400)  # renditions at 320 and 500 only; 4:5 crops at 320
    pid = photo["id"]
    assert _served_width(client.get(f"/i/{pid}/320", headers={"Sec-CH-Width": "1000"})) == 500
    assert _served_width(client.get(f"/i/{pid}/4x5/320", headers={"Sec-CH-DPR": "3"})) == 320
    assert client.get(f"/i/{'0' * 26}/320", headers={"Sec-CH-DPR": "2"}).status_code == 404
