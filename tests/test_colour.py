"""Wide colour: a wide-gamut source keeps the colours outside sRGB (Display P3 renditions with the
profile embedded), sRGB sources stay untagged sRGB, and MP_COLOR_GAMUT=srgb keeps the old clipping.
Checked as a viewer sees it: CIEDE2000 of what each rendition's own profile says, against Little CMS."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import pyvips
from PIL import Image

from config.settings import Settings
from media_pipeline import colour, pipeline, service
from media_pipeline.models import Preset
from tests import images
from tests.colour_diff import ciede2000, convert, lab

LIMIT = 50_000_000
P3_ICC = bytes(images.to_vips(np.zeros((2, 2, 3), np.uint8)).icc_transform("p3").get("icc-profile-data"))
# Display P3 numbers far outside sRGB (P3's own red and green corners, nearly) and a mid grey-blue inside it.
SATURATED = {"red": (245, 20, 25), "green": (25, 240, 40), "inside": (90, 110, 150)}


def preset_for(gamut: str) -> Preset:
    preset = Settings.from_env({"MP_COLOR_GAMUT": gamut}).preset()
    return Preset(widths=(320,), formats=preset.formats)


def p3_patches() -> bytes:
    """A 320 x 240 PNG in Display P3: three flat patches side by side, the profile embedded."""
    pixels = np.zeros((240, 320, 3), np.uint8)
    for i, value in enumerate(SATURATED.values()):
        pixels[:, i * 107 : (i + 1) * 107] = value
    image = images.to_vips(pixels).copy()
    image.set_type(pyvips.GValue.blob_type, "icc-profile-data", P3_ICC)
    return image.pngsave_buffer()


def patch_lab(data: bytes) -> tuple[dict[str, np.ndarray], bytes | None]:
    """The mean Lab of each patch's middle, as the file's own profile (or none: sRGB) says."""
    picture = Image.open(io.BytesIO(data))
    icc = picture.info.get("icc_profile")
    pixels = np.asarray(picture.convert("RGB"))
    scale = pixels.shape[1] / 320
    found = {}
    for i, name in enumerate(SATURATED):
        middle = pixels[60:180, int((i * 107 + 25) * scale) : int(((i + 1) * 107 - 25) * scale)]
        found[name] = lab(middle, icc).reshape(-1, 3).mean(0)
    return found, icc


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    """Little CMS's conversion of each patch into Display P3 (a no-op but for rounding), in Lab."""
    return {name: lab(convert(np.full((4, 4, 3), value, np.uint8), P3_ICC, P3_ICC), P3_ICC).reshape(-1, 3).mean(0)
            for name, value in SATURATED.items()}


def test_the_profile_check_tells_wide_gamuts_from_srgb() -> None:
    srgb_icc = bytes(images.to_vips(np.zeros((2, 2, 3), np.uint8)).icc_transform("srgb").get("icc-profile-data"))
    assert colour.is_wide_gamut(P3_ICC)
    assert not colour.is_wide_gamut(srgb_icc)
    assert not colour.is_wide_gamut(b"not a profile")


def test_colours_outside_srgb_survive_in_every_format(reference: dict[str, np.ndarray]) -> None:
    result = pipeline.process(p3_patches(), preset_for("p3"), LIMIT)
    assert {r.format for r in result.renditions} >= {"avif", "jpeg"}
    for rendition in result.renditions:
        found, icc = patch_lab(rendition.data)
        assert icc and colour.is_wide_gamut(icc), f"{rendition.format} is not tagged with a wide-gamut profile"
        for name in SATURATED:
            delta = float(ciede2000(found[name], reference[name]))
            assert delta <= 2, f"{rendition.format} {name}: ΔE2000 {delta:.2f}"


