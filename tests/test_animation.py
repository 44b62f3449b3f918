"""Animated GIF and WebP uploads (#20): animated AVIF and WebP renditions whose frames, delays and
loop count are the source's (disposal and blending composited as browsers do), a still first-frame
poster in every eager format, the header limits that keep an animation still, the API fields,
negotiation, near duplicates through the poster, and deletion."""

from __future__ import annotations

import io
import zlib
from typing import Any

import numpy as np
import pytest
import pyvips
from PIL import Image, ImageSequence

from config.settings import Settings
from media_pipeline import service
from media_pipeline.service import build_services
from media_pipeline.storage import rendition_prefix
from tests import images

SIDE = 360
FRAMES = 6
DELAYS = [80, 120, 80, 200, 80, 160]


def moving_frames(count: int = FRAMES, side: int = SIDE) -> list[np.ndarray]:
    """A photo-like background with a bright square that moves across it: every frame differs."""
    background = images.natural(side, side, seed=31)
    frames = []
    for i in range(count):
        frame = background.copy()
        x = 20 + i * (side - 100) // max(1, count - 1)
        frame[40:120, x : x + 80] = (250, 40, 30)
        frames.append(frame)
    return frames


def gif(frames: list[np.ndarray], delays: list[int], loop: int = 0, **options: Any) -> bytes:
    out = io.BytesIO()
    pictures = [Image.fromarray(f).quantize(256, dither=Image.Dither.NONE) for f in frames]
    pictures[0].save(out, "GIF", save_all=True, append_images=pictures[1:], duration=delays, loop=loop, **options)
    return out.getvalue()


def pillow_frames(data: bytes, mode: str = "RGB") -> list[tuple[np.ndarray, int]]:
    """What a decoder plays: each composited frame with its duration in ms."""
    with Image.open(io.BytesIO(data)) as picture:
        return [(np.asarray(f.convert(mode)), int(f.info.get("duration") or 0)) for f in ImageSequence.Iterator(picture)]


