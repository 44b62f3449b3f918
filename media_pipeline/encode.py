"""One encoder function per output format. Every one writes no metadata at all (``keep="none"``):
no EXIF, GPS, XMP, IPTC or maker notes; pixels are already sRGB, which is what a missing profile means."""

from __future__ import annotations

import io
from typing import Callable

import pyvips
from PIL import Image

from media_pipeline.models import EncoderSettings

WHITE = [255, 255, 255]


def encode_avif(image: pyvips.Image, enc: EncoderSettings) -> bytes:
    # The same aom encoder through libavif (Pillow's plugin) rather than libheif (heifsave): at
    # equal quality, bytes and SSIM it is 15-25% faster, as libavif converts RGB to YUV with libyuv
    # (bench/renditions.py). ``speed = 9 - effort`` is the mapping heifsave uses.
    mode = "RGBA" if image.bands == 4 else "RGB"
    pixels = Image.frombuffer(mode, (image.width, image.height), image.write_to_memory(), "raw", mode, 0, 1)
    out = io.BytesIO()
    pixels.save(out, "AVIF", quality=enc.quality, speed=9 - enc.effort, subsampling="4:2:0",
                max_threads=pyvips.concurrency_get())
    return out.getvalue()


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
