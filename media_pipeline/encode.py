"""One encoder function per output format. Every one writes no metadata at all (``keep="none"``):
no EXIF, GPS, XMP, IPTC or maker notes; pixels are already sRGB, which is what a missing profile means."""

from __future__ import annotations

from typing import Callable

import pyvips

from media_pipeline.models import EncoderSettings

WHITE = [255, 255, 255]


def encode_avif(image: pyvips.Image, enc: EncoderSettings) -> bytes:
    return image.heifsave_buffer(Q=enc.quality, effort=enc.effort, compression="av1", bitdepth=8, keep="none")


def encode_webp(image: pyvips.Image, enc: EncoderSettings) -> bytes:
    return image.webpsave_buffer(Q=enc.quality, effort=enc.effort, keep="none")


def encode_jpeg(image: pyvips.Image, enc: EncoderSettings) -> bytes:
    if image.hasalpha():
        image = image.flatten(background=WHITE)
    return image.jpegsave_buffer(
        Q=enc.quality,
        interlace=enc.progressive,
        optimize_coding=True,
        trellis_quant=enc.trellis,
        overshoot_deringing=enc.trellis,
        optimize_scans=enc.trellis and enc.progressive,
        quant_table=3 if enc.trellis else 0,
        keep="none",
    )


ENCODERS: dict[str, Callable[[pyvips.Image, EncoderSettings], bytes]] = {
    "avif": encode_avif,
    "webp": encode_webp,
    "jpeg": encode_jpeg,
}


def encode(image: pyvips.Image, enc: EncoderSettings) -> bytes:
    return ENCODERS[enc.format](image, enc)
