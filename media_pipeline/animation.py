"""Animated renditions: whether an animation is kept (limits read from the header), its frames
decoded and composited once, resized per frame, and encoded as animated AVIF and WebP.

    verdict            frames and frames x pixels against the limits, before any decode
    decode_frames      every frame, composited by the loader (disposal and blending handled by
                       libvips' GIF and WebP loaders, Pillow's for APNG and AVIF sequences), upright
                       8-bit sRGB, held in memory once:
                       the animation-pixel limit is what bounds that memory
    iter_animated      each width (smallest first) in each format: frames resized one by one,
                       never across a frame boundary, with their delays and loop count

The still poster is not made here: it is the first frame, which the still pipeline's decode
already gives (docs/pipeline.md "Animation" says why the first frame). Nothing here touches the
network, files or the clock.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyvips
from PIL import Image, ImageSequence

from media_pipeline import vips
from media_pipeline.encode import encode_animated
from media_pipeline.errors import CorruptImage
from media_pipeline.models import Animation, EncodedRendition, EncoderSettings, ImageFormat, ImageInfo
from media_pipeline.pipeline import _resize  # the still pipeline's resize (premultiplied alpha)
from media_pipeline.probe import _first_line

# The formats an animation is rendered in, in the order a client is offered them.
ANIMATED_FORMATS = ("avif", "webp")
TOO_MANY_FRAMES = "too_many_frames"
TOO_MANY_PIXELS = "too_many_animation_pixels"
# libvips reads these as one picture: Pillow decodes their frames (its APNG reader composites them).
_PILLOW_FORMATS = {ImageFormat.PNG: "PNG", ImageFormat.AVIF: "AVIF"}
# Browsers play a frame delay under 20 ms (0 or 10, from GIFs made when that meant "as fast as
# possible") as 100 ms, and libvips' WebP writer turns 0 into 100 too: the renditions are written
# with the delays a browser plays the source with, so AVIF and WebP run at the same pace.
_FASTEST_MS = 20
_SHOWN_AS_MS = 100


@dataclass(frozen=True)
class AnimationLimits:
    max_pixels: int  # frames x pixels of one frame
    max_frames: int


def verdict(info: ImageInfo, limits: AnimationLimits) -> Animation:
    """Whether ``info``'s animation is rendered moving, from its header alone."""
    if not info.animated:
        return Animation()
    dropped = None
    if info.frames > limits.max_frames:
        dropped = TOO_MANY_FRAMES
    elif info.frames * info.pixels > limits.max_pixels:
        dropped = TOO_MANY_PIXELS
    return Animation(frames=info.frames, duration_ms=shown_duration(info), dropped=dropped)


def frame_delays(info: ImageInfo) -> tuple[int, ...]:
    """Each frame's delay in ms as a browser plays the source (one per frame)."""
    delays = list(info.delays[: info.frames]) + [_SHOWN_AS_MS] * max(0, info.frames - len(info.delays))
    return tuple(_SHOWN_AS_MS if d < _FASTEST_MS else d for d in delays)


def shown_duration(info: ImageInfo) -> int:
    return sum(frame_delays(info))


@dataclass
class Frames:
    """An animation's upright sRGB frames at one size, with what plays them."""

    frames: list[pyvips.Image]
    delays: tuple[int, ...]
    loop: int

    @property
    def width(self) -> int:
        return self.frames[0].width

    @property
    def height(self) -> int:
        return self.frames[0].height


