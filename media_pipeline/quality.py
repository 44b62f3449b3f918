"""The encoder quality of an auto-quality format for one photo: the search of autoquality.py, with
encode, decode and SSIMULACRA2 of the probe picture. Bytes and pixels in, a ``Choice`` out."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass

import numpy as np
import pyvips
from PIL import Image, features

from media_pipeline import autoquality, ssimulacra2
from media_pipeline.encode import WHITE, encode
from media_pipeline.models import EncoderSettings

# Our own encoders' output, so each format's own loader (never libvips' generic detection).
_LOADERS = {
    "avif": pyvips.Image.heifload_buffer,
    "webp": pyvips.Image.webpload_buffer,
    "jpeg": pyvips.Image.jpegload_buffer,
}
# Probes decode through Pillow, whose per-call cost is lower than a libvips pipeline's: JPEG
# through the same libjpeg-turbo (the same pixels, in 0.6x the time on a 0.15 MP probe), AVIF
# through libavif (dav1d, and libyuv's YUV to RGB, as Chrome's decoder does) when it is there, a
# sixth of the time of libvips' libheif, whose pixels differ by a rounding of the chroma
# upsampling (docs/performance.md "Auto quality").
_PILLOW = {"jpeg": "JPEG", **({"avif": "AVIF"} if features.check("avif") else {})}


@dataclass(frozen=True)
class Probe:
    """What every auto format's search of one photo encodes and scores against: the probe picture
    and its SSIMULACRA2 reference, prepared once per photo rather than once per format."""

    picture: pyvips.Image
    reference: ssimulacra2.Reference
    # The picture is the level itself (a small photo's level is its own probe), metadata and all:
    # the probe's file at the chosen quality is then that level's rendition, byte for byte.
    whole: bool = False


@dataclass(frozen=True)
class Chosen:
    """Every auto format's choice for one photo, by format name, and (when the probe is its whole
    level) the probe's file at each chosen quality, which the pipeline keeps as that level's
    rendition instead of encoding it again."""

    choices: dict[str, autoquality.Choice]
    files: dict[str, bytes]


def probe(level: pyvips.Image) -> Probe:
    """The probe cut from ``level``, with its reference. When the probe is the level itself, the
    level is what the search encodes, unless it carries a gain map (an HDR JPEG is another encoder's
    file, whose search would cost more for nothing)."""
    pixels = level.numpy()
    cut = autoquality.probe_picture(pixels)
    reference = ssimulacra2.reference(_rgb(cut))
    if cut is pixels and not level.get_typeof("gainmap"):
        return Probe(picture=level, reference=reference, whole=True)
    return Probe(picture=pyvips.Image.new_from_array(cut, interpretation="srgb"), reference=reference)


def choose(photo: Probe, enc: EncoderSettings, start: int | None = None) -> tuple[autoquality.Choice, bytes | None]:
    """Search ``enc.auto`` on the photo's probe (from ``start``, else the preset's): the choice, and
    the probe's file at the chosen quality when the probe is its whole level (else None)."""
    assert enc.auto is not None
    files: dict[int, bytes] = {}

    def score_at(quality: int) -> float:
        data = encode(photo.picture, dataclasses.replace(enc, quality=quality))
        if photo.whole:
            files[quality] = data
        return ssimulacra2.compare(photo.reference, _rgb(decode(enc.format, data)))

    choice = autoquality.search(score_at, enc.auto, start)
    return choice, files.get(choice.quality)


def choose_all(photo: Probe, encoders: tuple[EncoderSettings, ...]) -> Chosen:
    """Each auto format's choice. A format that ``follow``s another is searched after it, from
    the first try that the other's result predicts; it starts from its own ``start`` when the
    other is not auto."""
    autos = [enc for enc in encoders if enc.auto is not None]
    leaders = {enc.auto.follow for enc in autos if enc.auto is not None and enc.auto.follow}
    choices: dict[str, autoquality.Choice] = {}
    files: dict[str, bytes] = {}
    for enc in sorted(autos, key=lambda e: e.format not in leaders):  # leaders first, else in order
        assert enc.auto is not None
        leader = choices.get(enc.auto.follow) if enc.auto.follow else None
        choice, data = choose(photo, enc, None if leader is None else autoquality.follow_start(enc.auto, leader))
        choices[enc.format] = choice
        if data is not None:
            files[enc.format] = data
    return Chosen(choices=choices, files=files)


def decode(fmt: str, data: bytes) -> np.ndarray:
    """A probe encoded by our own ``fmt`` encoder, as HxWxC uint8 pixels."""
    if fmt in _PILLOW:
        with Image.open(io.BytesIO(data), formats=[_PILLOW[fmt]]) as picture:
            return np.asarray(picture)
    return _LOADERS[fmt](data).numpy()


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """Alpha flattened on white, as the JPEG encoder does: a rendition is scored as it is seen on a
    white page (the reference tool would take the lower of a dark and a light background)."""
    if pixels.shape[2] == 3:
        return pixels
    alpha = pixels[:, :, 3:].astype(np.float32) / 255
    flat = pixels[:, :, :3] * alpha + np.float32(WHITE[0]) * (1 - alpha)
    return (flat + 0.5).astype(np.uint8)