def test_srgb_setting_clips_to_untagged_srgb_as_before(reference: dict[str, np.ndarray]) -> None:
    result = pipeline.process(p3_patches(), preset_for("srgb"), LIMIT)
    for rendition in result.renditions:
        found, icc = patch_lab(rendition.data)
        assert icc is None
        # Inside sRGB nothing moves; P3's red and green are clipped past the bar the P3 renditions meet.
        assert float(ciede2000(found["inside"], reference["inside"])) <= 2
        assert float(ciede2000(found["red"], reference["red"])) > 2
        assert float(ciede2000(found["green"], reference["green"])) > 3


def test_srgb_sources_stay_untagged_and_unchanged() -> None:
    rgb = images.scene(320, 240, seed=11)
    p3_result = pipeline.process(images.jpeg(rgb, quality=95), preset_for("p3"), LIMIT)
    srgb_result = pipeline.process(images.jpeg(rgb, quality=95), preset_for("srgb"), LIMIT)
    for ours, before in zip(p3_result.renditions, srgb_result.renditions):
        assert Image.open(io.BytesIO(ours.data)).info.get("icc_profile") is None
        assert images.mean_abs_diff(images.decode(ours.data), images.decode(before.data).numpy()) < 0.5


def test_placeholder_and_hashes_stay_srgb() -> None:
    """Apps draw the placeholder without colour management: its colour is the sRGB one."""
    flat = pipeline.process(p3_patches(), preset_for("p3"), LIMIT)
    clipped = pipeline.process(p3_patches(), preset_for("srgb"), LIMIT)
    assert flat.placeholder == clipped.placeholder
    assert flat.hashes.pdq == clipped.hashes.pdq


def test_a_p3_photo_and_its_srgb_repost_are_near_duplicates(client: Any, services: Any) -> None:
    """Fingerprints come from the sRGB view: the same picture found whatever gamut it came in."""
    services.preset = preset_for("p3")
    rgb = images.natural(640, 480, seed=9)
    ids = []
    for data in (images.with_profile(rgb, "p3", Q=95), images.jpeg(rgb, quality=90)):
        photo_id = client.post("/v1/photos", data={"file": (io.BytesIO(data), "photo.jpg")}).get_json()["id"]
        assert service.process_photo(services, photo_id) is service.Outcome.DONE
        ids.append(photo_id)
    first = client.get(f"/v1/photos/{ids[0]}").get_json()
    assert {r["gamut"] for r in first["renditions"]} == {"p3"}
    repost = client.get(f"/v1/photos/{ids[1]}").get_json()
    assert {r["gamut"] for r in repost["renditions"]} == {"srgb"}
    assert [d["id"] for d in repost["duplicates"]] == [ids[0]]


def test_gamut_and_range_settings_give_new_keys_and_srgb_sdr_keeps_the_old_ones() -> None:
    """A CDN caches a rendition's URL forever: changing what its pixels are must change its key.
    At srgb + sdr (all renditions before these settings) the specs are what they were."""
    import hashlib
    import json
    from dataclasses import asdict

    from media_pipeline import PIPELINE_VERSION

    def spec_before(enc: Any) -> str:  # models.EncoderSettings.spec as it was before MP_COLOR_GAMUT and MP_HDR
        # (``avif_trellis`` and ``encoder`` came later still: their defaults were never hashed.)
        fields = {k: v for k, v in asdict(enc).items() if k not in ("gamut", "dynamic_range") and not (k == "auto" and v is None)
                  and not (k == "avif_trellis" and v) and not (k == "encoder" and v == "default")}
        return hashlib.sha256(json.dumps({"pipeline": PIPELINE_VERSION, **fields}, sort_keys=True).encode()).hexdigest()[:10]

    specs = {}
    for gamut in ("p3", "srgb"):
        for mode in ("keep", "sdr"):
            preset = Settings.from_env({"MP_COLOR_GAMUT": gamut, "MP_HDR": mode}).preset()
            specs[gamut, mode] = {enc.format: enc.spec for enc in preset.formats}
            if (gamut, mode) == ("srgb", "sdr"):
                assert specs[gamut, mode] == {enc.format: spec_before(enc) for enc in preset.formats}
    assert len({tuple(sorted(s.items())) for s in specs.values()}) == 4