def decode_frames(data: bytes | memoryview, info: ImageInfo) -> Frames:
    """Every frame of ``data``, upright sRGB, in memory (callers check ``verdict`` first)."""
    vips.configure()
    try:
        if info.format in _PILLOW_FORMATS:
            roll, page_height = _pillow_roll(data, info), info.height
        else:
            roll = vips.load(data, info.format, n=-1, fail_on="truncated", access="sequential")
            page_height = roll.get_page_height()
        count = roll.height // page_height
        if count != info.frames:
            raise CorruptImage(f"the header declares {info.frames} frames, the file holds {count}")
        roll = _srgb(roll).copy_memory()
        frames = [_upright(roll.crop(0, i * page_height, roll.width, page_height), info) for i in range(count)]
        if all(f.hasalpha() for f in frames) and min(f[f.bands - 1].min() for f in frames) >= 255:
            frames = [f[: f.bands - 1] for f in frames]  # an alpha band that is all 255 only costs bytes
    except pyvips.Error as exc:
        raise CorruptImage(f"cannot decode the {info.format.value} animation: {_first_line(exc)}") from exc
    return Frames(frames=frames, delays=frame_delays(info), loop=info.loop)


def resized(source: Frames, width: int) -> Frames:
    """Every frame scaled to ``width``, each on its own: a kernel run down the whole roll would
    blend the bottom rows of one frame into the top of the next."""
    if width == source.width:
        return source
    scale = width / source.width
    return Frames([_resize(f, scale, exact_width=width).copy_memory() for f in source.frames], source.delays, source.loop)


def iter_animated(source: Frames, widths: tuple[int, ...], encoders: tuple[EncoderSettings, ...],
                  only: set[tuple[int, str]] | None = None) -> Iterator[EncodedRendition]:
    """Every width (descending in ``widths``, at most the source's) in every encoder's format
    (or just the (width, format) pairs in ``only``), smallest width first."""
    for width in reversed(widths):
        wanted = [enc for enc in encoders if only is None or (width, enc.format) in only]
        if not wanted:
            continue
        level = resized(source, width)
        for enc in wanted:
            try:
                data = encode_animated(level.frames, level.delays, level.loop, enc)
            except pyvips.Error as exc:
                raise CorruptImage(f"cannot encode an animated {enc.format} at {width}: {_first_line(exc)}") from exc
            yield EncodedRendition(width=level.width, height=level.height, format=enc.format, data=data,
                                   quality=enc.quality, animated=True)


def _pillow_roll(data: bytes | memoryview, info: ImageInfo) -> pyvips.Image:
    """An APNG's or AVIF sequence's frames, composited by Pillow (APNG disposal and blending; libvips
    reads neither as frames), stacked into one RGBA roll written frame by frame."""
    try:
        with Image.open(io.BytesIO(bytes(data)), formats=[_PILLOW_FORMATS[info.format]]) as picture:
            # Pillow counts an APNG's default image as a frame even when it is not one of the
            # animation's (its first fcTL comes after the IDAT): that picture is skipped.
            skip = getattr(picture, "n_frames", 1) - info.frames
            if skip not in ((0, 1) if info.format is ImageFormat.PNG else (0,)) or picture.size != (info.width, info.height):
                raise CorruptImage(f"the {info.format.value} holds another animation than its header declares")
            roll = np.empty((info.frames * info.height, info.width, 4), dtype=np.uint8)
            for index, frame in enumerate(ImageSequence.Iterator(picture)):
                if index >= skip:
                    row = (index - skip) * info.height
                    roll[row : row + info.height] = np.asarray(frame.convert("RGBA"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise CorruptImage(f"cannot decode the {info.format.value} animation: {exc}") from exc
    return pyvips.Image.new_from_array(roll, interpretation="srgb")


def _srgb(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB with alpha, as the loaders give it; an embedded ICC profile applied."""
    if image.get_typeof("icc-profile-data"):
        try:
            image = image.icc_transform("srgb", embedded=True, intent="relative", depth=8)
        except pyvips.Error:
            pass  # a profile lcms refuses: the pixels are taken as sRGB, as the still pipeline does
    if image.interpretation != "srgb" or image.format != "uchar":
        image = image.colourspace("srgb").cast("uchar")
    return image


def _upright(frame: pyvips.Image, info: ImageInfo) -> pyvips.Image:
    if not info.applies_exif_orientation or info.orientation == 1:
        return frame
    frame = frame.copy()
    frame.set_type(pyvips.GValue.gint_type, "orientation", info.orientation)
    return frame.autorot().copy_memory()
