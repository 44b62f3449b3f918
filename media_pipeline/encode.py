"""One encoder function per output format. None writes EXIF, GPS, XMP, IPTC or maker notes. The
only things kept are what the pixels need to be shown right: a Display P3 level's ICC profile
(an sRGB level carries none, which is what a missing profile means), and in a JPEG whose level
carries a gain map, the gain map and its metadata (Ultra HDR, see hdr.py)."""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass
from typing import Callable

import pyvips
from PIL import Image

try:  # Pillow's AVIF plugin (Pillow >= 11.3 built with libavif), used through encode_avif
    from PIL import _avif
except ImportError:  # pragma: no cover - encode_avif then takes the public path, which says why it cannot
    _avif = None

from media_pipeline import encode_jpegli
from media_pipeline.models import EncoderSettings

log = logging.getLogger(__name__)

WHITE = [255, 255, 255]


def encode_avif(image: pyvips.Image, enc: EncoderSettings) -> bytes:
    # The same aom encoder through libavif (Pillow's plugin) rather than libheif (heifsave): at
    # equal quality, bytes and SSIM it is 15-25% faster, as libavif converts RGB to YUV with libyuv
    # (bench/renditions.py). ``speed = 9 - effort`` is the mapping heifsave uses.
    mode = "RGBA" if image.bands == 4 else "RGB"
    # The profile as ICC: Chrome, Firefox and Safari honour an ICC profile in AVIF (docs/pipeline.md).
    icc = bytes(image.get("icc-profile-data")) if image.get_typeof("icc-profile-data") else b""
    options = AvifOptions(quality=enc.quality, speed=9 - enc.effort, threads=pyvips.concurrency_get(), icc=icc,
                          trellis=enc.avif_trellis)
    encoder = _direct_avif_encoder() or _pillow_avif
    return encoder(image.write_to_memory(), image.width, image.height, mode, options)


@dataclass(frozen=True)
class AvifOptions:
    quality: int
    speed: int
    threads: int
    icc: bytes = b""
    trellis: bool = True  # aom's trellis quantisation (EncoderSettings.avif_trellis)

    @property
    def codec_options(self) -> tuple[tuple[str, str], ...] | None:
        """libavif's codec-specific options (Pillow's ``advanced``); None leaves aom's defaults."""
        return None if self.trellis else (("disable-trellis-quant", "1"),)


def _pillow_avif(pixels: bytes, width: int, height: int, mode: str, options: AvifOptions) -> bytes:
    """Pillow's public AVIF save."""
    picture = Image.frombuffer(mode, (width, height), pixels, "raw", mode, 0, 1)
    out = io.BytesIO()
    picture.save(out, "AVIF", quality=options.quality, speed=options.speed, subsampling="4:2:0",
                 max_threads=options.threads, icc_profile=options.icc or None, advanced=options.codec_options)
    return out.getvalue()


def _pillow_avif_direct(pixels: bytes, width: int, height: int, mode: str, options: AvifOptions) -> bytes:
    """What ``_pillow_avif`` does, minus two copies of the frame: Pillow's save holds an RGB frame
    as 4 bytes a pixel, then copies it out again (``tobytes``) for its C encoder, which makes a
    third copy for libavif. Handing libvips' pixels to that C encoder skips the first two: at
    2160 x 2880, 43 MB less in flight and 7-8% less time per 12 MP photo. The arguments are
    those of Pillow's ``_save`` with its defaults (full range, libavif's automatic tiling, no
    metadata), so the file is the one the public path makes."""
    encoder = _avif.AvifEncoder((width, height), "4:2:0", options.quality, options.speed, options.threads, "auto",
                                "full", 0, 0, False, True, options.icc, b"", 1, b"", options.codec_options)
    encoder.add(pixels, 0, (width, height), mode, True)
    return bytes(encoder.finish())


