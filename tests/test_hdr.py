"""HDR photos keep their gain map: probe finds it, JPEG renditions are Ultra HDR with the gain map
resized, oriented and cropped with the picture, the SDR base every other screen shows stays the
source's, and private metadata still goes. Checked as a screen would show it: libvips' own
reconstruction of the HDR picture (``uhdr2scRGB``) from what we wrote."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvips
from PIL import Image

from config.settings import Settings
from media_pipeline import colour, crops, hdr, pipeline, service
from media_pipeline.framing import Box, Focus, Point
from media_pipeline.models import Preset
from media_pipeline.probe import probe
from tests import images
from tests.conftest import TESTDATA

LIMIT = 50_000_000
BOOST = 8.0


def preset_for(mode: str, widths: tuple[int, ...] = (320, 160)) -> Preset:
    preset = Settings.from_env({"MP_HDR": mode}).preset()
    return Preset(widths=widths, formats=preset.formats)


def upright_pair() -> tuple[np.ndarray, np.ndarray]:
    """An upright SDR picture (640 x 480) and its gain map (160 x 120, the usual quarter size)
    whose bright block, top left, only an HDR screen shows brighter."""
    sdr = images.scene(640, 480, seed=21)
    gainmap = np.full((120, 160), 40, np.uint8)
    gainmap[:40, :60] = 255
    return sdr, gainmap


def stored(upright: np.ndarray, orientation: int) -> np.ndarray:
    return np.asarray(Image.fromarray(upright).transpose(images.INVERSE[orientation])) if orientation in images.INVERSE else upright


def ultra_hdr(orientation: int = 1) -> bytes:
    sdr, gainmap = upright_pair()
    return images.ultra_hdr_jpeg(stored(sdr, orientation), stored(gainmap, orientation), BOOST,
                                 exif=images.exif_bytes(orientation=orientation, gps=True))


def gainmap_of(data: bytes) -> np.ndarray:
    image = pyvips.Image.uhdrload_buffer(data)
    return image.get_gainmap().numpy()  # while ``image`` lives: the gain map borrows its data


def hdr_picture(data: bytes) -> np.ndarray:
    """What an HDR screen shows: linear light, 1.0 = SDR white."""
    return pyvips.Image.uhdrload_buffer(data).uhdr2scRGB().numpy()[..., :3]


def test_probe_finds_the_gain_map_and_only_there() -> None:
    assert probe(ultra_hdr(), LIMIT).hdr == hdr.ULTRA_HDR
    assert probe(images.jpeg(images.scene(64, 48)), LIMIT).hdr is None


@pytest.mark.parametrize("orientation", [1, 6, 3])
def test_jpeg_renditions_are_ultra_hdr_with_the_gain_map_resized_and_oriented(orientation: int) -> None:
    sdr, gainmap = upright_pair()
    result = pipeline.process(ultra_hdr(orientation), preset_for("keep"), LIMIT)
    jpegs = [r for r in result.renditions if r.format == "jpeg"]
    assert jpegs and all(r.hdr for r in jpegs)
    assert not any(r.hdr for r in result.renditions if r.format != "jpeg")  # AVIF, WebP: SDR
    for r in jpegs:
        ours = gainmap_of(r.data)
        # The source's base-to-gain-map ratio (4) at every width, upright like the picture.
        assert ours.shape[:2] == (round(r.height / 4), round(r.width / 4))
        expected = np.asarray(Image.fromarray(gainmap).resize((ours.shape[1], ours.shape[0]), Image.Resampling.BOX))
        assert np.abs(ours.astype(int).squeeze() - expected.astype(int)).mean() < 12
        # The SDR base is the source's, as any JPEG viewer shows it.
        assert images.mean_abs_diff(images.decode(r.data), sdr) < 4
        # An HDR screen shows the block BOOST times brighter than the same pixels in SDR.
        bright = hdr_picture(r.data)[: r.height // 8, : r.width // 8].mean()
        base = np.asarray(images.decode(r.data).colourspace("scrgb").numpy())[: r.height // 8, : r.width // 8, :3].mean()
        assert 0.7 * BOOST < bright / base < 1.3 * BOOST


def test_the_gain_map_wrong_way_up_would_be_caught() -> None:
    """The orientation check above can fail: the stored (unrotated) gain map is far from upright."""
    _, gainmap = upright_pair()
    turned = stored(gainmap, 6)
    expected = np.asarray(Image.fromarray(gainmap).resize((turned.shape[1], turned.shape[0]), Image.Resampling.BOX))
    assert np.abs(turned.astype(int) - expected.astype(int)).mean() > 12


def test_private_metadata_goes_but_the_gain_map_metadata_stays() -> None:
    result = pipeline.process(ultra_hdr(6), preset_for("keep"), LIMIT)
    for r in result.renditions:
        decoded = images.decode(r.data)
        assert b"GPS" not in r.data and not decoded.get_typeof("exif-data")
        # The gain-map picture inside an Ultra HDR JPEG keeps libultrahdr's own EXIF block: no source tag in it.
        assert images.exif_is_generic(r.data)
        if r.hdr:
            xmp = decoded.get("xmp-data") if decoded.get_typeof("xmp-data") else b""
            assert b"hdrgm:Version" in xmp or b"urn:iso:std:iso:ts:21496:-1" in r.data
            assert b"exif:" not in xmp and b"GPS" not in xmp and b"tiff:" not in xmp


def test_sdr_setting_writes_plain_jpegs_of_the_same_base() -> None:
    kept = pipeline.process(ultra_hdr(), preset_for("keep"), LIMIT)
    flat = pipeline.process(ultra_hdr(), preset_for("sdr"), LIMIT)
    for ours, plain in zip(kept.renditions, flat.renditions):
        assert not plain.hdr and images.decode(plain.data).get("vips-loader") != "uhdrload_buffer"
        assert images.mean_abs_diff(images.decode(ours.data), images.decode(plain.data)) < 1.5


def test_crops_cut_the_gain_map_with_the_picture() -> None:
    job = pipeline.prepare(ultra_hdr(), preset_for("keep", widths=(640,)), LIMIT)
    focus = Focus(focal_point=Point(0.1, 0.1), subject=Box(0.0, 0.0, 0.2, 0.2), source="user")
    variant = crops.CropVariant("1:1", 240, 240)
    encoders = tuple(e for e in preset_for("keep").formats if e.format == "jpeg")
    (out,) = crops.iter_crops(list(job.levels.values()), (variant,), encoders, focus)
    assert out.hdr
    ours = gainmap_of(out.data).squeeze()
    assert ours.shape == (60, 60)
    # The 480 x 480 window at the left edge: the bright block's 240 x 160 corner is in it, scaled by a half.
    window = upright_pair()[1][:120, :120]
    expected = np.asarray(Image.fromarray(window).resize((60, 60), Image.Resampling.BOX))
    assert np.abs(ours.astype(int) - expected.astype(int)).mean() < 12


def test_the_api_says_which_photos_and_renditions_are_hdr(client: Any, services: Any) -> None:
    services.preset = preset_for("keep")
    response = client.post("/v1/photos", data={"file": (io.BytesIO(ultra_hdr()), "hdr.jpg")})
    photo_id = response.get_json()["id"]
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    body = client.get(f"/v1/photos/{photo_id}").get_json()
    assert body["original"]["hdr"] is True
    assert {(r["format"], r["hdr"]) for r in body["renditions"]} >= {("jpeg", True), ("avif", False)}
    assert all(r["hdr"] is (r["format"] == "jpeg") for r in body["renditions"])
    jpeg = next(r for r in body["renditions"] if r["format"] == "jpeg")
    served = client.get(jpeg["url"])
    assert served.status_code == 200 and gainmap_of(served.data).shape[:2] == (round(jpeg["height"] / 4), round(jpeg["width"] / 4))


# --------------------------------------------------------------------------- real files
@pytest.mark.testdata
@pytest.mark.parametrize("name", ["formats/jpeg/ultra-hdr.jpg", "formats/heic/iphone_13_pro_max.HEIC"])
def test_real_hdr_photos_keep_their_gain_map(name: str, testdata: Path) -> None:
    data = (TESTDATA / name).read_bytes()
    info = probe(data, LIMIT)
    assert info.hdr in (hdr.ULTRA_HDR, hdr.APPLE)
    result = pipeline.process(data, preset_for("keep", widths=(1080, 320)), LIMIT)
    sdr_only = pipeline.process(data, preset_for("sdr", widths=(1080, 320)), LIMIT)
    for ours, plain in zip(result.renditions, sdr_only.renditions):
        assert ours.hdr is (ours.format == "jpeg")
        # The SDR base is what the SDR pipeline makes of the source (its base as shot).
        assert images.mean_abs_diff(images.decode(ours.data), images.decode(plain.data)) < 1.5
        if not ours.hdr:
            continue
        # A wide-gamut base keeps its profile in the Ultra HDR JPEG too.
        icc = images.decode(ours.data).get("icc-profile-data") if ours.gamut == "p3" else None
        assert ours.gamut == "srgb" or colour.is_wide_gamut(bytes(icc))
        gm = gainmap_of(ours.data)
        ratio = 4 if info.hdr == hdr.ULTRA_HDR else 2  # as in the source files
        assert abs(gm.shape[0] - ours.height / ratio) <= 1 and abs(gm.shape[1] - ours.width / ratio) <= 1
        picture = hdr_picture(ours.data)
        assert np.percentile(picture, 99.5) > 1.5, "an HDR screen shows nothing brighter than SDR white"


@pytest.mark.testdata
def test_ultra_hdr_rendition_shows_the_sources_hdr_picture(testdata: Path) -> None:
    data = (TESTDATA / "formats/jpeg/ultra-hdr.jpg").read_bytes()
    (jpeg,) = [r for r in pipeline.process(data, preset_for("keep", widths=(320,)), LIMIT).renditions if r.format == "jpeg"]
    source = pyvips.Image.uhdrload_buffer(data).uhdr2scRGB()
    reference = source.resize(jpeg.width / source.width, vscale=jpeg.height / source.height, kernel="linear").numpy()[..., :3]
    reference, ours = np.maximum(reference, 0), np.maximum(hdr_picture(jpeg.data), 0)
    stops = np.abs(np.log2(ours + 1 / 64) - np.log2(reference + 1 / 64))
    assert float(stops.mean()) < 0.3, f"{stops.mean():.2f} stops from the source's HDR picture on average"
    # Its SDR base alone (what a rendition without the gain map shows) is far further off.
    base = np.maximum(images.decode(jpeg.data).colourspace("scrgb").numpy()[..., :3], 0)
    assert float(np.abs(np.log2(base + 1 / 64) - np.log2(reference + 1 / 64)).mean()) > 3 * float(stops.mean())


@pytest.mark.testdata
def test_apple_gain_map_follows_the_upright_picture(testdata: Path) -> None:
    """libheif turns the picture and its auxiliary gain map alike; ours must match the aux image."""
    import pillow_heif

    data = (TESTDATA / "formats/heic/iphone_13_pro_max.HEIC").read_bytes()
    heif = pillow_heif.open_heif(io.BytesIO(data))
    aux = heif.get_aux_image(heif.info["aux"][hdr.APPLE_GAINMAP][0])
    apple = np.asarray(Image.frombytes("L", aux.size, bytes(aux.data), "raw", "L", aux.stride), np.float64)
    (jpeg,) = [r for r in pipeline.process(data, preset_for("keep", widths=(320,)), LIMIT).renditions if r.format == "jpeg"]
    ours = gainmap_of(jpeg.data).squeeze().astype(np.float64)
    theirs = np.asarray(Image.fromarray(apple.astype(np.uint8)).resize((ours.shape[1], ours.shape[0]), Image.Resampling.BOX), np.float64)
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.9
    turned = np.rot90(theirs, 2)
    assert np.corrcoef(ours.ravel(), turned.ravel())[0, 1] < 0.9  # the check can fail


def test_a_broken_gain_map_leaves_the_sdr_picture() -> None:
    """The header says Ultra HDR but no gain map follows: rendered as the plain JPEG it also is."""
    sdr = images.scene(320, 240, seed=4)
    image = images.to_vips(sdr).copy()
    image.set_type(pyvips.GValue.blob_type, "xmp-data",
                   b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                   b'<rdf:Description xmlns:hdrgm="http://ns.adobe.com/hdr-gain-map/1.0/" hdrgm:Version="1.0"/></rdf:RDF></x:xmpmeta>')
    data = image.jpegsave_buffer(Q=92, keep="xmp")
    assert probe(data, LIMIT).hdr == hdr.ULTRA_HDR
    result = pipeline.process(data, preset_for("keep"), LIMIT)
    assert result.renditions and not any(r.hdr for r in result.renditions)
    assert images.mean_abs_diff(images.decode(result.renditions[-1].data), sdr) < 4


def test_an_on_demand_rendition_of_an_hdr_photo_keeps_its_gain_map(client: Any, services: Any) -> None:
    services.preset = preset_for("keep")
    photo_id = client.post("/v1/photos", data={"file": (io.BytesIO(ultra_hdr(6)), "hdr.jpg")}).get_json()["id"]
    assert service.process_photo(services, photo_id) is service.Outcome.DONE
    rendition = service.render_on_demand(services, photo_id, 240, "jpeg")
    assert rendition is not None and rendition.hdr and (rendition.width, rendition.height) == (240, 180)
    assert gainmap_of(services.storage.get(rendition.key)).shape[:2] == (45, 60)


# --------------------------------------------------------------------------- HDR with no SDR picture inside
def pq_code(nits: float) -> float:
    """SMPTE ST 2084: the PQ signal (0..1) of a light level."""
    y = (nits / 10000.0) ** (2610 / 16384)
    return float(((3424 / 4096 + 2413 / 4096 * 32 * y) / (1 + 2392 / 4096 * 32 * y)) ** (2523 / 4096 * 128))


def hlg_code(scene: float) -> float:
    """BT.2100 HLG OETF of a scene light level (0..1)."""
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    return float(np.sqrt(3 * scene) if scene <= 1 / 12 else a * np.log(12 * scene - b) + c)


def ten_bit_heic(codes: tuple[float, float, float], transfer: int) -> bytes:
    """A 10-bit BT.2020 HEIC of three grey columns at the given signal levels (0..1)."""
    import pillow_heif

    signal = np.zeros((120, 300, 3), np.uint16)
    for i, code in enumerate(codes):
        signal[:, i * 100 : (i + 1) * 100] = round(code * 1023) << 6
    heif = pillow_heif.from_bytes(mode="RGB;16", size=(300, 120), data=signal.tobytes())
    out = io.BytesIO()
    heif.save(out, quality=-1, color_primaries=9, transfer_characteristics=transfer, matrix_coefficients=9, full_range_flag=1)
    return out.getvalue()


@pytest.mark.parametrize("transfer,codes", [
    (16, (pq_code(203 * 0.18), pq_code(203), pq_code(1000))),  # PQ: 18% grey, reference white, 1000 nits
    # HLG on a 1000-nit display: the scene levels whose displayed light is 18% of 203 nits, 203 nits, 1000 nits.
    (18, (hlg_code((0.18 * 0.203) ** (1 / 1.2)), hlg_code(0.203 ** (1 / 1.2)), hlg_code(1.0))),
])
def test_hdr_with_no_sdr_picture_is_tone_mapped_and_kept(transfer: int, codes: tuple[float, float, float]) -> None:
    data = ten_bit_heic(codes, transfer)
    assert probe(data, LIMIT).hdr == {16: "pq", 18: "hlg"}[transfer]
    result = pipeline.process(data, preset_for("keep", widths=(300,)), LIMIT)
    assert not any(r.hdr for r in pipeline.process(data, preset_for("sdr", widths=(300,)), LIMIT).renditions)
    for r in result.renditions:
        assert r.hdr is (r.format == "jpeg")  # a gain map made from the HDR picture, where a format carries one
        if r.hdr:
            # An HDR screen gets the HDR picture back: grey, white and 1000 nits at 0.18, 1 and 4.9 x white.
            light = hdr_picture(r.data)[60, :, :3].mean(axis=1)
            for column, expected in ((50, 0.18), (150, 1.0), (250, 1000 / 203)):
                assert abs(light[column] / expected - 1) < 0.2, (column, light[column], expected)
        shown = images.decode(r.data).icc_transform("srgb", embedded=True, intent="relative").numpy()[60, :, :3].astype(float)
        grey, white, highlight = shown[50].mean(), shown[150].mean(), shown[250].mean()
        # Mid grey stays where an SDR camera puts it (sRGB 18%: 118), white near white, highlights above it.
        assert abs(grey - 118) <= 6 and white >= 240 and highlight >= white, (r.format, grey, white, highlight)
    # Read as plain numbers (what the 8-bit decode did before), white came out grey.
    import pillow_heif

    naive = np.asarray(pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True).to_pillow())[60, 150].mean()
    assert naive < 220