def upload(client: Any, services: Any, data: bytes) -> dict[str, Any]:
    response = client.post("/v1/photos", data=data, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 202, response.get_json()
    photo_id = response.get_json()["id"]
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    return client.get(f"/v1/photos/{photo_id}").get_json()


def whole(photo: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in photo["renditions"] if r["aspect"] == "original"]


def test_an_animated_gif_gets_animated_avif_and_webp_with_its_frames_delays_and_loop(client: Any, services: Any) -> None:
    frames = moving_frames()
    photo = upload(client, services, gif(frames, DELAYS, loop=3))
    assert photo["status"] == "ready"
    original = photo["original"]
    assert (original["animated"], original["frames"], original["duration_ms"]) == (True, FRAMES, sum(DELAYS))
    assert original["animation"] == {"kept": True, "reason": None}
    moving = [r for r in whole(photo) if r["animated"]]
    assert sorted((r["width"], r["format"]) for r in moving) == sorted((w, f) for w in (320, SIDE) for f in ("avif", "webp"))
    for rendition in moving:
        body = client.get(rendition["url"]).data
        played = pillow_frames(body)
        assert [d for _, d in played] == DELAYS, rendition
        for (shown, _), source in zip(played, frames):
            assert images.mean_abs_diff(shown, source) < 4, rendition
        if rendition["format"] == "webp":
            # A GIF's NETSCAPE count 3 is 3 repeats, 4 plays (as browsers play it); WebP's count is
            # plays. AVIF plays forever (docs/pipeline.md).
            assert pyvips.Image.new_from_buffer(body, "", n=-1).get("loop") == 4
    # The still poster: the first frame, in every eager format, one page only.
    stills = [r for r in whole(photo) if not r["animated"]]
    assert {r["format"] for r in stills} == set(services.preset.eager_formats)
    for rendition in stills:
        poster = images.decode(client.get(rendition["url"]).data)
        assert not poster.get_typeof("n-pages") or poster.get("n-pages") == 1
        assert images.mean_abs_diff(poster, frames[0]) < 4
        assert images.mean_abs_diff(poster, frames[-1]) > 4  # the check can tell frames apart
        assert "/poster/" in rendition["stable_url"]


def test_partial_frames_are_composited_with_their_disposal_as_a_browser_shows_them(client: Any, services: Any) -> None:
    """Frames after the first cover only part of the canvas; disposal 1 keeps what is under
    them, disposal 2 clears their rectangle to transparent. Pillow's GIF reader composites the
    same way browsers do: our frames must match it."""
    background = images.natural(200, 200, seed=5)
    first = Image.fromarray(background)
    patches = [Image.new("RGB", (60, 60), colour) for colour in ((255, 0, 0), (0, 200, 0), (0, 0, 255))]
    out = io.BytesIO()
    # Pillow writes a smaller frame when only a rectangle changed: what a GIF tool does too.
    canvas = [first.copy() for _ in range(4)]
    for i, patch in enumerate(patches, start=1):
        canvas[i].paste(patch, (20 + 50 * i, 30 + 30 * i))
    canvas[0].save(out, "GIF", save_all=True, append_images=canvas[1:], duration=100, loop=0, disposal=[1, 2, 1, 1],
                   optimize=False)
    data = out.getvalue()
    expected = [np.asarray(f) for f, _ in ((f.convert("RGBA"), 0) for f in ImageSequence.Iterator(Image.open(io.BytesIO(data))))]
    photo = upload(client, services, data)
    webp = next(r for r in whole(photo) if r["animated"] and r["format"] == "webp")
    played = [np.asarray(f.convert("RGBA")) for f in ImageSequence.Iterator(Image.open(io.BytesIO(client.get(webp["url"]).data)))]
    assert len(played) == len(expected) == 4
    for shown, source in zip(played, expected):
        assert images.mean_abs_diff(shown, source) < 4


def apng(frames: list[np.ndarray], delays: list[int], loop: int = 0) -> bytes:
    out = io.BytesIO()
    pictures = [Image.fromarray(f) for f in frames]
    # Pillow writes each later frame as the rectangle that changed, blended over the one before.
    pictures[0].save(out, "PNG", save_all=True, append_images=pictures[1:], duration=delays, loop=loop)
    return out.getvalue()


def test_an_apng_gets_animated_renditions_with_its_frames_and_delays(client: Any, services: Any) -> None:
    frames = moving_frames()
    data = apng(frames, DELAYS, loop=2)
    assert data.count(b"fcTL") == FRAMES
    photo = upload(client, services, data)
    assert (photo["original"]["format"], photo["original"]["frames"], photo["original"]["duration_ms"]) == ("png", FRAMES, sum(DELAYS))
    for rendition in (r for r in whole(photo) if r["animated"]):
        played = pillow_frames(client.get(rendition["url"]).data)
        assert [d for _, d in played] == DELAYS, rendition
        for (shown, _), source in zip(played, frames):
            assert images.mean_abs_diff(shown, source) < 4, rendition
    jpeg = next(r for r in whole(photo) if r["format"] == "jpeg")
    assert images.mean_abs_diff(images.decode(client.get(jpeg["url"]).data), frames[0]) < 4  # the poster
    # An APNG whose default image is not one of its frames: the animation is the frames after it.
    out = io.BytesIO()
    pictures = [Image.fromarray(f) for f in frames]
    pictures[0].save(out, "PNG", save_all=True, append_images=pictures[1:], duration=DELAYS[1:], default_image=True)
    photo = upload(client, services, out.getvalue())
    assert photo["original"]["frames"] == FRAMES - 1
    webp = next(r for r in whole(photo) if r["animated"] and r["format"] == "webp")
    played = pillow_frames(client.get(webp["url"]).data)
    assert [d for _, d in played] == DELAYS[1:]
    for (shown, _), source in zip(played, frames[1:]):
        assert images.mean_abs_diff(shown, source) < 4
    # A plain PNG is a still.
    assert upload(client, services, images.png(frames[0]))["original"]["animated"] is False


def test_an_actl_after_the_image_data_is_a_still_as_browsers_show_it(client: Any, services: Any) -> None:
    """The APNG spec puts acTL before the first IDAT; one after it is ignored by browsers, and by the
    header walk, which stops at the first IDAT of a still instead of reading every chunk of a large PNG."""
    still = images.png(moving_frames()[0])
    body = (2).to_bytes(4, "big") + (0).to_bytes(4, "big")
    chunk = len(body).to_bytes(4, "big") + b"acTL" + body + zlib.crc32(b"acTL" + body).to_bytes(4, "big")
    at = still.rindex(b"IEND") - 4
    photo = upload(client, services, still[:at] + chunk + still[at:])
    assert photo["status"] == "ready" and photo["original"]["animated"] is False
    assert not any(r["animated"] for r in whole(photo))


def test_forged_frame_counts_are_caught_from_the_header(client: Any, services: Any) -> None:
    """An APNG whose acTL claims 100,000 frames stays still by MP_MAX_FRAMES without a frame
    decoded; one that claims 7 frames but holds 6 fails as corrupt (a cut file does too), never half-played."""
    data = bytearray(apng(moving_frames(), DELAYS))
    at = data.index(b"acTL")
    forged = bytes(data[: at + 4]) + (100_000).to_bytes(4, "big") + bytes(data[at + 8 :])
    response = client.post("/v1/photos", data=forged, headers={"Content-Type": "application/octet-stream"})
    if response.status_code == 202:  # libvips may refuse the bad CRC at the header already
        service.process_photo(services, response.get_json()["id"])
        photo = client.get(f"/v1/photos/{response.get_json()['id']}").get_json()
        assert photo["status"] == "failed" or photo["original"]["animation"] == {"kept": False, "reason": "too_many_frames"}
        assert not any(r["animated"] for r in photo.get("renditions", []))
    else:
        assert response.status_code == 422
    one_more = bytes(data[: at + 4]) + (FRAMES + 1).to_bytes(4, "big") + bytes(data[at + 8 :])
    response = client.post("/v1/photos", data=one_more, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 202
    assert service.process_photo(services, response.get_json()["id"]) is service.Outcome.FAILED
    photo = client.get(f"/v1/photos/{response.get_json()['id']}").get_json()
    assert photo["error"]["code"] == "corrupt_image" and "renditions" not in photo


def test_an_avif_sequence_of_the_test_data_keeps_its_frames(client: Any, services: Any, testdata: Any) -> None:
    data = (testdata / "formats/avif/star.avifs").read_bytes()
    reference = [np.asarray(f.convert("RGBA")) for f in ImageSequence.Iterator(Image.open(io.BytesIO(data)))]
    photo = upload(client, services, data)
    assert photo["original"]["frames"] == len(reference) == 5 and photo["original"]["animation"]["kept"]
    webp = next(r for r in whole(photo) if r["animated"] and r["format"] == "webp")
    played = pillow_frames(client.get(webp["url"]).data, "RGBA")
    assert len(played) == 5
    for (shown, _), source in zip(played, reference):
        assert images.mean_abs_diff(shown, source) < 6


def test_negotiation_serves_animated_avif_then_animated_webp_then_the_still_jpeg(client: Any, services: Any) -> None:
    photo = upload(client, services, gif(moving_frames(), DELAYS))
    negotiated = photo["links"]["negotiated"].replace("{width}", str(SIDE))
    for accept, content_type, frames in (("image/avif,image/webp,*/*", "image/avif", FRAMES),
                                         ("image/webp,*/*", "image/webp", FRAMES),
                                         ("image/png,*/*", "image/jpeg", 1)):
        response = client.get(negotiated, headers={"Accept": accept})
        assert response.status_code == 200 and response.content_type == content_type, accept
        assert "Accept" in response.headers["Vary"].split(", ")
        assert len(pillow_frames(response.data)) == frames, accept
    # The stable URL of a format is its animation; /poster/ is the still.
    assert len(pillow_frames(client.get(f"/i/{photo['id']}/{SIDE}.avif").data)) == FRAMES
    poster = client.get(f"/i/{photo['id']}/poster/{SIDE}.avif")
    assert poster.status_code == 200 and len(pillow_frames(poster.data)) == 1
    assert client.get(f"/i/{photo['id']}/poster/{SIDE}", headers={"Accept": "image/avif"}).content_type == "image/avif"


@pytest.mark.parametrize("limit,reason", [({"max_frames": FRAMES - 1}, "too_many_frames"),
                                          ({"max_animation_pixels": FRAMES * SIDE * SIDE - 1}, "too_many_animation_pixels")])
def test_an_animation_past_a_limit_gets_still_renditions_and_says_why(tmp_path: Any, limit: dict[str, int], reason: str) -> None:
    from media_pipeline.queue import RecordingQueue
    from media_pipeline.web import create_app

    settings = Settings.from_env({}, data_dir=tmp_path / "var").replace(**limit)
    services = build_services(settings, RecordingQueue())
    client = create_app(settings, services).test_client()
    frames = moving_frames()
    photo = upload(client, services, gif(frames, DELAYS))
    assert photo["original"]["animated"] is True and photo["original"]["frames"] == FRAMES
    assert photo["original"]["animation"] == {"kept": False, "reason": reason}
    assert whole(photo) and not any(r["animated"] for r in photo["renditions"])
    response = client.get(photo["links"]["negotiated"].replace("{width}", str(SIDE)), headers={"Accept": "image/avif"})
    assert len(pillow_frames(response.data)) == 1
    assert images.mean_abs_diff(images.decode(response.data), frames[0]) < 4


def test_a_still_photo_says_it_is_not_animated(client: Any, services: Any) -> None:
    photo = upload(client, services, images.jpeg(images.natural(400, 300, seed=2)))
    assert (photo["original"]["animated"], photo["original"]["frames"], photo["original"]["duration_ms"]) == (False, 1, 0)
    assert "animation" not in photo["original"]
    assert photo["renditions"] and not any(r["animated"] for r in photo["renditions"])


def test_near_duplicates_come_from_the_poster_both_ways(client: Any, services: Any) -> None:
    frames = moving_frames()
    still = upload(client, services, images.jpeg(frames[0]))
    animated = upload(client, services, gif(frames, DELAYS))  # an animated repost of the still
    assert still["id"] in [d["id"] for d in animated["duplicates"]]
    other = moving_frames()[::-1]
    animation = upload(client, services, gif(other, DELAYS))
    screenshot = upload(client, services, images.png(other[0]))  # a still screenshot of the animation
    assert animation["id"] in [d["id"] for d in screenshot["duplicates"]]


def test_delete_removes_the_animated_renditions_too(client: Any, services: Any) -> None:
    photo = upload(client, services, gif(moving_frames(), DELAYS))
    assert any(r["animated"] for r in photo["renditions"])
    assert client.delete(f"/v1/photos/{photo['id']}").status_code == 204
    assert list(services.storage.list(rendition_prefix(photo["id"]))) == []
    for rendition in photo["renditions"]:
        assert client.get(rendition["url"]).status_code == 404


def test_reprocessing_a_current_animated_photo_renders_nothing(client: Any, services: Any) -> None:
    photo = upload(client, services, gif(moving_frames(), DELAYS))
    assert service.process_photo(services, photo["id"]) is service.Outcome.ALREADY_DONE


def test_the_animated_files_of_the_test_data_keep_their_frames(client: Any, services: Any, testdata: Any) -> None:
    paths = sorted(testdata.glob("formats/gif/*.gif")) + sorted(testdata.glob("formats/webp/*.webp"))
    animated = 0
    for path in paths:
        data = path.read_bytes()
        source = pyvips.Image.new_from_buffer(data, "")
        pages = source.get("n-pages") if source.get_typeof("n-pages") else 1
        if pages < 2:
            continue
        animated += 1
        reference = [np.asarray(f.convert("RGBA")) for f in ImageSequence.Iterator(Image.open(io.BytesIO(data)))]
        photo = upload(client, services, data)
        assert photo["original"]["frames"] == pages and photo["original"]["animation"]["kept"], path.name
        largest = max((r for r in whole(photo) if r["animated"]), key=lambda r: (r["width"], r["format"]))
        played = pillow_frames(client.get(largest["url"]).data, "RGBA")  # transparent pixels compare on white
        assert 1 < len(played) <= pages, path.name  # an encoder may merge frames that are identical
        assert sum(d for _, d in played) == photo["original"]["duration_ms"], path.name
        assert images.mean_abs_diff(played[0][0], reference[0]) < 6, path.name
    assert animated >= 4


def test_a_changed_webp_setting_re_renders_the_animated_webp_only_and_check_agrees(client: Any, services: Any) -> None:
    import dataclasses

    from media_pipeline.check import check

    services.settings = services.settings.replace(rendition_keep_seconds=0)
    photo = upload(client, services, gif(moving_frames(), DELAYS))
    before = {(r["format"], r["width"], r["animated"]): r["url"] for r in photo["renditions"] if r["aspect"] == "original"}
    assert check(services).ok
    formats = tuple(dataclasses.replace(e, quality=60) if e.format == "webp" else e for e in services.preset.formats)
    services.preset = dataclasses.replace(services.preset, formats=formats)
    result = service.run_photo(services, photo["id"])
    assert result.outcome is service.Outcome.DONE and result.bytes_written > 0 and result.bytes_deleted > 0
    after = {(r["format"], r["width"], r["animated"]): r["url"]
             for r in client.get(f"/v1/photos/{photo['id']}").get_json()["renditions"] if r["aspect"] == "original"}
    assert after.keys() == before.keys()
    for kind, url in after.items():
        assert (url == before[kind]) == (kind[0] != "webp"), kind  # only the animated WebPs are new
    assert check(services).ok  # the retired WebPs are gone from storage and catalog alike
    assert service.process_photo(services, photo["id"]) is service.Outcome.ALREADY_DONE


def test_a_deleted_animated_photos_purge_covers_its_poster_urls() -> None:
    from media_pipeline import purge
    from media_pipeline.models import Rendition

    moving = Rendition(640, 480, "avif", 9, "renditions/p/m/640.avif", "m", animated=True)
    poster = Rendition(640, 480, "jpeg", 9, "renditions/p/j/640.jpg", "j")
    paths = purge.photo_paths("p", [moving, poster])
    assert {"/i/p/640.avif", "/i/p/640", "/i/p/poster/640.jpg", "/i/p/poster/640", "/i/p/m/640.avif"} <= set(paths)
    assert not any("/poster/" in p for p in purge.photo_paths("p", [poster]))  # a still photo has no poster URLs
