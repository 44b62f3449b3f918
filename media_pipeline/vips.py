"""libvips (and Pillow) set-up and the one place that picks a loader per format.

Only the explicit loader of a sniffed format ever runs: libvips' own detection, and with it the
SVG, PDF, matrix and other loaders, is never reached from untrusted bytes.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pillow_heif
import pyvips
from PIL import Image

from media_pipeline import colour, hdr, tonemap
from media_pipeline.errors import CorruptImage
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


def load_ultra_hdr(data: bytes | memoryview, **options: Any) -> pyvips.Image:
    """An Ultra HDR JPEG's SDR picture with its gain map and gain-map metadata attached
    (``get_gainmap()``); the same options as the JPEG loader, shrink-on-load included."""
    view = memoryview(data)
    image = pyvips.Image.uhdrload_source(pyvips.Source.new_from_memory(view), **options)
    image._references.append(view)
    return image


def load_heic(data: bytes | memoryview, gainmap: bool = False) -> tuple[pyvips.Image, pyvips.Image | None]:
    """libvips' wheel cannot decode HEVC; pillow-heif can. libheif applies irot/imir itself, to the
    picture and to its auxiliary images. With ``gainmap``, an iPhone photo's HDR gain map comes
    too, restated as Ultra HDR's (hdr.apple_as_ultra_hdr), its metadata on the picture."""
    try:
        heif = pillow_heif.open_heif(bytes(data), convert_hdr_to_8bit=True)
        kind = tonemap.transfer(heif.info.get("nclx_profile"), heif.info.get("bit_depth"))
        if kind is not None:
            return _tone_mapped_heic(bytes(data), kind, gainmap)
        frame = heif[heif.primary_index] if hasattr(heif, "primary_index") else heif
        image = _heif_pixels(frame)
        icc = heif.info.get("icc_profile")
        aux = (heif.info.get("aux") or {}).get(hdr.APPLE_GAINMAP) if gainmap else None
        headroom = hdr.apple_headroom(heif.info.get("exif")) if aux else None
        aux_image = heif.get_aux_image(aux[0]) if aux and headroom and headroom > 1 else None
        # Never larger than the picture, checked before its pixels are read: a bomb is dropped, not decoded.
        fits = aux_image is not None and aux_image.size[0] <= frame.size[0] and aux_image.size[1] <= frame.size[1]
        apple_gainmap = _heif_pixels(aux_image) if fits else None
    except (ValueError, RuntimeError, OSError) as exc:
        raise CorruptImage(f"cannot decode the HEIC: {exc}") from exc
    if icc:
        image = image.copy()
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
    if apple_gainmap is None or headroom is None:
        return image, None
    return hdr.apple_as_ultra_hdr(image, apple_gainmap, headroom)


def _tone_mapped_heic(data: bytes, kind: str, gainmap: bool) -> tuple[pyvips.Image, pyvips.Image | None]:
    """A PQ or HLG HEIC (no SDR picture inside) as the SDR picture tonemap.py makes of it, and with
    ``gainmap`` the gain map back to its HDR picture (Ultra HDR metadata on the picture)."""
    heif = pillow_heif.open_heif(data, convert_hdr_to_8bit=False)
    frame = heif[heif.primary_index] if hasattr(heif, "primary_index") else heif
    if frame.mode not in ("RGB;16", "RGBA;16"):
        raise CorruptImage(f"unsupported HDR HEIF pixel mode {frame.mode}")
    bands = 4 if frame.mode.startswith("RGBA") else 3
    width, height = frame.size
    raw = np.frombuffer(frame.data, dtype=np.uint16).reshape(height, frame.stride // 2)[:, : width * bands]
    signal = pyvips.Image.new_from_array(np.ascontiguousarray(raw).reshape(height, width, bands))
    depth = int(heif.info.get("bit_depth") or 16)
    full_scale = float(((1 << depth) - 1) << (16 - depth))  # pillow-heif shifts the codes to 16 bits
    prims = tonemap.primaries(heif.info.get("nclx_profile") or {})
    image = tonemap.to_sdr(signal, kind, prims, colour.p3_profile(), full_scale)
    found = tonemap.gain_map(signal, kind, prims, full_scale) if gainmap else None
    if found is None:
        return image, None
    return hdr.with_gainmap(image, found[0], found[1], tonemap.GAIN_OFFSET)


def _heif_pixels(frame: Any) -> pyvips.Image:
    bands = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}.get(frame.mode)
    if bands is None:
        raise CorruptImage(f"unsupported HEIF pixel mode {frame.mode}")
    width, height = frame.size
    raw = np.frombuffer(frame.data, dtype=np.uint8).reshape(height, frame.stride)[:, : width * bands]
    return pyvips.Image.new_from_array(np.ascontiguousarray(raw).reshape(height, width, bands),
                                       interpretation="srgb" if bands >= 3 else "b-w")
