"""The pure imaging core on images the tests make: sniffing, limits, orientation, colour,
alpha, widths, metadata stripping, placeholders and hashes."""

from __future__ import annotations

import gc
import hashlib
import io
import json
import mmap
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
import pyvips
from PIL import Image

from config.settings import Settings
from config.presets import load_preset
from media_pipeline import encode, pipeline, ssimulacra2, vips
from media_pipeline.errors import CorruptImage, EmptyUpload, ImageTooLarge, UnsupportedFormat
from media_pipeline.hashing import hamming, perceptual_hashes
from media_pipeline.models import PIPELINE_VERSION, EncoderSettings, ImageFormat, Preset
from media_pipeline.placeholders import blurhash_decode, dominant_color
from media_pipeline.probe import probe
from media_pipeline.service import SpooledUpload
from media_pipeline.sniff import sniff
from tests import images

LIMIT = 50_000_000


@pytest.fixture(scope="module")
def preset() -> Preset:
    return Settings.from_env({}).preset()


@pytest.fixture(scope="module")
def small_preset(preset: Preset) -> Preset:
    """Same formats, two small widths: what most core tests need, at a fraction of the encode time."""
    return Preset(widths=(320, 160), formats=preset.formats)


# --------------------------------------------------------------------------- sniffing and limits
@pytest.mark.parametrize(
    "suffix,expected",
    [(".jpg", ImageFormat.JPEG), (".png", ImageFormat.PNG), (".webp", ImageFormat.WEBP), (".gif", ImageFormat.GIF),
     (".tif", ImageFormat.TIFF), (".avif", ImageFormat.AVIF)],
)
def test_sniff_by_magic_bytes(suffix: str, expected: ImageFormat) -> None:
    data = images.to_vips(images.scene(64, 48)).write_to_buffer(suffix, **({"compression": "av1"} if suffix == ".avif" else {}))
    assert sniff(data[:64]) is expected


def test_sniff_heic() -> None:
    heif = pillow_heif.from_pillow(Image.fromarray(images.scene(64, 48)))
    out = __import__("io").BytesIO()
    heif.save(out, format="HEIF", quality=80)
    assert sniff(out.getvalue()[:64]) is ImageFormat.HEIC


@pytest.mark.parametrize(
    "payload",
    [
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj",
        b"%!PS-Adobe-3.0\n",
        b"push graphic-context\nviewbox 0 0 640 480\n",  # ImageMagick MVG
        b"just some text that is not an image at all",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64,  # OLE (Thumbs.db)
        b"PK\x03\x04" + b"\x00" * 64,
    ],
)
def test_non_images_are_unsupported_whatever_their_name(payload: bytes) -> None:
    with pytest.raises(UnsupportedFormat):
        sniff(payload)


def test_empty_is_its_own_error() -> None:
    with pytest.raises(EmptyUpload):
        sniff(b"")


def test_pixel_limit_is_checked_from_the_header_before_decoding() -> None:
    bomb = images.forged_png(100_000, 100_000)
    assert len(bomb) < 200
    with pytest.raises(ImageTooLarge):
        probe(bomb, LIMIT)
    info = probe(images.forged_png(7000, 7000), LIMIT)  # 49 MP: under the limit, so accepted by the probe
    assert (info.width, info.height) == (7000, 7000)


def test_pillow_refuses_a_bomb_instead_of_warning() -> None:
    import io

    from media_pipeline import vips

    vips.configure()
    with pytest.raises((Image.DecompressionBombWarning, Image.DecompressionBombError)):
        Image.open(io.BytesIO(images.forged_png(10_000, 10_000))).load()  # 100 MP: past Pillow's warning size


def test_probe_reads_header_fields() -> None:
    data = images.jpeg(images.scene(120, 80), exif=images.exif_bytes(orientation=6))
    info = probe(data, LIMIT)
    assert (info.format, info.width, info.height, info.orientation) == (ImageFormat.JPEG, 120, 80, 6)
    assert info.upright_size == (80, 120)


def test_a_lazily_loaded_image_keeps_the_memory_it_reads_from(tmp_path: Path) -> None:
    # Loaders read the upload's mmap in place: were the memory let go while the image lives, a
    # later decode would read unmapped pages. An exported mmap refuses to close, which shows the hold.
    path = tmp_path / "upload.jpg"
    path.write_bytes(images.jpeg(images.scene(64, 48)))
    expected = pyvips.Image.jpegload_buffer(path.read_bytes()).numpy().astype(int)
    with path.open("rb") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        image = vips.load(mapped, ImageFormat.JPEG)
        gc.collect()
        with pytest.raises(BufferError):
            mapped.close()
        assert np.abs(image.numpy().astype(int) - expected).max() == 0
        del image
        gc.collect()
        mapped.close()