@functools.cache
def _direct_avif_encoder() -> Callable[[bytes, int, int, str, AvifOptions], bytes] | None:
    """``_pillow_avif_direct`` when it makes, byte for byte, the file Pillow's public save makes
    of a probe picture; else None. It calls Pillow's private C encoder, whose arguments may
    change in any release: this check makes such a change cost speed, never a wrong file. The
    probe turns a codec option on, so the last argument is checked to be those options too."""
    width, height = 24, 16
    probe = bytes((x * 10 + y * 3 + c * 50) % 256 for y in range(height) for x in range(width) for c in range(3))
    options = AvifOptions(quality=60, speed=8, threads=1, trellis=False)
    try:
        if _pillow_avif_direct(probe, width, height, "RGB", options) == _pillow_avif(probe, width, height, "RGB", options):
            return _pillow_avif_direct
    except (AttributeError, TypeError, ValueError, RuntimeError) as exc:
        log.warning("Pillow's AVIF encoder cannot be called directly (%s): AVIF goes through Image.save", exc)
        return None
    log.warning("Pillow's AVIF encoder, called directly, made another file than Image.save: AVIF goes through Image.save")
    return None


def keep_flags(image: pyvips.Image, gainmap: bool = False) -> str:
    """libvips' ``keep``: the level's ICC profile (Display P3 only: sRGB levels carry none), and
    with ``gainmap`` the gain map it carries; never EXIF, XMP or IPTC."""
    kept = [name for name, present in (("icc", image.get_typeof("icc-profile-data")),
                                       ("gainmap", gainmap and image.get_typeof("gainmap"))) if present]
    return "|".join(kept) or "none"


def rendition_traits(image: pyvips.Image, enc: EncoderSettings) -> dict[str, object]:
    """What a rendition of ``image`` in ``enc`` is besides its size: its gamut, and whether it
    keeps the gain map (JPEG alone can carry one here, when the preset keeps HDR)."""
    keeps_gainmap = enc.format == "jpeg" and enc.dynamic_range == "hdr" and image.get_typeof("gainmap") != 0
    return {"gamut": "p3" if image.get_typeof("icc-profile-data") else "srgb", "hdr": keeps_gainmap}


def encode_webp(image: pyvips.Image, enc: EncoderSettings) -> bytes:
    return image.webpsave_buffer(Q=enc.quality, effort=enc.effort, keep=keep_flags(image))


def encode_jpeg(image: pyvips.Image, enc: EncoderSettings) -> bytes:
    if image.hasalpha():
        image = image.flatten(background=WHITE)  # an HDR source has no alpha: its gain map stays
    keeps_gainmap = enc.dynamic_range == "hdr" and image.get_typeof("gainmap") != 0
    # jpegli cannot write an Ultra HDR file: a JPEG that keeps a gain map is libvips' whatever the preset says.
    if enc.encoder == "jpegli" and not keeps_gainmap and (jpegli := encode_jpegli.binding()) is not None:
        return encode_jpegli.encode(image, enc.quality, jpegli)
    data = image.jpegsave_buffer(
        Q=enc.quality,
        interlace=enc.progressive,
        optimize_coding=True,
        trellis_quant=enc.trellis,
        overshoot_deringing=enc.trellis,
        optimize_scans=enc.trellis and enc.progressive,
        quant_table=3 if enc.trellis else 0,
        # With a gain map, libvips writes an Ultra HDR JPEG (MPF secondary image, hdrgm XMP).
        keep=keep_flags(image, gainmap=enc.dynamic_range == "hdr"),
    )
    return _without_exif(data)


def _without_exif(jpeg: bytes) -> bytes:
    """The JPEG without the EXIF block libultrahdr writes into an Ultra HDR file whatever ``keep``
    says (orientation 1, resolution, colour space; none of the source's tags). It sits before the
    MPF segment, whose offsets count from that segment, so the gain map is still found."""
    pos, found = 2, []
    while pos + 4 <= len(jpeg) and jpeg[pos] == 0xFF and jpeg[pos + 1] not in (0xDA, 0xD9):
        length = int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        if jpeg[pos + 1] == 0xE1 and jpeg[pos + 4 : pos + 10] == b"Exif\x00\x00":
            found.append((pos, pos + 2 + length))
        pos += 2 + length
    for start, end in reversed(found):
        jpeg = jpeg[:start] + jpeg[end:]
    return jpeg


