"""Header-only inspection and the limits checked before any pixel is decoded."""

from __future__ import annotations

import pyvips

from media_pipeline import hdr, vips
from media_pipeline.animation_header import apng_timing, avif_sequence_timing
from media_pipeline.errors import CorruptImage, ImageTooLarge
from media_pipeline.models import ImageFormat, ImageInfo
from media_pipeline.sniff import sniff


_TIMING_FROM_CONTAINER = {ImageFormat.PNG: apng_timing, ImageFormat.AVIF: avif_sequence_timing}


def probe(data: bytes | memoryview, max_pixels: int) -> ImageInfo:
    """Sniff ``data``, read its header and enforce the pixel limit. Decodes no pixels."""
    fmt = sniff(bytes(data[:64]))
    vips.configure()
    try:
        header = vips.load(data, fmt, fail_on="error")
        width, height = header.width, header.get_page_height()
        pages = header.get("n-pages") if header.get_typeof("n-pages") else 1
        # get_typeof per field, not get_fields(): pyvips decodes every field name as UTF-8, and a
        # PNG text chunk can name one with any bytes (found by tests/test_fuzz.py).
        orientation = header.get("orientation") if header.get_typeof("orientation") else 1
        exif = header.get("exif-data") if header.get_typeof("exif-data") else None
        icc = header.get("icc-profile-data") if header.get_typeof("icc-profile-data") else None
        xmp = header.get("xmp-data") if header.get_typeof("xmp-data") else None
        has_alpha = header.hasalpha()
        # An animation's frame count, delays and loop are in the header (the GIF and WebP loaders
        # walk the frame headers, not their pixels): the animation limits are checked on them.
        delays = tuple(int(d) for d in header.get("delay")) if pages > 1 and header.get_typeof("delay") else ()
        loop = int(header.get("loop")) if header.get_typeof("loop") else 0
        if fmt in _TIMING_FROM_CONTAINER:  # libvips reads an APNG or an AVIF sequence as one picture
            timing = _TIMING_FROM_CONTAINER[fmt](data)
            pages, delays, loop = (timing.frames, timing.delays, timing.loop) if timing else (1, (), 0)
    except pyvips.Error as exc:
        raise CorruptImage(f"cannot read the {fmt.value} header: {_first_line(exc)}") from exc
    if width <= 0 or height <= 0:
        raise CorruptImage(f"the {fmt.value} header declares {width}x{height} pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} is {width * height / 1e6:.1f} megapixels; the limit is {max_pixels / 1e6:.1f}"
        )
    if orientation not in range(1, 9):
        orientation = 1
    return ImageInfo(
        format=fmt,
        width=width,
        height=height,
        pages=max(1, int(pages)),
        orientation=int(orientation),
        has_alpha=bool(has_alpha),
        exif=exif,
        icc_profile=icc,
        delays=delays,
        loop=max(0, loop),
        hdr=hdr.detect(data, fmt, xmp),
    )


def _first_line(exc: pyvips.Error) -> str:
    detail = (getattr(exc, "detail", "") or str(exc)).strip()
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "unknown error"


__all__ = ["probe", "ImageFormat"]
