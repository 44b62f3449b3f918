"""The pipeline on real files nobody here made (../shared/testdata; must run in CI, skipped without it).

No file name is special-cased: every check is a rule over a whole folder.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pillow_heif
import pytest
import pyvips
from PIL import Image, ImageCms

from media_pipeline import colour, pipeline, service, vips
from media_pipeline.errors import MediaError
from media_pipeline.models import ImageFormat, Preset
from media_pipeline.probe import probe
from media_pipeline.sniff import sniff
from tests import images
from tests.conftest import TESTDATA

pytestmark = pytest.mark.testdata
LIMIT = 50_000_000
pillow_heif.register_heif_opener()


def files(*folders: str) -> list[Path]:
    found = []
    for folder in folders:
        base = TESTDATA / folder
        if base.is_dir():
            found += sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith(("LICENSE", "README")))
    return found or [Path("missing")]


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(TESTDATA)) if p.is_absolute() and TESTDATA in p.parents else str(p) for p in paths]


@pytest.fixture(scope="module")
def quick_preset() -> Preset:
    from config.settings import Settings

    preset = Settings.from_env({}).preset()
    return Preset(widths=(320,), formats=preset.formats)


def is_image(path: Path) -> bool:
    try:
        sniff(path.read_bytes()[:64])
        return True
    except MediaError:
        return False


# --------------------------------------------------------------------------- orientation
def orientation_files() -> list[Path]:
    return [p for p in files("exif-orientation") if p.name != "missing" and is_image(p)]


@pytest.mark.parametrize("path", files("exif-orientation"), ids=ids(files("exif-orientation")))
def test_every_orientation_ends_upright(path: Path, testdata: Path, quick_preset: Preset) -> None:
    job = pipeline.prepare(path.read_bytes(), quick_preset, LIMIT)
    out = job.levels[job.widths[0]]
    # References: the files of this folder that need no rotation, with the same upright shape.
    refs = []
    for other in orientation_files():
        info = probe(other.read_bytes(), LIMIT)
        if info.orientation == 1 and (info.width > info.height) == (out.width > out.height):
            refs.append(pipeline.prepare(other.read_bytes(), quick_preset, LIMIT).levels[320])
    assert refs, "no upright reference of this shape in the folder"
    best = min(images.mean_abs_diff(out, ref) for ref in refs)
    assert best < 4, f"{path.name}: not upright (distance {best:.1f})"
    # The check can fail: each of the other seven orientations of the output is far from the reference.
    pil = Image.fromarray(out.numpy()[..., :3])
    for method in images.DISPLAY.values():
        turned = np.asarray(pil.transpose(method))
        if turned.shape == np.asarray(pil).shape:
            assert min(images.mean_abs_diff(turned, ref) for ref in refs) > best + 5


def heif_files() -> list[Path]:
    return [p for p in files("formats", "camera-exif") if p.name != "missing" and is_heif(p)]


def is_heif(path: Path) -> bool:
    try:
        return sniff(path.read_bytes()[:64]) in (ImageFormat.HEIC, ImageFormat.AVIF)
    except MediaError:
        return False


@pytest.mark.parametrize("path", heif_files() or [Path("missing")], ids=ids(heif_files() or [Path("missing")]))
def test_heif_and_avif_are_rotated_exactly_once(path: Path, testdata: Path, quick_preset: Preset) -> None:
    """libheif applies irot/imir; the EXIF orientation these files also carry must not be applied again."""
    data = path.read_bytes()
    if sniff(data[:64]) is ImageFormat.HEIC:
        heif = pillow_heif.open_heif(data)
        reference = pyvips.Image.new_from_array(np.asarray(heif.to_pillow().convert("RGBA"))).copy(interpretation="srgb")
    else:
        reference = pyvips.Image.heifload_buffer(data)
    job = pipeline.prepare(data, quick_preset, LIMIT)
    out = job.levels[job.widths[0]]
    ref_h, ref_w = reference.height, reference.width
    assert abs(out.height / out.width - ref_h / ref_w) < 0.02, "rotated relative to what libheif returns"
    assert images.mean_abs_diff(out, reference) < 8


# --------------------------------------------------------------------------- metadata
RENDERABLE = files("camera-exif", "formats")


@pytest.mark.parametrize("path", RENDERABLE, ids=ids(RENDERABLE))
def test_no_rendition_carries_exif_gps_xmp_or_iptc(path: Path, testdata: Path, quick_preset: Preset) -> None:
    data = path.read_bytes()
    result = pipeline.process(data, quick_preset, LIMIT)
    assert result.renditions
    for r in result.renditions:
        decoded = images.decode(r.data)
        fields = set(decoded.get_fields())
        assert not fields & {"exif-data", "iptc-data"}, (r.format, decoded.get_fields())
        assert b"GPSInfo" not in r.data and b"GPS" not in r.data
        if r.hdr:
            # An Ultra HDR JPEG keeps the gain-map metadata it needs (hdrgm XMP or ISO 21496-1), and
            # its embedded gain-map picture the generic EXIF block libultrahdr writes: no source tag.
            xmp = decoded.get("xmp-data") if "xmp-data" in fields else b""
            assert not xmp or b"hdrgm" in xmp and b"exif:" not in xmp and b"tiff:" not in xmp
            assert r.data.count(b"Exif\x00\x00") <= 1 and images.exif_is_generic(r.data)
        else:
            assert "xmp-data" not in fields
            assert b"Exif\x00\x00" not in r.data and b"<x:xmpmeta" not in r.data
        assert decoded.interpretation in ("srgb", "b-w") and decoded.format == "uchar"


# --------------------------------------------------------------------------- colour
def default_cmyk_profile() -> bytes:
    return images.to_vips(np.zeros((2, 2, 3), np.uint8)).icc_transform("cmyk").get("icc-profile-data")


def profiled_files() -> list[Path]:
    chosen = []
    for path in RENDERABLE:
        if path.name == "missing":
            continue
        try:
            info = probe(path.read_bytes(), LIMIT)
        except MediaError:
            continue
        header = vips.load(path.read_bytes(), info.format)
        if info.icc_profile or header.interpretation == "cmyk":
            chosen.append(path)
    return chosen or [Path("missing")]


@pytest.mark.parametrize("path", profiled_files(), ids=ids(profiled_files()))
def test_colour_managed_inputs_match_a_reference_conversion(path: Path, testdata: Path, quick_preset: Preset) -> None:
    """Wide-gamut, CMYK (with or without a profile) and grey inputs against Little CMS through Pillow."""
    data = path.read_bytes()
    job = pipeline.prepare(data, quick_preset, LIMIT)
    ours = job.levels[job.widths[0]]
    source = Image.open(io.BytesIO(data))
    source.seek(0)
    icc = source.info.get("icc_profile") or (default_cmyk_profile() if source.mode == "CMYK" else None)
    if source.mode not in ("RGB", "RGBA", "CMYK", "L"):
        pytest.skip(f"Pillow reads {source.mode}; no reference conversion for it")
    if job.info.applies_exif_orientation:
        from PIL import ImageOps

        source = ImageOps.exif_transpose(source)
    mode_in = "RGB" if source.mode == "RGBA" else source.mode
    # Into what our level says it is: Display P3 (tagged) for a wide-gamut source, else sRGB.
    ours_icc = ours.get("icc-profile-data") if ours.get_typeof("icc-profile-data") else None
    assert bool(ours_icc) is colour.is_wide_gamut(icc), "a wide-gamut source renders in P3, any other in sRGB"
    target = ImageCms.ImageCmsProfile(io.BytesIO(bytes(ours_icc))) if ours_icc else ImageCms.createProfile("sRGB")
    ref = ImageCms.profileToProfile(
        source.convert(mode_in), ImageCms.ImageCmsProfile(io.BytesIO(icc)), target,
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGB",
    )
    if source.mode == "RGBA":  # both sides flattened on white, as the JPEG renditions are
        white = Image.new("RGB", ref.size, (255, 255, 255))
        white.paste(ref, mask=source.getchannel("A"))
        ref = white
    ref_small = np.asarray(ref.resize((32, 32), Image.Resampling.BOX), dtype=np.float64)
    ours_rgb = ours.flatten(background=[255, 255, 255]) if ours.hasalpha() else ours
    ours_small = np.asarray(Image.fromarray(ours_rgb.numpy()[..., :3]).resize((32, 32), Image.Resampling.BOX), dtype=np.float64)
    per_channel = np.abs(ref_small.reshape(-1, 3).mean(0) - ours_small.reshape(-1, 3).mean(0))
    assert per_channel.max() < 4, f"mean colour off by {per_channel}"
    assert np.abs(ref_small - ours_small).mean() < 8


# --------------------------------------------------------------------------- hostile files
MALFORMED = files("malformed")


@pytest.mark.parametrize("path", MALFORMED, ids=ids(MALFORMED))
def test_malformed_files_get_a_4xx_or_end_failed_and_the_next_upload_works(path: Path, testdata: Path, client: Any, services: Any,
                                                                            quick_preset: Preset) -> None:
    services.preset = quick_preset
    started = time.monotonic()
    response = client.post("/v1/photos", data={"file": (io.BytesIO(path.read_bytes()), path.name)})
    assert response.status_code in (202, 400, 413, 415, 422), response.get_data(as_text=True)
    body = response.get_json()
    if response.status_code == 202:
        outcome = service.process_photo(services, body["id"])
        photo = client.get(f"/v1/photos/{body['id']}").get_json()
        assert photo["status"] in ("ready", "failed")
        if outcome is service.Outcome.FAILED:
            assert photo["error"]["code"] in ("corrupt_image", "too_many_pixels", "unsupported_format")
    else:
        assert body["error"]["code"] and body["error"]["message"]
    assert time.monotonic() - started < 30
    good = client.post("/v1/photos", data=images.jpeg(images.scene(400, 300)))
    assert good.status_code == 202
    assert service.process_photo(services, good.get_json()["id"]) is service.Outcome.DONE


def test_reposts_of_real_photos_are_found_and_distinct_photos_are_not(testdata: Path) -> None:
    """Every fifth corpus photo, edited the ways reposts are, looked up among all of them."""
    import random

    from bench import edits
    from media_pipeline import dedupe
    from media_pipeline.hashindex import MemoryHashIndex

    corpus = [p for p in files("corpus-dev") if p.suffix.lower() in (".jpg", ".png")][::5]
    assert len(corpus) >= 20, "corpus-dev is missing or nearly empty"
    from config.settings import Settings

    preset = Settings.from_env({}).preset()

    def fingerprint(data: bytes) -> dedupe.Fingerprint:
        job = pipeline.prepare(data, preset, LIMIT, widths=pipeline.identity_widths(preset))
        return pipeline.identify(job).fingerprint

    index = MemoryHashIndex()
    for i, path in enumerate(corpus):
        index.add(str(i), None, [(h.view, h.value) for h in fingerprint(path.read_bytes()).stored])
    missed, false = [], []
    for i, path in enumerate(corpus):
        rgb = edits.decode_rgb(path.read_bytes())
        for name in ("resize", "recompress", "greyscale", "mirror", "border", "screenshot", "caption"):
            query = fingerprint(edits.jpeg_bytes(edits.EDITS[name](rgb, random.Random(f"{i}{name}"))))
            found = {hit.photo_id for hit in index.search([q.value for q in query.queries], 31)}
            if str(i) not in found:
                missed.append((path.name, name))
            false += [(path.name, name, other) for other in found - {str(i)}]
    assert false == []
    assert len(missed) <= len(corpus) * 7 // 50, missed  # at most 2% of the lookups


def large_camera_jpegs() -> list[Path]:
    """Every camera JPEG of at least 1 MP: the ones whose cuts leave a readable header and a
    scan to lose (the curators shrank most of the others to thumbnails)."""
    found = []
    for path in files("camera-exif"):
        if path.name == "missing" or not is_image(path):
            continue
        header = pyvips.Image.new_from_file(str(path))
        if header.width * header.height >= 1_000_000:
            found.append(path)
    return found or [Path("missing")]


LARGE_JPEGS = large_camera_jpegs()


@pytest.mark.parametrize("path", LARGE_JPEGS, ids=ids(LARGE_JPEGS))
def test_real_jpegs_cut_at_every_tenth_are_refused_or_fail_never_half_rendered(path: Path, testdata: Path, client: Any,
                                                                              services: Any, quick_preset: Preset) -> None:
    services.preset = quick_preset
    data = path.read_bytes()
    for tenth in range(1, 10):
        started = time.monotonic()
        response = client.post("/v1/photos", data=data[: len(data) * tenth // 10])
        body = response.get_json()
        if response.status_code == 202:
            service.process_photo(services, body["id"])
            photo = client.get(f"/v1/photos/{body['id']}").get_json()
            assert photo["status"] == "failed" and photo["error"]["code"] == "corrupt_image", (tenth, photo)
        else:
            assert response.status_code == 422 and body["error"]["code"] == "corrupt_image", (tenth, body)
        assert time.monotonic() - started < 30
    whole = client.post("/v1/photos", data=data).get_json()["id"]
    assert service.process_photo(services, whole) is service.Outcome.DONE
