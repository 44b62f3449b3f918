"""JPEG through jpegli (the default preset's JPEG encoder, encode_jpegli.py): the picture libvips'
JPEG showed, seen through each rendition's own profile; a Display P3 profile embedded whole; libvips'
encoder when pyjpegli is missing; and a preset that asks jpegli for what it cannot do is refused."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import pyvips

from config.presets import load_preset
from config.settings import Settings
from media_pipeline import encode, encode_jpegli, pipeline
from media_pipeline.models import EncoderSettings, Preset
from tests import images
from tests.colour_diff import ciede2000, lab

LIMIT = 60_000_000
P3_ICC = bytes(images.to_vips(np.zeros((2, 2, 3), np.uint8)).icc_transform("p3").get("icc-profile-data"))


def jpeg_presets(widths: tuple[int, ...]) -> tuple[Preset, Preset]:
    """(the default preset's JPEG, which is jpegli; libvips' progressive q80, the JPEG before it)."""
    preset = Settings.from_env({}).preset()
    jpegli = preset.encoder("jpeg")
    assert jpegli is not None and jpegli.encoder == "jpegli"
    before = dataclasses.replace(jpegli, encoder="default", quality=80, progressive=True)
    return Preset(widths=widths, formats=(jpegli,)), Preset(widths=widths, formats=(before,))


def seen(data: bytes) -> tuple[np.ndarray, bytes | None]:
    """Lab of what a colour-managed viewer shows of a JPEG, and the profile it used."""
    image = images.decode(data)
    icc = bytes(image.get("icc-profile-data")) if image.get_typeof("icc-profile-data") else None
    return lab(image.numpy()[..., :3], icc), icc


@pytest.fixture
def without_pyjpegli(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(sys.modules, "pyjpegli", None)  # ``import pyjpegli`` now raises ImportError
    encode_jpegli.binding.cache_clear()
    yield
    encode_jpegli.binding.cache_clear()


@pytest.mark.testdata
def test_a_wide_gamut_photo_looks_as_it_did_with_libvips(testdata: Path) -> None:
    jpegli, before = jpeg_presets((1080, 320))
    data = (testdata / "camera-exif" / "IMG_9424.JPG").read_bytes()  # Display P3
    ours = {r.width: r for r in pipeline.process(data, jpegli, LIMIT).renditions}
    theirs = {r.width: r for r in pipeline.process(data, before, LIMIT).renditions}
    assert set(ours) == set(theirs) == {1080, 320}
    for width in ours:
        (got, got_icc), (was, was_icc) = seen(ours[width].data), seen(theirs[width].data)
        assert got_icc is not None and got_icc == was_icc  # the same Display P3 profile, embedded whole
        delta = ciede2000(got, was)
        # Two lossy encodings of one level: alike on the whole, apart on single pixels of fine detail.
        assert delta.mean() < 1.5 and np.percentile(delta, 95) < 4, (width, delta.mean(), np.percentile(delta, 95))
        assert ours[width].gamut == "p3"


def test_saturated_p3_colours_survive_jpegli() -> None:
    pixels = images.natural(480, 320, seed=5)
    pixels[:, :160] = (245, 20, 25)  # P3's red corner, far outside sRGB
    source = images.to_vips(pixels).copy()
    source.set_type(pyvips.GValue.blob_type, "icc-profile-data", P3_ICC)
    jpegli, before = jpeg_presets((320,))
    (got, icc), (was, _) = (seen(pipeline.process(source.pngsave_buffer(), p, LIMIT).renditions[0].data) for p in (jpegli, before))
    assert icc == P3_ICC
    red = np.s_[20:200, 10:90]
    assert ciede2000(got[red], was[red]).mean() < 1.0
    assert ciede2000(got[red].reshape(-1, 3).mean(0), lab(np.array([[[245, 20, 25]]], np.uint8), P3_ICC)[0, 0]) < 2.0


def test_a_profile_longer_than_one_segment_is_read_back_whole() -> None:
    jpeg = encode_jpegli.encode(images.to_vips(images.scene(64, 48)), 85, encode_jpegli.binding())
    profile = P3_ICC + bytes(range(256)) * 600  # 150 KB: three APP2 segments
    data = encode_jpegli.with_icc(jpeg, profile)
    decoded = images.decode(data)
    assert bytes(decoded.get("icc-profile-data")) == profile
    assert images.mean_abs_diff(decoded, images.scene(64, 48)) < 4


def test_grey_and_alpha_levels_become_rgb_jpegs() -> None:
    enc = EncoderSettings("jpeg", 85, encoder="jpegli")
    grey = images.to_vips(images.scene(120, 80)).colourspace("b-w")
    with_alpha = images.to_vips(images.scene(120, 80)).bandjoin(255)
    for image in (grey, with_alpha):
        decoded = images.decode(encode.encode(image, enc))
        assert decoded.bands == 3 and (decoded.width, decoded.height) == (120, 80)
        assert images.mean_abs_diff(decoded, image.flatten(background=[255] * 3) if image.hasalpha() else image) < 4


@pytest.mark.usefixtures("without_pyjpegli")
def test_without_pyjpegli_jpeg_falls_back_to_libvips_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    jpegli, _ = jpeg_presets((320,))
    picture = images.natural(480, 320, seed=2)
    with caplog.at_level(logging.WARNING, logger="media_pipeline.encode_jpegli"):
        rendition = pipeline.process(images.png(picture), jpegli, LIMIT).renditions[0]
    assert encode_jpegli.binding() is None
    assert any("pyjpegli" in record.getMessage() and "libvips" in record.getMessage() for record in caplog.records)
    assert images.mean_abs_diff(images.decode(rendition.data), picture) < 6


@pytest.mark.parametrize("jpeg", ['quality = 83\nencoder = "jpegli"\nprogressive = true',
                                  'quality = 83\nencoder = "jpegli"\ntrellis = true',
                                  'quality = 83\nencoder = "mozjpeg"'])
def test_a_preset_asking_jpegli_for_what_it_cannot_do_is_refused(tmp_path: Path, jpeg: str) -> None:
    path = tmp_path / "presets.toml"
    path.write_text(f"[default]\nwidths = [320]\n[default.formats.jpeg]\n{jpeg}\n")
    with pytest.raises(ValueError, match="encoder|jpegli"):
        load_preset(path)


def test_the_encoder_is_part_of_the_rendition_key_and_the_default_keeps_the_old_one() -> None:
    default = EncoderSettings("jpeg", 83)
    assert dataclasses.replace(default, encoder="jpegli").spec != default.spec
    assert dataclasses.replace(default, encoder="default").spec == default.spec