def test_an_upload_closed_while_an_image_reads_it_stays_mapped_until_the_image_goes(tmp_path: Path) -> None:
    data = images.jpeg(images.scene(64, 48))
    upload = SpooledUpload.receive(io.BytesIO(data), tmp_path, 1 << 20)
    image = vips.load(upload.buffer(), ImageFormat.JPEG)
    upload.close()
    assert np.abs(image.numpy().astype(int) - pyvips.Image.jpegload_buffer(data).numpy()).max() == 0


def test_garbage_after_a_valid_signature_is_corrupt() -> None:
    with pytest.raises(CorruptImage):
        probe(b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(256)) * 4, LIMIT)


def test_truncated_jpeg_fails_instead_of_rendering_a_grey_half(small_preset: Preset) -> None:
    data = images.jpeg(images.scene(800, 600))
    with pytest.raises(CorruptImage):
        pipeline.process(data[: len(data) // 2], small_preset, LIMIT)


# --------------------------------------------------------------------------- widths and formats
@pytest.mark.parametrize(
    "width,expected",
    [(3000, (2160, 1440, 1080, 640, 320)), (1800, (1800, 1440, 1080, 640, 320)), (640, (640, 320)), (100, (100,))],
)
def test_widths_never_upscale(width: int, expected: tuple[int, ...]) -> None:
    assert pipeline.rendition_widths((2160, 1440, 1080, 640, 320), width) == expected


def test_every_width_in_every_format_from_one_decode(preset: Preset) -> None:
    data = images.jpeg(images.scene(2400, 1600))
    result = pipeline.process(data, preset, LIMIT)
    got = {(r.width, r.format) for r in result.renditions}
    assert got == {(w, e.format) for w in (2160, 1440, 1080, 640, 320) for e in preset.eager}
    assert {e.format for e in preset.eager} == {"avif", "jpeg"}  # WebP is made on demand
    for r in result.renditions:
        decoded = images.decode(r.data)
        assert (decoded.width, decoded.height) == (r.width, r.height)
        assert abs(r.height - round(r.width * 1600 / 2400)) <= 1
        assert decoded.get("vips-loader").startswith({"avif": "heif", "webp": "webp", "jpeg": "jpeg"}[r.format])
        assert images.mean_abs_diff(decoded, images.scene(2400, 1600)) < 6
    jpeg = next(r for r in result.renditions if r.format == "jpeg" and r.width == 1080)
    decoded = images.decode(jpeg.data)
    interlaced = decoded.get("interlaced") if decoded.get_typeof("interlaced") else 0
    assert interlaced == int(preset.encoder("jpeg").progressive)  # progressive or baseline, as the preset says


# --------------------------------------------------------------------------- orientation
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_ends_upright(orientation: int, small_preset: Preset) -> None:
    upright = images.scene(400, 260, seed=3)
    job = pipeline.prepare(images.oriented_jpeg(upright, orientation), small_preset, LIMIT)
    out = job.levels[320]
    assert (out.width, out.height) == (320, round(260 * 320 / 400))
    assert images.mean_abs_diff(out, upright) < 6
    # The check can fail: the picture as stored (not oriented) is far from upright.
    if orientation != 1:
        stored = np.asarray(Image.fromarray(upright).transpose(images.INVERSE[orientation]))
        assert images.mean_abs_diff(stored, upright) > 15


# --------------------------------------------------------------------------- colour
@pytest.mark.parametrize("gamut", ["srgb", "p3"])
def test_display_p3_is_converted_to_srgb_or_kept_tagged(gamut: str, small_preset: Preset) -> None:
    srgb = images.scene(320, 240, seed=5)
    p3 = images.with_profile(srgb, "p3", Q=95)
    stored_numbers = images.decode(p3).numpy()[..., :3]
    assert np.abs(images.mean_colour(stored_numbers) - images.mean_colour(srgb)).max() > 4  # other numbers
    preset = Preset(widths=small_preset.widths, formats=tuple(replace(f, gamut=gamut) for f in small_preset.formats))
    out = pipeline.prepare(p3, preset, LIMIT).levels[320]
    # MP_COLOR_GAMUT=srgb: sRGB numbers, untagged; p3: P3 numbers with the profile that says so.
    assert bool(out.get_typeof("icc-profile-data")) is (gamut == "p3")
    shown = out.icc_transform("srgb", embedded=True, intent="relative") if gamut == "p3" else out
    assert np.abs(images.mean_colour(shown) - images.mean_colour(srgb)).max() < 2.5  # same colours


def test_cmyk_with_and_without_profile_becomes_srgb(small_preset: Preset) -> None:
    srgb = (images.scene(320, 240, seed=6).astype(np.float64) * 0.6 + 50).astype(np.uint8)  # inside the CMYK gamut
    cmyk = images.with_profile(srgb, "cmyk", Q=95)
    assert images.decode(cmyk).interpretation == "cmyk"
    out = pipeline.prepare(cmyk, small_preset, LIMIT).levels[320]
    assert out.bands == 3 and out.interpretation == "srgb"
    assert np.abs(images.mean_colour(out) - images.mean_colour(srgb)).max() < 6
    bare = images.decode(cmyk).copy()
    bare.remove("icc-profile-data")
    out_bare = pipeline.prepare(bare.jpegsave_buffer(Q=95, keep="none"), small_preset, LIMIT).levels[320]
    assert np.abs(images.mean_colour(out_bare) - images.mean_colour(srgb)).max() < 6


def test_sixteen_bit_and_grey_become_eight_bit_srgb(small_preset: Preset) -> None:
    rgb8 = images.scene(200, 150, seed=7)
    rgb16 = pyvips.Image.new_from_array(rgb8.astype(np.uint16) * 257).copy(interpretation="rgb16")
    out = pipeline.prepare(rgb16.pngsave_buffer(), small_preset, LIMIT).levels[200]
    assert (out.format, out.bands) == ("uchar", 3)
    assert np.abs(out.numpy().astype(int) - rgb8.astype(int)).mean() < 1.5
    grey = images.to_vips(rgb8).colourspace("b-w")
    out = pipeline.prepare(grey.jpegsave_buffer(Q=95), small_preset, LIMIT).levels[200]
    assert out.bands == 3
    pixels = out.numpy().astype(int)
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() <= 1


# --------------------------------------------------------------------------- alpha and animation
def test_alpha_kept_in_avif_and_webp_flattened_on_white_in_jpeg(small_preset: Preset) -> None:
    rgba = np.dstack([images.scene(320, 200, seed=8), np.full((200, 320), 255, np.uint8)])
    rgba[:, :160, 3] = 0  # left half transparent
    result = pipeline.process(images.png(rgba), small_preset, LIMIT)
    by_format = {r.format: images.decode(r.data) for r in result.renditions if r.width == 320}
    for fmt in ("avif", "webp"):
        assert by_format[fmt].hasalpha()
        alpha = by_format[fmt].numpy()[..., 3]
        assert alpha[:, :150].mean() < 5 and alpha[:, 170:].mean() > 250
    jpeg = by_format["jpeg"].numpy()
    assert by_format["jpeg"].bands == 3 and jpeg[:, :150].mean() > 245


@pytest.mark.parametrize("bands", [3, 4])
def test_avif_through_pillows_c_encoder_is_the_picture_its_public_save_makes(bands: int) -> None:
    """The AVIF fast path (Pillow's private encoder, fed libvips' pixels) is active with the
    Pillow this project installs, and its files decode to what Pillow's public save makes."""
    assert encode._direct_avif_encoder() is encode._pillow_avif_direct
    rgb = images.natural(480, 320, seed=3)
    array = rgb if bands == 3 else np.dstack([rgb, np.tile(np.linspace(0, 255, 480, dtype=np.uint8), (320, 1))])
    picture = images.to_vips(array)
    settings = Settings.from_env({}).preset().encoder("avif")
    public = encode._pillow_avif(picture.write_to_memory(), 480, 320, "RGBA" if bands == 4 else "RGB",
                                 encode.AvifOptions(settings.quality, 9 - settings.effort, 1, trellis=settings.avif_trellis))
    ours, theirs = images.decode(encode.encode_avif(picture, settings)), images.decode(public)
    assert ours.bands == theirs.bands == bands
    assert np.abs(ours.numpy().astype(int) - theirs.numpy().astype(int)).max() == 0
    assert images.mean_abs_diff(ours, picture) < 4


def test_avif_without_aoms_trellis_keeps_the_picture_of_the_trellis_encode_a_quality_step_below() -> None:
    """The preset's ``trellis = false`` reaches aom (another picture than its default), and q71
    without the trellis search scores as q68 with it, in about the same bytes (the preset's trade)."""
    picture = images.to_vips(images.natural(640, 480, seed=5))
    source = picture.numpy()
    with_trellis = encode.encode_avif(picture, EncoderSettings("avif", 68))
    rounded = encode.encode_avif(picture, EncoderSettings("avif", 68, avif_trellis=False))
    without = encode.encode_avif(picture, EncoderSettings("avif", 71, avif_trellis=False))
    decoded = {name: images.decode(data).numpy() for name, data in
               (("with", with_trellis), ("rounded", rounded), ("without", without))}
    assert np.abs(decoded["with"].astype(int) - decoded["rounded"].astype(int)).max() > 0
    scores = {name: ssimulacra2.score(source, pixels) for name, pixels in decoded.items()}
    assert scores["rounded"] < scores["with"]  # the same quantiser, no search: worse
    assert abs(scores["without"] - scores["with"]) < 1.5, scores
    assert 0.9 < len(without) / len(with_trellis) < 1.1


def test_the_presets_avif_trellis_is_read_per_format_and_keys_only_when_off(tmp_path: Path) -> None:
    path = tmp_path / "presets.toml"
    path.write_text("[default]\nwidths = [320]\n[default.formats.avif]\nquality = 71\ntrellis = false\n"
                    "[default.formats.jpeg]\nquality = 80\ntrellis = true\n")
    avif, jpeg = load_preset(path).formats
    assert (avif.avif_trellis, avif.trellis, jpeg.avif_trellis, jpeg.trellis) == (False, False, True, True)
    # aom's default hashes as before the setting existed: stored keys stay valid.
    legacy = {"pipeline": PIPELINE_VERSION, "format": "avif", "quality": 71, "effort": 0, "progressive": False, "trellis": False}
    assert EncoderSettings("avif", 71).spec == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:10]
    assert EncoderSettings("avif", 71).spec != avif.spec


def test_an_alpha_band_that_is_all_opaque_is_dropped(small_preset: Preset) -> None:
    rgba = np.dstack([images.scene(160, 100), np.full((100, 160), 255, np.uint8)])
    result = pipeline.process(images.png(rgba), small_preset, LIMIT)
    assert not any(images.decode(r.data).hasalpha() for r in result.renditions)


def test_animated_gif_renders_its_first_frame(small_preset: Preset) -> None:
    frames = [Image.new("RGB", (120, 90), colour) for colour in ((220, 20, 20), (20, 220, 20), (20, 20, 220))]
    out = __import__("io").BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = pipeline.process(out.getvalue(), small_preset, LIMIT)
    assert result.info.pages == 3
    webp = images.decode(next(r.data for r in result.renditions if r.format == "webp"))
    assert webp.get("n-pages") if webp.get_typeof("n-pages") else 1 == 1
    r, g, b = images.mean_colour(webp)
    assert r > 180 and g < 60 and b < 60


def test_heic_is_decoded(small_preset: Preset) -> None:
    rgb = images.scene(320, 240, seed=9)
    heif = pillow_heif.from_pillow(Image.fromarray(rgb))
    out = __import__("io").BytesIO()
    heif.save(out, format="HEIF", quality=90)
    job = pipeline.prepare(out.getvalue(), small_preset, LIMIT)
    assert job.info.format is ImageFormat.HEIC
    assert images.mean_abs_diff(job.levels[320], rgb) < 6


# --------------------------------------------------------------------------- metadata
def test_renditions_carry_no_exif_gps_xmp_or_serials(small_preset: Preset) -> None:
    data = images.jpeg(images.scene(400, 300), exif=images.exif_bytes(orientation=1, gps=True))
    source = images.decode(data)
    assert source.get_typeof("exif-data") and b"SERIAL-123456" in data  # the check can fail
    for r in pipeline.process(data, small_preset, LIMIT).renditions:
        fields = set(images.decode(r.data).get_fields())
        assert not fields & {"exif-data", "xmp-data", "iptc-data"}, (r.format, fields)
        assert b"SERIAL-123456" not in r.data and b"Exif\x00" not in r.data and b"TestCam" not in r.data


def test_capture_time_camera_and_orientation_are_kept(small_preset: Preset) -> None:
    data = images.jpeg(images.scene(300, 200), exif=images.exif_bytes(orientation=6, make="Canon", model="EOS 5D"))
    meta = pipeline.process(data, small_preset, LIMIT).metadata
    assert meta.taken_at == "2024-05-06T07:08:09+02:00"
    assert (meta.camera.make, meta.camera.model, meta.orientation) == ("Canon", "EOS 5D", 6)


def test_profile_name_is_reported(small_preset: Preset) -> None:
    meta = pipeline.process(images.with_profile(images.scene(100, 80), "p3"), small_preset, LIMIT).metadata
    assert meta.color_profile and "P3" in meta.color_profile


def test_broken_exif_yields_no_metadata_not_an_error(small_preset: Preset) -> None:
    exif = images.exif_bytes()
    broken = exif[:12] + b"\xff\xff" + exif[14:40]  # 0xFFFF IFD entries, cut short
    meta = pipeline.process(images.jpeg(images.scene(100, 80), exif=broken), small_preset, LIMIT).metadata
    assert meta.taken_at is None


# --------------------------------------------------------------------------- placeholder and hashes
def test_placeholder_matches_the_picture(small_preset: Preset) -> None:
    rgb = images.scene(320, 240, seed=11)
    result = pipeline.process(images.png(rgb), small_preset, LIMIT)
    assert 20 <= len(result.placeholder.blurhash) <= 40
    preview = blurhash_decode(result.placeholder.blurhash, 32, 24).astype(np.float64)
    def linear_mean(pixels: np.ndarray) -> np.ndarray:  # BlurHash averages in linear light
        return (((pixels / 255.0 + 0.055) / 1.055) ** 2.4).reshape(-1, 3).mean(axis=0)

    assert np.abs(linear_mean(preview) - linear_mean(rgb.astype(np.float64))).max() < 0.03
    # The preview is this picture's blur, not any picture's: closer to it than to another scene.
    other = blurhash_decode(pipeline.process(images.png(images.scene(320, 240, seed=12)), small_preset, LIMIT).placeholder.blurhash, 32, 24)
    assert images.mean_abs_diff(preview.astype(np.uint8), rgb, 16) < images.mean_abs_diff(other, rgb, 16)
    red = np.zeros((50, 50, 3), np.uint8)
    red[..., 0] = 200
    red[:5] = (10, 200, 10)
    assert dominant_color(red) == "#c80000"


def test_perceptual_hash_survives_recompression_and_separates_pictures() -> None:
    a = images.scene(640, 480, seed=1)
    b = images.scene(640, 480, seed=2)
    recompressed = images.decode(images.jpeg(a, quality=40)).resize(0.5).numpy()
    assert hamming(perceptual_hashes(a, a).phash, perceptual_hashes(recompressed, recompressed).phash) <= 6
    assert hamming(perceptual_hashes(a, a).phash, perceptual_hashes(b, b).phash) > 12


def test_phash_is_imagehash_phash_bit_for_bit_without_loading_scipy() -> None:
    # Stored hashes must not change with the implementation: compare with imagehash's own on
    # pictures of many sizes, a flat one (every coefficient ties) and a near-flat one.
    import imagehash

    pictures = [images.natural(40 + 7 * seed, 30 + 5 * seed, seed=seed) for seed in range(40)]
    pictures += [np.full((50, 60, 3), 90, np.uint8), np.pad(np.full((48, 58, 3), 90, np.uint8), ((1, 1), (1, 1), (0, 0)), constant_values=91)]
    for rgb in pictures:
        assert perceptual_hashes(rgb, rgb).phash == str(imagehash.phash(Image.fromarray(rgb)))
    code = ("import sys, numpy as np; from media_pipeline.hashing import perceptual_hashes; "
            "perceptual_hashes(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)); print('scipy' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


# --------------------------------------------------------------------------- purity
def test_core_imports_no_io_frameworks() -> None:
    code = (
        "import sys; import media_pipeline.pipeline, media_pipeline.probe, media_pipeline.sniff, "
        "media_pipeline.encode, media_pipeline.hashing, media_pipeline.placeholders, media_pipeline.metadata, "
        "media_pipeline.focus, media_pipeline.crops; "
        "bad = {'boto3', 'botocore', 'celery', 'kombu', 'flask', 'sqlite3', 'psycopg', 'redis', 'requests', 'socket'} & set(sys.modules); "
        "print(sorted(bad)); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
