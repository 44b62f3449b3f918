"""Format detection by magic bytes. Never by file name or Content-Type."""

from __future__ import annotations

import struct

from media_pipeline.errors import EmptyUpload, UnsupportedFormat
from media_pipeline.models import ImageFormat

# How many leading bytes sniffing needs; callers may pass just this much.
SNIFF_BYTES = 64

_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_GENERIC = {b"mif1", b"msf1", b"mif2", b"miaf"}


def sniff(head: bytes) -> ImageFormat:
    """Return the image format of ``head`` (the file's first bytes) or raise.

    Raises ``EmptyUpload`` for no bytes and ``UnsupportedFormat`` for anything that is not one of
    the allowed formats, including SVG, PDF, PostScript and text renamed to an image extension.
    """
    if not head:
        raise EmptyUpload("the upload is empty")
    if head.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ImageFormat.GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ImageFormat.WEBP
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return ImageFormat.TIFF
    heif = _sniff_heif(head)
    if heif is not None:
        return heif
    raise UnsupportedFormat("not an allowed image: JPEG, PNG, WebP, GIF, HEIC/HEIF, AVIF or TIFF")


def _sniff_heif(head: bytes) -> ImageFormat | None:
    """ISO-BMFF ``ftyp`` box: the major brand, then the compatible brands, decide."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    (box_size,) = struct.unpack(">I", head[:4])
    if box_size < 16:
        return None
    major = head[8:12]
    compatible = {head[i : i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)}
    if major in _AVIF_BRANDS:
        return ImageFormat.AVIF
    if major in _HEIC_BRANDS:
        return ImageFormat.HEIC
    if major in _HEIF_GENERIC or compatible & (_HEIF_GENERIC | _AVIF_BRANDS | _HEIC_BRANDS):
        if compatible & _AVIF_BRANDS and not compatible & _HEIC_BRANDS:
            return ImageFormat.AVIF
        if compatible & (_HEIC_BRANDS | _HEIF_GENERIC):
            return ImageFormat.HEIC
    return None
