"""libvips (and Pillow) set-up and the one place that picks a loader per format.

Only the explicit loader of a sniffed format ever runs: libvips' own detection, and with it the
SVG, PDF, matrix and other loaders, is never reached from untrusted bytes.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import pillow_heif
import pyvips
from PIL import Image

from media_pipeline.models import ImageFormat

log = logging.getLogger(__name__)

_LOADERS = {
    ImageFormat.JPEG: "jpegload_source",
    ImageFormat.PNG: "pngload_source",
    ImageFormat.WEBP: "webpload_source",
    ImageFormat.GIF: "gifload_source",
    ImageFormat.TIFF: "tiffload_source",
    ImageFormat.AVIF: "heifload_source",
    ImageFormat.HEIC: "heifload_source",  # header only; HEVC pixels come from pillow-heif
}

_configured = False


def configure(concurrency: int = 1) -> None:
    """Process-wide libvips and Pillow hardening: the service layer calls it at start, the pipeline before each job."""
    global _configured
    # Pillow decodes no upload here (libvips and pillow-heif do), but it parses EXIF and ICC
    # profiles and encodes AVIF: should any path ever open an image with it, a bomb is an error
    # there too, not a warning in a log. (Set on every call: it is cheap, and a test runner may
    # have reset the warning filters since the first.)
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    if _configured:
        return
    # A cache keyed by operation arguments only grows memory in a long-lived worker.
    # libvips reports every operation at INFO through GLib; only its warnings are worth a log line.
    logging.getLogger("pyvips").setLevel(logging.WARNING)
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    pyvips.cache_set_max_files(0)
    pyvips.concurrency_set(concurrency)
    # libheif decodes a HEIC's tiles on 4 threads by default; a worker already runs one process
    # per core, so extra threads only contend (one pinned core: 0.41-0.53 s per 12 MP against 0.35-0.41).
    pillow_heif.options.DECODE_THREADS = concurrency
    try:
        pyvips.block_untrusted_set(True)
    except (AttributeError, pyvips.Error):  # libvips < 8.13
        log.warning("libvips is too old to block untrusted loaders")
    _configured = True


def load(data: bytes | memoryview, fmt: ImageFormat, **options: Any) -> pyvips.Image:
    """Open ``data`` with the loader of ``fmt``; lazy: only the header is read until pixels are asked for.

    The loader reads ``data`` where it is (an upload's mmap, a fetched original) through a memory
    source: a ``*load_buffer`` loader would first copy all of it into a libvips blob on every
    probe and decode (a 3 MB JPEG's probe: 0.5-0.8 ms of CPU with the copy, 0.15-0.2 without)."""
    # The view exports the buffer for as long as it lives, so an mmap cannot be unmapped under
    # libvips (closing it raises BufferError); pyvips itself keeps only the object, which an mmap's
    # close() would unmap all the same. Images pass their references on to every image made from them.
    view = memoryview(data)
    image = getattr(pyvips.Image, _LOADERS[fmt])(pyvips.Source.new_from_memory(view), **options)
    image._references.append(view)
    return image