ENCODERS: dict[str, Callable[[pyvips.Image, EncoderSettings], bytes]] = {
    "avif": encode_avif,
    "webp": encode_webp,
    "jpeg": encode_jpeg,
}


def encode(image: pyvips.Image, enc: EncoderSettings) -> bytes:
    return ENCODERS[enc.format](image, enc)


# --------------------------------------------------------------------------- animations
def encode_animated(frames: list[pyvips.Image], delays: tuple[int, ...], loop: int, enc: EncoderSettings) -> bytes:
    """Frames of one size (all with alpha or all without) as an animated ``enc.format``; no metadata."""
    return ANIMATED_ENCODERS[enc.format](frames, delays, loop, enc)


def encode_animated_webp(frames: list[pyvips.Image], delays: tuple[int, ...], loop: int, enc: EncoderSettings) -> bytes:
    # libvips writes a "toilet roll" (frames stacked, with page-height) as an animation; it
    # compares each frame with the one before and stores only the rectangle that changed.
    roll = pyvips.Image.arrayjoin(frames, across=1).copy()
    roll.set_type(pyvips.GValue.gint_type, "page-height", frames[0].height)
    roll.set_type(pyvips.GValue.array_int_type, "delay", list(delays))
    roll.set_type(pyvips.GValue.gint_type, "loop", loop)
    return roll.webpsave_buffer(Q=enc.quality, effort=enc.effort, keep="none")


# aom's speed 6 turns on tools that speeds 7-9 skip, which small animations (stickers, cartoons,
# with flat colours and alpha) need: 85 x 77 x 5 frames takes 4.8 KB at speed 6 against 16.2 KB
# at 9, 80 x 80 x 30 frames 4.0 KB against 5.4 KB, in under 0.1 s. On 245 x 245 x 42 frames
# it saves 26% but takes 1.8 s against 0.1 (bench/animation.py): only small animations get it.
SMALL_ANIMATION_PIXELS = 250_000
SMALL_ANIMATION_SPEED = 6


def encode_animated_avif(frames: list[pyvips.Image], delays: tuple[int, ...], loop: int, enc: EncoderSettings) -> bytes:
    """An AVIF image sequence through Pillow's libavif encoder, one frame at a time (libvips'
    heifsave writes the frames as separate images of a collection, not a sequence, and took
    14 s where this takes 0.2: bench/animation.py). libavif plays it forever: Pillow exposes no
    repetition count, so a finite ``loop`` is kept in WebP only."""
    width, height = frames[0].width, frames[0].height
    mode = "RGBA" if frames[0].bands == 4 else "RGB"
    speed, threads = 9 - enc.effort, pyvips.concurrency_get()
    codec_options = AvifOptions(enc.quality, speed, threads, trellis=enc.avif_trellis).codec_options
    if len(frames) * width * height <= SMALL_ANIMATION_PIXELS:
        speed = min(speed, SMALL_ANIMATION_SPEED)
    if _avif is None or _direct_avif_encoder() is None:
        pictures = [Image.frombuffer(mode, (width, height), f.write_to_memory(), "raw", mode, 0, 1) for f in frames]
        out = io.BytesIO()
        pictures[0].save(out, "AVIF", save_all=True, append_images=pictures[1:], duration=list(delays), quality=enc.quality,
                         speed=speed, subsampling="4:2:0", max_threads=threads, advanced=codec_options)
        return out.getvalue()
    # The arguments of Pillow's own ``_save`` with its defaults, as ``_pillow_avif_direct``.
    encoder = _avif.AvifEncoder((width, height), "4:2:0", enc.quality, speed, threads, "auto", "full", 0, 0, False, True,
                                b"", b"", 1, b"", codec_options)
    for frame, delay in zip(frames, delays):
        encoder.add(frame.write_to_memory(), delay, (width, height), mode, False)
    return bytes(encoder.finish())


ANIMATED_ENCODERS: dict[str, Callable[[list[pyvips.Image], tuple[int, ...], int, EncoderSettings], bytes]] = {
    "avif": encode_animated_avif,
    "webp": encode_animated_webp,
}
